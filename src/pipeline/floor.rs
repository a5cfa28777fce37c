//! How close a run came to the machine: the run's floating-point work divided by the device's
//! measured f32 peak is its **floor**, the time it could not beat; the report sets the wall
//! time of its epochs beside it.
//!
//! The peak is the device's quiet one where this machine has it: the last `distill bench`
//! that measured the device while the machine was quiet ([`crate::measure::reference`]). Only
//! without one is the peak measured at the end of the run, under whatever load the run had;
//! the report says which it used (`peak_source`).
//!
//! The work is counted from the models' layers ([`crate::nn::Flops`]: convolutions and linear
//! layers only), epoch by epoch as the history records them, so a resumed run counts the epochs
//! of every process that ran it. The time is the same epochs' recorded seconds (training and
//! the test pass) plus the teacher-logit cache, so the two describe the same work.

use serde::{Deserialize, Serialize};

use super::summary::RunSummary;
use crate::nn::Flops;

/// A run's work against the device's peak.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Floor {
    /// Floating-point work of every epoch (training steps and test passes) and of the
    /// teacher-logit cache, in TFLOP.
    pub work_tflop: f64,
    /// The device's f32 peak, GFLOP/s.
    pub peak_gflops: f64,
    /// What the peak is (e.g. `cpu fma-chain avx2+fma, 2 threads`).
    pub peak_label: String,
    /// Where the peak comes from: this machine's last quiet `distill bench` (its date and
    /// file), or a measurement at the end of the run (with the load then). Empty in reports
    /// written before it was recorded, whose peak was measured at the end of the run.
    #[serde(default)]
    pub peak_source: String,
    /// `work / peak`: the seconds the run could not beat on this device.
    pub floor_seconds: f64,
    /// Seconds of the same epochs and cache, as recorded.
    pub seconds: f64,
    /// `seconds / floor_seconds`.
    pub times_floor: f64,
}

/// One trained model's share of the work: its per-image FLOPs and its history.
pub(crate) struct Trained<'a> {
    pub flops: Flops,
    pub summary: &'a RunSummary,
}

/// The run's floor: `runs` trained models, a teacher-logit cache over `cache_images` images
/// with per-image forward FLOPs `cache_flops` (taking `cache_seconds`), `test_images` images
/// in every test pass, against a peak of `peak_gflops`.
pub(crate) fn floor(
    runs: &[Trained],
    cache: Option<(usize, f64, f64)>,
    test_images: usize,
    peak: &crate::measure::Peak,
    peak_source: &str,
) -> Option<Floor> {
    let peak_gflops = peak.value;
    let mut work = 0.0;
    let mut seconds = 0.0;
    for run in runs {
        for epoch in &run.summary.history {
            work += run.summary.train_images as f64 * run.flops.train_step;
            work += test_images as f64 * run.flops.forward;
            seconds += epoch.seconds;
        }
    }
    if let Some((images, flops_per_image, cache_seconds)) = cache {
        work += images as f64 * flops_per_image;
        seconds += cache_seconds;
    }
    if !(peak_gflops > 0.0 && work > 0.0) {
        return None;
    }
    let floor_seconds = work / (peak_gflops * 1e9);
    Some(Floor {
        work_tflop: work / 1e12,
        peak_gflops,
        peak_label: peak.label.clone(),
        peak_source: peak_source.to_string(),
        floor_seconds,
        seconds,
        times_floor: seconds / floor_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::EpochRecord;

    fn summary(train_images: usize, epoch_seconds: &[f64]) -> RunSummary {
        RunSummary {
            run: "r".into(),
            arch: "a".into(),
            seed: 0,
            train_images,
            final_accuracy: 0.0,
            best_accuracy: 0.0,
            best_epoch: 0,
            seconds_per_epoch: 0.0,
            history: epoch_seconds
                .iter()
                .enumerate()
                .map(|(i, &s)| EpochRecord {
                    run: "r".into(),
                    epoch: i + 1,
                    lr: 0.0,
                    train_loss: 0.0,
                    train_accuracy: 0.0,
                    test_loss: 0.0,
                    test_accuracy: 0.0,
                    seconds: s,
                    images_per_second: 0.0,
                })
                .collect(),
        }
    }

    /// Two epochs of 100 images at 3 FLOPs a step and 10 test images at 1 FLOP, plus a cache
    /// of 50 images at 2 FLOPs: 2·(300 + 10) + 100 = 720 FLOPs, by hand.
    #[test]
    fn work_and_time_by_hand() {
        let s = summary(100, &[1.0, 2.0]);
        let runs = [Trained {
            flops: Flops {
                forward: 1.0,
                train_step: 3.0,
            },
            summary: &s,
        }];
        let peak = crate::measure::Peak::new("p", 1e-9);
        let f = floor(&runs, Some((50, 2.0, 0.5)), 10, &peak, "given").unwrap();
        assert_eq!(
            (f.peak_label.as_str(), f.peak_source.as_str()),
            ("p", "given")
        );
        assert!((f.work_tflop - 720e-12).abs() < 1e-20);
        assert!((f.floor_seconds - 720.0).abs() < 1e-9); // 720 FLOPs at 1 FLOP/s
        assert_eq!(f.seconds, 3.5);
        assert!((f.times_floor - 3.5 / 720.0).abs() < 1e-12);
    }

    #[test]
    fn no_peak_or_no_work_gives_no_floor() {
        let s = summary(100, &[1.0]);
        let runs = [Trained {
            flops: Flops::default(),
            summary: &s,
        }];
        let p = |v| crate::measure::Peak::new("p", v);
        assert!(floor(&runs, None, 10, &p(100.0), "").is_none());
        let runs = [Trained {
            flops: Flops {
                forward: 1.0,
                train_step: 3.0,
            },
            summary: &s,
        }];
        assert!(floor(&runs, None, 10, &p(0.0), "").is_none());
        assert!(floor(&runs, None, 10, &p(f64::NAN), "").is_none());
    }
}
