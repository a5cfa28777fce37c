//! Optimisers over a model's parameters (SGD with momentum, Adam, AdamW) and learning-rate
//! schedules, with PyTorch's semantics. The update itself is one fused kernel per parameter
//! (`ops::sgd_step_`, `ops::adam_step_`); this file keeps the per-parameter state.

use serde::{Deserialize, Serialize};

use crate::backend::{AdamConfig, SgdConfig};
use crate::checkpoint::NamedTensor;
use crate::tensor::DType;
use crate::{ops, Error, Result, Tensor};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimConfig {
    Sgd(SgdConfig),
    Adam(AdamConfig),
}

impl OptimConfig {
    pub fn lr(&self) -> f32 {
        match self {
            OptimConfig::Sgd(c) => c.lr,
            OptimConfig::Adam(c) => c.lr,
        }
    }
    fn set_lr(&mut self, lr: f32) {
        match self {
            OptimConfig::Sgd(c) => c.lr = lr,
            OptimConfig::Adam(c) => c.lr = lr,
        }
    }
    /// `Adam(lr)` with PyTorch's defaults (β = (0.9, 0.999), ε = 1e-8).
    pub fn adam(lr: f32, weight_decay: f32) -> Self {
        OptimConfig::Adam(AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled_weight_decay: false,
        })
    }
    /// `AdamW(lr)` with PyTorch's defaults.
    pub fn adamw(lr: f32, weight_decay: f32) -> Self {
        OptimConfig::Adam(AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled_weight_decay: true,
        })
    }
    pub fn sgd(lr: f32, momentum: f32, weight_decay: f32, nesterov: bool) -> Self {
        OptimConfig::Sgd(SgdConfig {
            lr,
            momentum,
            dampening: 0.0,
            weight_decay,
            nesterov,
        })
    }
}

/// Per-parameter optimiser state: moment buffers and how many updates it has had.
struct ParamState {
    steps: u32,
    /// SGD: the momentum buffer. Adam: `exp_avg`.
    first: Tensor,
    /// Adam: `exp_avg_sq`.
    second: Option<Tensor>,
}

pub struct Optimizer {
    config: OptimConfig,
    params: Vec<(String, Tensor)>,
    state: Vec<ParamState>,
}

impl Optimizer {
    pub fn new(config: OptimConfig, params: Vec<(String, Tensor)>) -> Result<Optimizer> {
        let mut state = Vec::with_capacity(params.len());
        for (name, p) in &params {
            if !p.requires_grad() || p.dtype() != DType::F32 {
                return Err(Error::InvalidArgument(format!(
                    "optimizer: parameter '{name}' is not a trainable f32 tensor"
                )));
            }
            let second = match config {
                OptimConfig::Adam(_) => Some(Tensor::zeros(p.shape(), p.device())?),
                OptimConfig::Sgd(_) => None,
            };
            state.push(ParamState {
                steps: 0,
                first: Tensor::zeros(p.shape(), p.device())?,
                second,
            });
        }
        Ok(Optimizer {
            config,
            params,
            state,
        })
    }

    pub fn config(&self) -> &OptimConfig {
        &self.config
    }
    pub fn lr(&self) -> f32 {
        self.config.lr()
    }
    pub fn set_lr(&mut self, lr: f32) {
        self.config.set_lr(lr);
    }

    /// One update of every parameter that has a gradient (others are skipped, as in PyTorch).
    pub fn step(&mut self) -> Result<()> {
        for ((_, p), st) in self.params.iter().zip(&mut self.state) {
            let Some(g) = p.grad() else { continue };
            st.steps += 1;
            match (&self.config, &st.second) {
                (OptimConfig::Sgd(c), _) => ops::sgd_step_(c, st.steps == 1, p, &g, &st.first)?,
                (OptimConfig::Adam(c), Some(v)) => {
                    ops::adam_step_(c, st.steps, p, &g, &st.first, v)?
                }
                (OptimConfig::Adam(_), None) => {
                    unreachable!("Adam state always has a second moment")
                }
            }
        }
        Ok(())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        for (_, p) in &self.params {
            p.zero_grad();
        }
    }

    /// The state as named host tensors (`<param>.exp_avg`, `<param>.exp_avg_sq` or
    /// `<param>.momentum_buffer`) plus per-parameter step counts, for exact resume.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn export_state(&self) -> Result<(Vec<NamedTensor>, Vec<u32>)> {
        let first_name = match self.config {
            OptimConfig::Sgd(_) => "momentum_buffer",
            OptimConfig::Adam(_) => "exp_avg",
        };
        let mut named = Vec::new();
        for ((name, _), st) in self.params.iter().zip(&self.state) {
            named.push((format!("{name}.{first_name}"), st.first.clone()));
            if let Some(v) = &st.second {
                named.push((format!("{name}.exp_avg_sq"), v.clone()));
            }
        }
        let tensors = pollster::block_on(crate::model_file::host_tensors(named))?;
        Ok((tensors, self.state.iter().map(|s| s.steps).collect()))
    }

    /// Restores what [`export_state`](Self::export_state) produced.
    pub fn import_state(&mut self, tensors: &[NamedTensor], steps: &[u32]) -> Result<()> {
        if steps.len() != self.state.len() {
            return Err(Error::Checkpoint(format!(
                "optimizer state has {} parameters, the model {}",
                steps.len(),
                self.state.len()
            )));
        }
        let find = |name: &str| {
            tensors
                .iter()
                .find(|t| t.name == name)
                .ok_or_else(|| Error::Checkpoint(format!("optimizer state lacks '{name}'")))
        };
        let first_name = match self.config {
            OptimConfig::Sgd(_) => "momentum_buffer",
            OptimConfig::Adam(_) => "exp_avg",
        };
        for (((name, _), st), &s) in self.params.iter().zip(&mut self.state).zip(steps) {
            st.first
                .assign(&find(&format!("{name}.{first_name}"))?.data)?;
            if let Some(v) = &st.second {
                v.assign(&find(&format!("{name}.exp_avg_sq"))?.data)?;
            }
            st.steps = s;
        }
        Ok(())
    }
}

/// Learning rate as a function of the epoch (0-based), as PyTorch's epoch-wise schedulers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LrSchedule {
    #[default]
    Constant,
    /// `StepLR`: multiply by `gamma` every `step_size` epochs.
    Step { step_size: usize, gamma: f32 },
    /// `CosineAnnealingLR` over `t_max` epochs down to `eta_min`.
    Cosine { t_max: usize, eta_min: f32 },
}

impl LrSchedule {
    /// Epochs between decays of a step schedule chosen without them.
    pub const DEFAULT_STEP_SIZE: usize = 10;
    /// The decay factor of a step schedule chosen without one.
    pub const DEFAULT_GAMMA: f32 = 0.1;

    pub fn lr_at(&self, base_lr: f32, epoch: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base_lr,
            LrSchedule::Step { step_size, gamma } => {
                base_lr * gamma.powi((epoch / step_size.max(1)) as i32)
            }
            LrSchedule::Cosine { t_max, eta_min } => {
                let t = epoch.min(t_max) as f32 / t_max.max(1) as f32;
                eta_min + (base_lr - eta_min) * 0.5 * (1.0 + (std::f32::consts::PI * t).cos())
            }
        }
    }
}
