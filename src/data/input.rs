//! What a model sees: the images' shape, their normalisation and the class names. Checkpoints
//! store it, so inference normalises exactly as training did.

use serde::{Deserialize, Serialize};

use super::{BatchConfig, Dataset};

/// What the model sees: shape, normalisation and class names (stored in checkpoints so
/// inference normalises exactly as training did).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub class_names: Vec<String>,
}

impl InputSpec {
    pub fn of(ds: &Dataset) -> InputSpec {
        InputSpec {
            channels: ds.channels,
            height: ds.height,
            width: ds.width,
            mean: ds.mean.clone(),
            std: ds.std.clone(),
            class_names: ds.class_names.clone(),
        }
    }

    /// Batches in order, normalised, without augmentation (evaluation, inference).
    pub(crate) fn batch_config(&self, batch_size: usize) -> BatchConfig {
        BatchConfig::eval(batch_size, self.mean.clone(), self.std.clone())
    }
}
