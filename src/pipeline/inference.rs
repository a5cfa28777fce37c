//! A saved checkpoint put to use: its test accuracy on a dataset ([`evaluate_checkpoint`]) and
//! the classes of image files ([`predict`]). Either takes a distill checkpoint or a PyTorch
//! state_dict of the same layout.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::DataSource;
use crate::data::{read_image_planar, Dataset, Split};
use crate::model_file::{load_model, LoadedModel};
use crate::train::{self, ClassProbability, InputSpec};
use crate::{Device, Error, Result};

/// What [`evaluate_checkpoint`] measures.
#[derive(Clone, Debug)]
pub struct EvalJob {
    pub checkpoint: PathBuf,
    /// The dataset whose test split is used (its training split is not read).
    pub data: DataSource,
    pub batch_size: usize,
    /// Also count the confusion matrix.
    pub confusion: bool,
}

impl EvalJob {
    /// Evaluation in batches of 256, without a confusion matrix.
    pub const DEFAULT_BATCH_SIZE: usize = 256;
}

/// A checkpoint's test accuracy and loss.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointEvaluation {
    pub checkpoint: PathBuf,
    pub arch: String,
    pub dataset: String,
    pub device: String,
    pub test_images: usize,
    pub accuracy: f64,
    pub loss: f64,
    pub class_names: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_class_accuracy: Option<Vec<f64>>,
    /// `confusion[true][predicted]`, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// Loads `job.checkpoint` on `device` and measures it on the test split of `job.data`.
pub fn evaluate_checkpoint(job: &EvalJob, device: &Device) -> Result<CheckpointEvaluation> {
    if job.batch_size == 0 {
        return Err(Error::setting("batch_size", "must be at least 1"));
    }
    let source = DataSource {
        max_train: Some(1),
        ..job.data.clone()
    };
    let ds = load_dataset(&source)?;
    let m = load_checkpoint(&job.checkpoint, device, &|| Ok(InputSpec::of(&ds)))?;
    m.check_fits(&job.checkpoint, &ds)?;
    let test = Arc::new(ds.test.clone());
    let ev = train::evaluate(
        &m.model,
        device,
        &test,
        &m.input,
        job.batch_size,
        job.confusion,
    )?;
    Ok(CheckpointEvaluation {
        checkpoint: job.checkpoint.clone(),
        arch: m.spec.arch.clone(),
        dataset: ds.name.clone(),
        device: device.name(),
        test_images: ds.test.len(),
        accuracy: ev.accuracy,
        loss: ev.loss,
        class_names: m.input.class_names.clone(),
        per_class_accuracy: ev.per_class_accuracy(),
        confusion: ev.confusion,
    })
}

/// One image's most likely classes, most likely first.
#[derive(Clone, Debug, Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    pub top: Vec<ClassProbability>,
}

/// Classes per image a prediction lists unless asked otherwise.
pub const DEFAULT_TOP_K: usize = 3;

/// The `k` most likely classes of each image file, by the checkpoint at `checkpoint`. The
/// images are converted to the checkpoint's channels and size. `data` is read only for a
/// checkpoint without distill metadata (a bare PyTorch state_dict): it gives the input size,
/// the normalisation and the class names.
///
/// [`DEFAULT_TOP_K`] is what `distill predict` asks for unless told.
pub fn predict(
    checkpoint: &Path,
    images: &[PathBuf],
    k: usize,
    data: &DataSource,
    device: &Device,
) -> Result<Vec<Prediction>> {
    if k == 0 {
        return Err(Error::setting("top_k", "must be at least 1"));
    }
    let m = load_checkpoint(checkpoint, device, &|| {
        Ok(InputSpec::of(&load_dataset(data)?))
    })?;
    let input = &m.input;
    let mut bytes = Vec::new();
    for path in images {
        bytes.extend(read_image_planar(
            path,
            input.channels,
            input.height,
            input.width,
        )?);
    }
    // The same batching as training and evaluation, so normalisation is identical.
    let split = Arc::new(Split::new(bytes, vec![0; images.len()])?);
    let tops = train::top_k(&m.model, device, &split, input, k)?;
    Ok(images
        .iter()
        .zip(tops)
        .map(|(image, top)| Prediction {
            image: image.clone(),
            top,
        })
        .collect())
}

fn load_dataset(source: &DataSource) -> Result<Dataset> {
    source.load().map_err(|e| {
        Error::Other(format!(
            "cannot load the dataset at {}: {e}",
            source.path.display()
        ))
    })
}

fn load_checkpoint(
    path: &Path,
    device: &Device,
    data: &dyn Fn() -> Result<InputSpec>,
) -> Result<LoadedModel> {
    load_model(path, device, data).map_err(|e| match e {
        // The dataset's own error (a bare state_dict needs one), which names its folder.
        Error::Other(_) => e,
        e => Error::Other(format!(
            "cannot load the checkpoint {}: {e}",
            path.display()
        )),
    })
}
