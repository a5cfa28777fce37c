//! The settings of `distill run` ([`RunConfig`], saved as `config.json` in the run directory),
//! the data they name ([`DataSource`]), and which changes a resumed run accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ensemble::Ensemble;
use super::transfer::Transfer;
use crate::data::{self, Dataset, LoadOptions};
use crate::nn::ArchSpec;
use crate::optim::LrSchedule;
use crate::train::{validate_label_fraction, KdConfig, TrainConfig};
use crate::{Error, Result};

/// A dataset folder and how much of it to use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    pub path: PathBuf,
    /// Limit the training / test splits (smoke tests); `None` uses all.
    pub max_train: Option<usize>,
    pub max_test: Option<usize>,
}

impl DataSource {
    /// The shipped Fashion-MNIST, whole.
    pub fn shipped() -> DataSource {
        DataSource {
            path: data::default_data_dir(),
            ..DataSource::default()
        }
    }

    /// Loads the dataset and applies the slices.
    pub fn load(&self) -> Result<Dataset> {
        if self.max_train == Some(0) {
            return Err(Error::setting("max_train", "must be at least 1"));
        }
        if self.max_test == Some(0) {
            return Err(Error::setting("max_test", "must be at least 1"));
        }
        let mut ds = data::load(&self.path, &LoadOptions::default())?;
        if let Some(n) = self.max_train {
            ds.train = ds.train.take(n.min(ds.train.len()));
        }
        if let Some(n) = self.max_test {
            ds.test = ds.test.take(n.min(ds.test.len()));
        }
        Ok(ds)
    }
}

/// Everything `distill run` needs; saved as `config.json` in the run directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub data: PathBuf,
    pub teacher: TrainConfig,
    pub student: TrainConfig,
    pub kd: KdConfig,
    /// Fraction of the labelled training set the students see (the teacher sees it all).
    pub label_fraction: f64,
    /// Student runs repeat with seeds `student.seed + i` for `i < seeds`.
    pub seeds: usize,
    /// Use this teacher instead of training one.
    pub teacher_checkpoint: Option<PathBuf>,
    /// Limit the training / test splits (smoke tests); `None` uses all.
    pub max_train: Option<usize>,
    pub max_test: Option<usize>,
    /// Also write f16 copies of the checkpoints.
    pub half: bool,
    /// The KD student's transfer set: the labelled images, all training images, or the
    /// labelled ones plus a folder of unlabelled images.
    #[serde(default)]
    pub transfer: Transfer,
    /// The KD student's epochs over a transfer set larger than its labelled images; `None`:
    /// as many as keep the labelled run's optimiser steps
    /// ([`transfer_epochs`](super::transfer::transfer_epochs)).
    #[serde(default)]
    pub transfer_epochs: Option<usize>,
    /// The students' architecture: `student` or a compact spec such as `c16-c32-f128`.
    #[serde(default = "student_arch")]
    pub student_arch: String,
    /// Teachers trained with seeds `teacher.seed + i`; more than one distil as an ensemble.
    #[serde(default = "one")]
    pub teachers: usize,
    /// How an ensemble's outputs combine into soft targets.
    #[serde(default)]
    pub ensemble: Ensemble,
}

fn one() -> usize {
    1
}

/// The students' architecture unless the settings name one: the `student` preset.
pub const DEFAULT_STUDENT_ARCH: &str = "student";

fn student_arch() -> String {
    DEFAULT_STUDENT_ARCH.into()
}

impl Default for RunConfig {
    /// The defaults of `distill run`: teacher 5 epochs on the full set at a constant rate;
    /// students 30 epochs on 10% of it with the rate annealed to zero on a cosine (so the final
    /// epoch is a settled one, not a sample of the noise); Adam 1e-3, batch 128, T = 4, α = 0.9.
    fn default() -> Self {
        RunConfig {
            data: data::default_data_dir(),
            teacher: TrainConfig {
                epochs: 5,
                ..TrainConfig::default()
            },
            student: TrainConfig {
                epochs: 30,
                schedule: LrSchedule::Cosine {
                    t_max: 30,
                    eta_min: 0.0,
                },
                ..TrainConfig::default()
            },
            kd: KdConfig::default(),
            label_fraction: 0.1,
            seeds: 1,
            teacher_checkpoint: None,
            max_train: None,
            max_test: None,
            half: false,
            transfer: Transfer::All,
            transfer_epochs: None,
            student_arch: student_arch(),
            teachers: 1,
            ensemble: Ensemble::Probabilities,
        }
    }
}

