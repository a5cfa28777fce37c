//! What defines a training run: the optimiser and its schedule ([`TrainConfig`]) and Hinton
//! KD's temperature and weight ([`KdConfig`]). Each validates itself; an out-of-range value is an [`Error::InvalidSetting`] naming its key.

use serde::{Deserialize, Serialize};

use crate::data::Augment;
use crate::optim::{LrSchedule, OptimConfig};
use crate::{Error, Result};

/// The optimiser family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    AdamW,
    Sgd,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            "sgd" => Ok(OptimizerKind::Sgd),
            other => Err(format!(
                "unknown optimizer '{other}': expected adam, adamw or sgd"
            )),
        }
    }
}

/// Everything that defines a training run's schedule (the same for baseline and KD student).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub weight_decay: f32,
    /// SGD only.
    pub momentum: f32,
    pub schedule: LrSchedule,
    pub seed: u64,
    pub augment: Augment,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 128,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: LrSchedule::Constant,
            seed: 0,
            augment: Augment::default(),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::setting("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::setting("batch_size", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::setting(
                "lr",
                format!("must be a finite number > 0, got {}", self.lr),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::setting(
                "weight_decay",
                format!("must be >= 0, got {}", self.weight_decay),
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(Error::setting(
                "momentum",
                format!("must be in [0, 1), got {}", self.momentum),
            ));
        }
        if let LrSchedule::Cosine { eta_min, .. } = self.schedule {
            if !(eta_min.is_finite() && eta_min >= 0.0) {
                return Err(Error::setting(
                    "eta_min",
                    format!("must be a finite number >= 0, got {eta_min}"),
                ));
            }
        }
        if let LrSchedule::Step { step_size, gamma } = self.schedule {
            if step_size == 0 {
                return Err(Error::setting("step_size", "must be at least 1"));
            }
            if !(gamma.is_finite() && gamma > 0.0) {
                return Err(Error::setting("gamma", format!("must be > 0, got {gamma}")));
            }
        }
        Ok(())
    }

    pub(crate) fn optim_config(&self) -> OptimConfig {
        match self.optimizer {
            OptimizerKind::Adam => OptimConfig::adam(self.lr, self.weight_decay),
            OptimizerKind::AdamW => OptimConfig::adamw(self.lr, self.weight_decay),
            OptimizerKind::Sgd => {
                OptimConfig::sgd(self.lr, self.momentum, self.weight_decay, false)
            }
        }
    }
}

/// Hinton KD hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KdConfig {
    pub temperature: f32,
    pub alpha: f32,
}

impl Default for KdConfig {
    fn default() -> Self {
        KdConfig {
            temperature: 4.0,
            alpha: 0.9,
        }
    }
}

impl KdConfig {
    /// A KD setting, checked: the temperature finite and > 0, alpha in [0, 1].
    pub fn new(temperature: f32, alpha: f32) -> Result<KdConfig> {
        let kd = KdConfig { temperature, alpha };
        kd.validate()?;
        Ok(kd)
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::setting(
                "temperature",
                format!("must be > 0, got {}", self.temperature),
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::setting(
                "alpha",
                format!("must be in [0, 1], got {}", self.alpha),
            ));
        }
        Ok(())
    }
}

/// Checks a fraction of the labelled training set, as the students' data is drawn.
pub fn validate_label_fraction(f: f64) -> Result<()> {
    if !(f > 0.0 && f <= 1.0) {
        return Err(Error::setting(
            "label_fraction",
            format!("must be in (0, 1], got {f}"),
        ));
    }
    Ok(())
}
