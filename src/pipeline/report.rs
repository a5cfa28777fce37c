//! The run directory's human- and machine-readable report: `report.json` (the [`Report`] as
//! serde writes it), `report.md` (what the run bought, in prose and tables) and three PNGs
//! (`loss.png`, `accuracy.png`, `confusion_kd.png`). Every file is written atomically.

use std::path::Path;

use super::markdown::markdown;
use super::{mean_std, Report, RunSummary};
use crate::fs::write_atomic;
use crate::plot::{self, Series};
use crate::{Error, Result};

/// File names of the plots, relative to the run directory.
pub const LOSS_PNG: &str = "loss.png";
pub const ACCURACY_PNG: &str = "accuracy.png";
pub const CONFUSION_PNG: &str = "confusion_kd.png";

/// Writes `report.json`, `report.md`, `loss.png`, `accuracy.png` and `confusion_kd.png` into
/// `run_dir` (which must exist).
pub fn write_report(report: &Report, run_dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::Other(format!("cannot serialise the report: {e}")))?;
    write_atomic(&run_dir.join("report.json"), json.as_bytes())?;

    let (test_loss, accuracy) = curves(report);
    plot::line_chart(
        &run_dir.join(LOSS_PNG),
        "Test loss (cross-entropy) per epoch",
        "epoch",
        "test cross-entropy",
        &test_loss,
    )?;
    plot::line_chart(
        &run_dir.join(ACCURACY_PNG),
        "Test accuracy per epoch",
        "epoch",
        "test accuracy (%)",
        &accuracy,
    )?;
    if !report.kd_confusion.is_empty() {
        plot::confusion_matrix(
            &run_dir.join(CONFUSION_PNG),
            "KD student: confusion matrix (test)",
            &report.kd_confusion,
            &report.class_names,
        )?;
    }
    let mut f16_files = Vec::new();
    for run in std::iter::once(&report.teacher)
        .chain(&report.baseline)
        .chain(&report.kd)
    {
        let rel = Path::new(&run.run).join("best.f16.safetensors");
        if run_dir.join(&rel).is_file() {
            f16_files.push(rel.display().to_string());
        }
    }
    write_atomic(
        &run_dir.join("report.md"),
        markdown(report, &f16_files).as_bytes(),
    )
}

/// Per-epoch series (test loss, test accuracy in %) of the teacher and, averaged over seeds,
/// the baseline and KD students.
fn curves(report: &Report) -> (Vec<Series>, Vec<Series>) {
    let seeds = report.kd.len().max(1);
    let label = |name: &str| {
        if seeds > 1 {
            format!("{name} (mean of {seeds} seeds)")
        } else {
            name.to_string()
        }
    };
    let mean_curve = |runs: &[RunSummary], f: fn(&crate::train::EpochRecord) -> f64| {
        let epochs = runs.iter().map(|r| r.history.len()).min().unwrap_or(0);
        (0..epochs)
            .map(|e| {
                let vals: Vec<f64> = runs.iter().map(|r| f(&r.history[e])).collect();
                (runs[0].history[e].epoch as f64, mean_std(&vals).0)
            })
            .collect::<Vec<_>>()
    };
    let teacher = std::slice::from_ref(&report.teacher);
    let make = |f: fn(&crate::train::EpochRecord) -> f64| {
        vec![
            Series {
                name: "teacher".into(),
                points: mean_curve(teacher, f),
            },
            Series {
                name: label("baseline student"),
                points: mean_curve(&report.baseline, f),
            },
            Series {
                name: label("KD student"),
                points: mean_curve(&report.kd, f),
            },
        ]
    };
    (make(|r| r.test_loss), make(|r| 100.0 * r.test_accuracy))
}