impl RunConfig {
    /// A smoke-sized run (about a minute on two CPU cores).
    pub fn quick() -> Self {
        let d = RunConfig::default();
        RunConfig {
            teacher: TrainConfig {
                epochs: 1,
                ..d.teacher.clone()
            },
            student: super::with_epochs(d.student.clone(), 3),
            max_train: Some(6000),
            max_test: Some(2000),
            label_fraction: 0.2,
            ..d
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.teacher.validate()?;
        self.student.validate()?;
        self.kd.validate()?;
        validate_label_fraction(self.label_fraction)?;
        if self.seeds == 0 {
            return Err(Error::setting("seeds", "must be at least 1"));
        }
        self.transfer.validate()?;
        if self.teachers == 0 {
            return Err(Error::setting("teachers", "must be at least 1"));
        }
        if self.teachers > 1 && self.teacher_checkpoint.is_some() {
            return Err(Error::setting(
                "teachers",
                "several teachers are trained in the run; a loaded teacher is one",
            ));
        }
        ArchSpec::check_name(&self.student_arch)
            .map_err(|e| Error::setting("student_arch", e.to_string()))?;
        if self.transfer_epochs == Some(0) {
            return Err(Error::setting("transfer_epochs", "must be at least 1"));
        }
        if let Some(t) = &self.teacher_checkpoint {
            if !t.is_file() {
                return Err(Error::setting(
                    "teacher",
                    format!("{}: no such file", t.display()),
                ));
            }
        }
        Ok(())
    }

    /// The data this run trains and tests on.
    pub fn data_source(&self) -> DataSource {
        DataSource {
            path: self.data.clone(),
            max_train: self.max_train,
            max_test: self.max_test,
        }
    }

    /// The settings saved in the run directory `dir`, if it holds a run.
    pub fn load_saved(dir: &Path) -> Result<Option<RunConfig>> {
        let path = dir.join("config.json");
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cfg = serde_json::from_str(&text).map_err(|e| {
            Error::Resume(format!(
                "{} is not a distill run configuration: {e}",
                path.display()
            ))
        })?;
        Ok(Some(cfg))
    }

    /// Whether a run started with `saved` can continue with these settings: only the numbers
    /// of epochs may change, and not under a cosine schedule (it spans the epochs it was
    /// started with). The error lists every setting that differs.
    pub fn check_resume(&self, saved: &RunConfig, dir: &Path) -> Result<()> {
        let mut diff = Vec::new();
        differences("", &without_epochs(saved), &without_epochs(self), &mut diff);
        if !diff.is_empty() {
            return Err(Error::Resume(format!(
                "{} holds a run with other settings (only the numbers of epochs may change):\n  {}",
                dir.display(),
                diff.join("\n  ")
            )));
        }
        for (who, old, new) in [
            ("teacher", &saved.teacher, &self.teacher),
            ("student", &saved.student, &self.student),
        ] {
            if old.epochs != new.epochs && matches!(new.schedule, LrSchedule::Cosine { .. }) {
                return Err(Error::Resume(format!(
                    "{}: the {who}'s cosine schedule spans the {} epochs it was started with, so \
                     they cannot become {}; start a new run instead",
                    dir.display(),
                    old.epochs,
                    new.epochs
                )));
            }
        }
        Ok(())
    }
}

/// `cfg` as JSON with the numbers of epochs (and the cosine span that follows them) zeroed.
fn without_epochs(cfg: &RunConfig) -> serde_json::Value {
    let mut c = cfg.clone();
    c.transfer_epochs = None;
    for t in [&mut c.teacher, &mut c.student] {
        t.epochs = 0;
        if let LrSchedule::Cosine { t_max, .. } = &mut t.schedule {
            *t_max = 0;
        }
    }
    serde_json::to_value(c).unwrap_or_default()
}

/// Every leaf where two JSON values differ, as `path: a in the run, b now`.
fn differences(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                differences(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} in the run, {b} now")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn students_anneal_over_their_own_epochs_and_teachers_keep_a_constant_rate() {
        for cfg in [RunConfig::default(), RunConfig::quick()] {
            assert_eq!(cfg.teacher.schedule, LrSchedule::Constant);
            assert_eq!(
                cfg.student.schedule,
                LrSchedule::Cosine {
                    t_max: cfg.student.epochs,
                    eta_min: 0.0
                }
            );
        }
    }

    #[test]
    fn a_cosine_run_keeps_its_epochs_on_resume() {
        let saved = RunConfig::default();
        let dir = Path::new("runs/x");
        assert!(saved.check_resume(&saved, dir).is_ok());
        let mut more = saved.clone();
        more.student = super::super::with_epochs(more.student, 40);
        let e = more.check_resume(&saved, dir).unwrap_err().to_string();
        assert!(e.contains("cosine schedule spans the 30 epochs"), "{e}");
        // A constant-rate teacher may train longer.
        let mut longer = saved.clone();
        longer.teacher.epochs = 8;
        assert!(longer.check_resume(&saved, dir).is_ok());
    }
}
