//! The teacher's side of distillation: a teacher loaded from a checkpoint (checked against the
//! data), and the choice between offline KD (the teacher's logits over the students' images,
//! computed once) and online KD (the teacher runs on every augmented batch).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::ensemble::{self, Ensemble};
use crate::data::{Dataset, Split};
use crate::model_file::{load_model, LoadedModel};
use crate::nn::Sequential;
use crate::train::{predict_logits, InputSpec, Observer, TeacherLogits};
use crate::{Device, Error, Result};

/// Loads a teacher to distill on `ds`: a distill checkpoint, or a bare PyTorch `state_dict`
/// of modules of the presets' layout (its input is then `ds`'s).
pub fn load_teacher(path: &Path, device: &Device, ds: &Dataset) -> Result<LoadedModel> {
    let teacher = load_model(path, device, &|| Ok(InputSpec::of(ds)))?;
    teacher.check_fits(path, ds)?;
    Ok(teacher)
}

/// The teacher's logits for a KD student trained on `split`, and the seconds the cache took.
/// Several teachers give one table of their combined soft targets ([`ensemble::combine`]);
/// each sees the images normalised as it was trained (its own [`InputSpec`]).
///
/// Without augmentation every epoch shows the teacher the same images, so their logits are
/// computed once (offline KD); with augmentation one teacher runs on every batch (online KD).
pub fn teacher_logits<'t>(
    teachers: &[(&'t Sequential, &InputSpec)],
    device: &Device,
    split: &Arc<Split>,
    soft: (f32, Ensemble),
    augmented: bool,
    obs: &mut dyn Observer,
) -> Result<(TeacherLogits<'t>, Option<f64>)> {
    if augmented {
        let [(teacher, _)] = teachers else {
            return Err(Error::InvalidArgument(
                "a teacher ensemble needs cached logits: it cannot be used with augmentation"
                    .into(),
            ));
        };
        obs.message("augmentation is on: the teacher runs on every batch (online KD)");
        return Ok((TeacherLogits::Online(teacher), None));
    }
    let t0 = Instant::now();
    let tables = teachers
        .iter()
        .map(|(model, input)| predict_logits(model, device, split, input, 256))
        .collect::<Result<Vec<_>>>()?;
    let classes = teachers.first().map_or(0, |(_, i)| i.class_names.len());
    let logits = ensemble::combine(&tables, classes, soft.0, soft.1)?;
    let seconds = t0.elapsed().as_secs_f64();
    obs.message(&format!(
        "teacher logits cached for {} images in {seconds:.1}s (offline KD{})",
        split.len(),
        if teachers.len() > 1 {
            format!(", {} teachers combined", teachers.len())
        } else {
            String::new()
        }
    ));
    Ok((TeacherLogits::Cached(Arc::new(logits)), Some(seconds)))
}

/// Test accuracy of the teachers' combined prediction.
pub fn ensemble_accuracy(
    teachers: &[(&Sequential, &InputSpec)],
    device: &Device,
    test: &Arc<Split>,
    soft: (f32, Ensemble),
) -> Result<f64> {
    let tables = teachers
        .iter()
        .map(|(model, input)| predict_logits(model, device, test, input, 256))
        .collect::<Result<Vec<_>>>()?;
    let classes = teachers.first().map_or(0, |(_, i)| i.class_names.len());
    let combined = ensemble::combine(&tables, classes, soft.0, soft.1)?;
    Ok(ensemble::accuracy(&combined, &test.labels, classes))
}
