//! Feature (hint) distillation, after FitNets (Romero et al., 2015): besides matching the
//! teacher's outputs, the student learns to reproduce the teacher's feature map at one layer.
//!
//! The student's feature map at `student_layer` goes through a learned 1×1 convolution (the
//! adapter, FitNets' "regressor": student channels → teacher channels, one conv2d op) and is
//! compared with the teacher's feature map at `teacher_layer` by the mean squared error over
//! every element. The term added to the batch loss is `weight · mse(adapter(s), t)`.
//!
//! - The teacher's features are computed on every batch, under `no_grad` and only up to the
//!   named layer: they are far too large to cache (the teacher's conv2 output of one
//!   Fashion-MNIST image is 128·14·14 floats, 100 KB; 60,000 images would be 6 GB).
//! - The adapter is a training aid: it is trained with the student by the same optimiser, is
//!   not part of the saved model (`best`/`last.safetensors` stay loadable as the student
//!   alone), and is kept, with its optimiser state, in the resume state file so a resumed run
//!   continues exactly.
//! - Both feature maps must have the same height and width; a probe image checks this before
//!   training starts.

use serde::{Deserialize, Serialize};

#[cfg(not(target_arch = "wasm32"))]
use crate::checkpoint::NamedTensor;
use crate::data::InputSpec;
use crate::nn::{Layer, Sequential};
use crate::ops::{self, Conv2dParams};
use crate::rng::Rng;
use crate::{no_grad, Device, Error, Result, Tensor};

/// The hint term's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HintConfig {
    /// Weight of the term in the loss (> 0).
    pub weight: f32,
    /// The student's feature layer (a name of [`Sequential::tap_names`]).
    pub student_layer: String,
    /// The teacher's feature layer.
    pub teacher_layer: String,
}

impl HintConfig {
    /// The layers hints default to: both conv2 outputs after their ReLU (14×14 maps for 28×28
    /// inputs), the middle of the seed networks, as FitNets places its hint.
    pub const DEFAULT_LAYERS: &'static str = "conv2:conv2";

    /// A hint of `weight` between the layers `student:teacher` (one name for both).
    pub fn new(weight: f32, layers: &str) -> Result<HintConfig> {
        let cfg = Self::unchecked(weight, layers);
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`HintConfig::new`] without the check (for settings known to be valid).
    pub(crate) fn unchecked(weight: f32, layers: &str) -> HintConfig {
        let (student, teacher) = layers.split_once(':').unwrap_or((layers, layers));
        HintConfig {
            weight,
            student_layer: student.trim().to_string(),
            teacher_layer: teacher.trim().to_string(),
        }
    }

    /// The layers as `student:teacher`, as [`HintConfig::new`] takes them.
    pub fn layers(&self) -> String {
        format!("{}:{}", self.student_layer, self.teacher_layer)
    }

    /// The weight is a finite number > 0 and both layers are named.
    pub fn validate(&self) -> Result<()> {
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(Error::setting(
                "hint_weight",
                format!("must be a finite number > 0, got {}", self.weight),
            ));
        }
        if self.student_layer.is_empty() || self.teacher_layer.is_empty() {
            return Err(Error::setting(
                "hint_layers",
                format!(
                    "must be STUDENT:TEACHER layer names such as {}, got '{}:{}'",
                    Self::DEFAULT_LAYERS,
                    self.student_layer,
                    self.teacher_layer
                ),
            ));
        }
        Ok(())
    }
}

/// The name of the adapter's parameters (`hint_adapter.weight`, `hint_adapter.bias`).
const ADAPTER: &str = "hint_adapter";

/// A hint term ready to train: its settings, the teacher and the adapter.
pub struct HintTerm<'t> {
    config: HintConfig,
    teacher: &'t Sequential,
    /// One 1×1 conv layer named [`ADAPTER`].
    adapter: Sequential,
}

impl<'t> HintTerm<'t> {
    /// Checks the layers exist in both networks and their feature maps have the same height
    /// and width (one probe image of `input`'s shape), and builds the adapter from `seed` with
    /// PyTorch's default conv initialisation.
    pub fn new(
        config: &HintConfig,
        teacher: &'t Sequential,
        student: &Sequential,
        input: &InputSpec,
        device: &Device,
        seed: u64,
    ) -> Result<HintTerm<'t>> {
        config.validate()?;
        let probe = Tensor::zeros(&[1, input.channels, input.height, input.width], device)?;
        let shape_at = |net: &Sequential, layer: &str, whose: &str| -> Result<Vec<usize>> {
            let names = net.tap_names();
            if !names.iter().any(|n| n == layer) {
                return Err(Error::setting(
                    "hint_layers",
                    format!(
                        "the {whose} has no feature layer '{layer}' (it has: {})",
                        names.join(", ")
                    ),
                ));
            }
            let f = no_grad(|| net.features(&probe, layer))?;
            if f.shape().len() != 4 {
                return Err(Error::setting(
                    "hint_layers",
                    format!(
                        "the {whose}'s {layer} is not a feature map: {:?}",
                        f.shape()
                    ),
                ));
            }
            Ok(f.shape().to_vec())
        };
        let s = shape_at(student, &config.student_layer, "student")?;
        let t = shape_at(teacher, &config.teacher_layer, "teacher")?;
        if s[2..] != t[2..] {
            return Err(Error::setting(
                "hint_layers",
                format!(
                    "the student's {} is {}x{} and the teacher's {} is {}x{}: their heights and \
                     widths must match",
                    config.student_layer, s[2], s[3], config.teacher_layer, t[2], t[3]
                ),
            ));
        }
        let mut rng = Rng::derive(seed, ADAPTER, 0);
        let one_by_one = Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
        };
        let conv = Layer::conv2d(ADAPTER, s[1], t[1], 1, one_by_one, device, &mut rng)?;
        Ok(HintTerm {
            config: config.clone(),
            teacher,
            adapter: Sequential { layers: vec![conv] },
        })
    }

    pub fn config(&self) -> &HintConfig {
        &self.config
    }

    /// The adapter's parameters, for the optimiser (`hint_adapter.weight`, `.bias`).
    pub fn parameters(&self) -> Vec<(String, Tensor)> {
        self.adapter.parameters()
    }

    /// The student's forward pass with the hint: `(logits, weight · mse(adapter(s), t))`
    /// where `s` is the student's feature map on `x` and `t` the teacher's (no tape).
    pub fn forward(&self, student: &Sequential, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let (logits, feature) = student.forward_with_tap(x, &self.config.student_layer)?;
        let target = no_grad(|| self.teacher.features(x, &self.config.teacher_layer))?;
        let mapped = self.adapter.forward(&feature)?;
        let term = ops::scale(&ops::mse_loss(&mapped, &target)?, self.config.weight)?;
        Ok((logits, term))
    }

    /// The adapter's weights as host tensors, for the resume state file.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn export(&self) -> Result<Vec<NamedTensor>> {
        pollster::block_on(crate::model_file::host_tensors(self.parameters()))
    }

    /// Restores the adapter's weights from the tensors [`export`](Self::export) wrote.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn import(&self, tensors: &[NamedTensor]) -> Result<()> {
        for (name, p) in self.parameters() {
            let t = tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| Error::Resume(format!("the saved state has no '{name}'")))?;
            if t.shape != p.shape() {
                return Err(Error::Resume(format!(
                    "the saved '{name}' has shape {:?}, the adapter {:?}",
                    t.shape,
                    p.shape()
                )));
            }
            p.assign(&t.data)?;
        }
        Ok(())
    }
}
