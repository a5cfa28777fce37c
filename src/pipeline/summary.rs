//! What a finished run reports: one [`RunSummary`] per trained model and the whole [`Report`]
//! (`report.json` is this struct as serde writes it).

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use super::stats::{mean_std, ModelStats};
use crate::measure::load::LoadWindow;
use crate::measure::record::Figure;
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
    /// The load average before and after the run, and whether other work made the machine
    /// busy (absent in reports written before it was recorded).
    #[serde(default)]
    pub load: Option<LoadWindow>,
}

impl Report {
    /// The run's headline figures, for a record (`distill run --record`): test accuracy of
    /// every model (%; students as the mean over seeds, with the sd when there are several),
    /// the KD gain and the distance to the teacher (points), size and speed, the floor and
    /// the wall time.
    pub fn figures(&self) -> Vec<Figure> {
        let pct = |name: &str, v: f64| Figure::new(name, 100.0 * v, "%");
        let mut out = Vec::new();
        for (i, t) in self.teachers.iter().enumerate() {
            let who = if i == 0 {
                "teacher".to_string()
            } else {
                t.run.clone()
            };
            out.push(pct(&format!("{who} final accuracy"), t.final_accuracy));
            out.push(pct(&format!("{who} best accuracy"), t.best_accuracy));
        }
        if self.teachers.is_empty() {
            out.push(pct("teacher final accuracy", self.teacher.final_accuracy));
            out.push(pct("teacher best accuracy", self.teacher.best_accuracy));
        }
        if let Some(e) = self.ensemble_accuracy {
            out.push(pct("ensemble accuracy", e));
        }
        let mut kd_mean = None;
        for (who, runs) in [("baseline", &self.baseline), ("kd", &self.kd)] {
            let finals: Vec<f64> = runs.iter().map(|r| r.final_accuracy).collect();
            let bests: Vec<f64> = runs.iter().map(|r| r.best_accuracy).collect();
            let (mean, sd) = mean_std(&finals);
            out.push(pct(&format!("{who} final accuracy"), mean));
            out.push(pct(&format!("{who} best accuracy"), mean_std(&bests).0));
            if runs.len() > 1 {
                out.push(Figure::new(
                    format!("{who} final accuracy sd"),
                    100.0 * sd,
                    "points",
                ));
            }
            if who == "kd" {
                kd_mean = Some(mean);
            }
        }
        out.push(Figure::new(
            "kd gain final",
            100.0 * self.kd_gain_final,
            "points",
        ));
        out.push(Figure::new(
            "kd gain best",
            100.0 * self.kd_gain_best,
            "points",
        ));
        if let Some(kd) = kd_mean {
            let below = self.teacher.final_accuracy - kd;
            out.push(Figure::new("kd below teacher", 100.0 * below, "points"));
        }
        let (t, s) = (&self.teacher_stats, &self.student_stats);
        out.extend([
            Figure::new("teacher parameters", t.parameters as f64, "parameters"),
            Figure::new("student parameters", s.parameters as f64, "parameters"),
            Figure::new("compression", self.compression, "×"),
            Figure::new("teacher latency batch 1", t.latency_ms_batch1, "ms"),
            Figure::new("student latency batch 1", s.latency_ms_batch1, "ms"),
            Figure::new("speed-up latency batch 1", self.speedup_latency, "×"),
            Figure::new(
                "teacher throughput batch 256",
                t.throughput_batch256,
                "img/s",
            ),
            Figure::new(
                "student throughput batch 256",
                s.throughput_batch256,
                "img/s",
            ),
            Figure::new(
                "speed-up throughput batch 256",
                self.speedup_throughput,
                "×",
            ),
        ]);
        if let Some(f) = &self.floor {
            out.extend([
                Figure::new("work", f.work_tflop, "TFLOP"),
                Figure::new("floor peak", f.peak_gflops, "GFLOP/s"),
                Figure::new("floor", f.floor_seconds, "s"),
                Figure::new("epochs time", f.seconds, "s"),
                Figure::new("times the floor", f.times_floor, "×"),
            ]);
        }
        out.push(Figure::new("wall time", self.total_seconds, "s"));
        out
    }
}
