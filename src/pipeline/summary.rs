//! What a finished run reports: one [`RunSummary`] per trained model and the whole [`Report`]
//! (`report.json` is this struct as serde writes it).

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::stats::ModelStats;
use crate::train::{EpochRecord, Trained};

/// One training run's outcome, as the report shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: String,
    pub arch: String,
    pub seed: u64,
    pub train_images: usize,
    pub final_accuracy: f64,
    pub best_accuracy: f64,
    pub best_epoch: usize,
    pub seconds_per_epoch: f64,
    pub history: Vec<EpochRecord>,
}

impl RunSummary {
    pub(crate) fn of(run: &str, arch: &str, seed: u64, train_images: usize, t: &Trained) -> Self {
        let epochs = t.history.len().max(1);
        RunSummary {
            run: run.into(),
            arch: arch.into(),
            seed,
            train_images,
            final_accuracy: t.final_accuracy,
            best_accuracy: t.best_accuracy,
            best_epoch: t.best_epoch,
            seconds_per_epoch: t.history.iter().map(|r| r.seconds).sum::<f64>() / epochs as f64,
            history: t.history.clone(),
        }
    }
}

/// Everything `report.md` / `report.json` say.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub version: String,
    pub dataset: String,
    pub device: String,
    pub class_names: Vec<String>,
    pub teacher_train_images: usize,
    pub student_train_images: usize,
    /// The KD student's transfer set: images with a label, and with soft targets only.
    #[serde(default)]
    pub transfer_labelled_images: usize,
    #[serde(default)]
    pub transfer_soft_only_images: usize,
    /// The KD student's epochs (fewer than the baseline's over a larger transfer set).
    #[serde(default)]
    pub kd_epochs: usize,
    pub test_images: usize,
    pub config: RunConfig,
    pub teacher: RunSummary,
    /// Every teacher (the first is `teacher`); more than one distil as an ensemble.
    #[serde(default)]
    pub teachers: Vec<RunSummary>,
    /// Test accuracy of the teachers' combined prediction, when there are several.
    #[serde(default)]
    pub ensemble_accuracy: Option<f64>,
    /// One per seed.
    pub baseline: Vec<RunSummary>,
    pub kd: Vec<RunSummary>,
    pub teacher_stats: ModelStats,
    pub student_stats: ModelStats,
    /// Mean over seeds of KD final accuracy − baseline final accuracy (and the same for best).
    pub kd_gain_final: f64,
    pub kd_gain_best: f64,
    /// Parameter ratio teacher / student.
    pub compression: f64,
    /// Student throughput / teacher throughput at batch 256, and latency ratio at batch 1.
    pub speedup_throughput: f64,
    pub speedup_latency: f64,
    /// Offline KD: seconds to compute the cached teacher logits once, and the teacher
    /// forward time the student epochs did not pay.
    pub teacher_cache_seconds: Option<f64>,
    pub teacher_seconds_saved: Option<f64>,
    /// KD student (first seed) on the test split: `confusion[true][predicted]`.
    pub kd_confusion: Vec<Vec<u64>>,
    /// The run's work against the device's measured peak; `None` where the peak could not be
    /// measured.
    #[serde(default)]
    pub floor: Option<super::floor::Floor>,
    pub total_seconds: f64,
}
