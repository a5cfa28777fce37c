//! The teacher's side of distillation: a teacher loaded from a checkpoint (checked against the
//! data), and the choice between offline KD (the teacher's logits over the students' images,
//! computed once) and online KD (the teacher runs on every augmented batch).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::data::{Dataset, Split};
use crate::model_file::{load_model, LoadedModel};
use crate::nn::Sequential;
use crate::train::{predict_logits, InputSpec, Observer, TeacherLogits};
use crate::{Device, Result};

/// Loads a teacher to distill on `ds`: a distill checkpoint, or a bare PyTorch `state_dict`
/// of the seed's modules (its input is then `ds`'s).
pub fn load_teacher(path: &Path, device: &Device, ds: &Dataset) -> Result<LoadedModel> {
    let teacher = load_model(path, device, &|| Ok(InputSpec::of(ds)))?;
    teacher.check_fits(path, ds)?;
    Ok(teacher)
}

/// The teacher's logits for a KD student trained on `split`, and the seconds the cache took.
///
/// Without augmentation every epoch shows the teacher the same images, so their logits are
/// computed once (offline KD); with augmentation the teacher runs on every batch (online KD).
pub fn teacher_logits<'t>(
    teacher: &'t Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    augmented: bool,
    obs: &mut dyn Observer,
) -> Result<(TeacherLogits<'t>, Option<f64>)> {
    if augmented {
        obs.message("augmentation is on: the teacher runs on every batch (online KD)");
        return Ok((TeacherLogits::Online(teacher), None));
    }
    let t0 = Instant::now();
    let logits = predict_logits(teacher, device, split, input, 256)?;
    let seconds = t0.elapsed().as_secs_f64();
    obs.message(&format!(
        "teacher logits cached for {} images in {seconds:.1}s (offline KD)",
        split.len()
    ));
    Ok((TeacherLogits::Cached(Arc::new(logits)), Some(seconds)))
}
