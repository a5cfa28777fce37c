//! A study's results: per method, the final and best test accuracy as mean ± sd over seeds,
//! and the paired gain over the CE twin of the same seed with a paired t-statistic and an
//! exact two-sided sign test; written as `study.md`, `study_report.json` and
//! `study_accuracy.png` (mean test accuracy per epoch with a ± sd band), each atomically.
//!
//! The report is built from the study's journal ([`super::journal`]): by the process that ran
//! the whole study, or by [`merge`] from whatever runs the shards have finished, naming those
//! that have not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::journal::{self, TeachersRecord};
use super::shard::{partition, plan};
use super::study::{run_settings, Method, StudyConfig, STUDY_CONFIG};
use super::{mean_std, RunSummary};
use crate::fs::write_atomic;
use crate::measure::load::LoadWindow;
use crate::measure::record::Figure;
use crate::plot::{self, Series};
use crate::{Error, Result};

/// File names in the study directory.
pub const STUDY_MD: &str = "study.md";
pub const STUDY_JSON: &str = "study_report.json";
pub const STUDY_PNG: &str = "study_accuracy.png";

/// One student run of the grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyRun {
    pub method: Method,
    pub seed: u64,
    pub summary: RunSummary,
}

/// Per-seed differences `method − ce` and their tests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedGain {
    pub seeds: usize,
    pub mean: f64,
    pub sd: f64,
    /// `mean / (sd / √n)`; `None` with fewer than 2 seeds or no spread (sd ≤ 1e-12).
    pub t: Option<f64>,
    pub positive: usize,
    pub negative: usize,
    /// Exact two-sided sign-test p-value (ties dropped).
    pub sign_p: f64,
}

/// One method's line of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MethodSummary {
    pub method: Method,
    pub seeds: usize,
    pub final_mean: f64,
    pub final_sd: f64,
    pub best_mean: f64,
    pub best_sd: f64,
    /// Final accuracy against the CE twin (absent for `ce`).
    pub gain_final: Option<PairedGain>,
    pub seconds_per_epoch: f64,
}

/// Everything a study reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyReport {
    pub config: StudyConfig,
    pub teachers: Vec<RunSummary>,
    pub ensemble_accuracy: Option<f64>,
    pub labelled_images: usize,
    pub transfer_images: usize,
    pub methods: Vec<MethodSummary>,
    pub runs: Vec<StudyRun>,
    pub total_seconds: f64,
    /// The load average before and after the study, and whether other work made the
    /// machine busy (absent in reports written before it was recorded).
    #[serde(default)]
    pub load: Option<LoadWindow>,
    /// Whether a merge wrote the report: `total_seconds` is then the training time of every
    /// epoch of every run (teachers included) summed, not one invocation's wall time.
    #[serde(default)]
    pub merged: bool,
    /// The runs of the study that had not finished when the report was written.
    #[serde(default)]
    pub missing: Vec<MissingRun>,
}

/// A run of the study without a usable journal record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MissingRun {
    pub run: String,
    /// `not finished`, or what is wrong with its record or checkpoints.
    pub reason: String,
    /// The shard that owns it (`2/3`), when the finished runs name one shard count.
    pub shard: Option<String>,
}

impl StudyReport {
    /// The study's headline figures, for a record (`distill study --record`): every
    /// teacher's and the ensemble's test accuracy, and per method the final and best accuracy
    /// (mean and sd over seeds, %; sd in points), each seed's final accuracy, the paired gain
    /// over CE (points) with its t, the distance to the first teacher (points), and the wall
    /// time.
    pub fn figures(&self) -> Vec<Figure> {
        let pct = |name: String, v: f64| Figure::new(name, 100.0 * v, "%");
        let points = |name: String, v: f64| Figure::new(name, 100.0 * v, "points");
        let mut out = Vec::new();
        for (i, t) in self.teachers.iter().enumerate() {
            let who = if i == 0 {
                "teacher".to_string()
            } else {
                t.run.clone()
            };
            out.push(pct(format!("{who} final accuracy"), t.final_accuracy));
        }
        if let Some(e) = self.ensemble_accuracy {
            out.push(pct("ensemble accuracy".into(), e));
        }
        let teacher = self.teachers.first().map(|t| t.final_accuracy);
        for m in &self.methods {
            let name = m.method.name();
            out.push(pct(format!("{name} final accuracy"), m.final_mean));
            out.push(points(format!("{name} final accuracy sd"), m.final_sd));
            out.push(pct(format!("{name} best accuracy"), m.best_mean));
            out.push(points(format!("{name} best accuracy sd"), m.best_sd));
            for r in self.runs.iter().filter(|r| r.method == m.method) {
                out.push(pct(
                    format!("{name} seed {} final accuracy", r.seed),
                    r.summary.final_accuracy,
                ));
            }
            if let Some(g) = &m.gain_final {
                out.push(points(format!("{name} gain final"), g.mean));
                out.push(points(format!("{name} gain final sd"), g.sd));
                if let Some(t) = g.t {
                    out.push(Figure::new(format!("{name} gain paired t"), t, "t"));
                }
            }
            if let Some(t) = teacher {
                out.push(points(format!("{name} below teacher"), t - m.final_mean));
            }
        }
        out.push(Figure::new("wall time", self.total_seconds, "s"));
        out
    }
}

/// The paired comparison of `xs` against `ys` (same seeds, same order).
pub fn paired_gain(xs: &[f64], ys: &[f64]) -> PairedGain {
    let d: Vec<f64> = xs.iter().zip(ys).map(|(x, y)| x - y).collect();
    let (mean, sd) = mean_std(&d);
    let n = d.len();
    // Differences of accuracies that are equal up to rounding (1e-17) have no spread: their
    // t would be a huge number made of rounding error.
    let t = (n > 1 && sd > 1e-12).then(|| mean / (sd / (n as f64).sqrt()));
    let positive = d.iter().filter(|&&v| v > 0.0).count();
    let negative = d.iter().filter(|&&v| v < 0.0).count();
    PairedGain {
        seeds: n,
        mean,
        sd,
        t,
        positive,
        negative,
        sign_p: sign_test(positive, negative),
    }
}

/// Two-sided exact sign test: `P(X ≤ min(k, n−k)) · 2` for X ~ Binomial(n, ½), capped at 1.
pub fn sign_test(positive: usize, negative: usize) -> f64 {
    let n = positive + negative;
    if n == 0 {
        return 1.0;
    }
    let k = positive.min(negative);
    let mut term = 0.5f64.powi(n as i32); // C(n, 0) / 2^n
    let mut tail = 0.0;
    for i in 0..=k {
        tail += term;
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    (2.0 * tail).min(1.0)
}

/// The table of a study's runs.
pub(crate) fn summarise(
    config: &StudyConfig,
    runs: Vec<StudyRun>,
    teachers: Vec<RunSummary>,
    ensemble_accuracy: Option<f64>,
    (labelled_images, transfer_images): (usize, usize),
    total_seconds: f64,
) -> StudyReport {
    let of = |m: Method, f: fn(&RunSummary) -> f64| -> Vec<f64> {
        runs.iter()
            .filter(|r| r.method == m)
            .map(|r| f(&r.summary))
            .collect()
    };
    // Each run is paired with the CE run of its own seed (a merge may lack some of either).
    let ce_final: BTreeMap<u64, f64> = runs
        .iter()
        .filter(|r| r.method == Method::Ce)
        .map(|r| (r.seed, r.summary.final_accuracy))
        .collect();
    let paired = |m: Method| -> (Vec<f64>, Vec<f64>) {
        runs.iter()
            .filter(|r| r.method == m)
            .filter_map(|r| Some((r.summary.final_accuracy, *ce_final.get(&r.seed)?)))
            .unzip()
    };
    let methods = config
        .methods
        .iter()
        .map(|&m| {
            let finals = of(m, |r| r.final_accuracy);
            let (final_mean, final_sd) = mean_std(&finals);
            let (best_mean, best_sd) = mean_std(&of(m, |r| r.best_accuracy));
            MethodSummary {
                method: m,
                seeds: finals.len(),
                final_mean,
                final_sd,
                best_mean,
                best_sd,
                gain_final: (m != Method::Ce).then(|| {
                    let (xs, ys) = paired(m);
                    paired_gain(&xs, &ys)
                }),
                seconds_per_epoch: mean_std(&of(m, |r| r.seconds_per_epoch)).0,
            }
        })
        .collect();
    StudyReport {
        config: config.clone(),
        teachers,
        ensemble_accuracy,
        labelled_images,
        transfer_images,
        methods,
        runs,
        total_seconds,
        load: None,
        merged: false,
        missing: Vec::new(),
    }
}

/// The report of the study in `dir` from its journal: the teachers' record, and every run of
/// the plan that has a record matching its settings and checkpoints; the others are listed
/// in `missing`. `total_seconds` is left at the summed training time.
pub fn report_from_journal(
    cfg: &StudyConfig,
    teachers: &TeachersRecord,
    dir: &Path,
) -> Result<StudyReport> {
    let plan = plan(cfg, teachers.counts());
    let mut runs = Vec::new();
    let mut missing = Vec::new();
    let mut shard_counts = std::collections::BTreeSet::new();
    for p in &plan {
        let why = match journal::read_run(dir, &p.name) {
            Ok(None) => "not finished".to_string(),
            Err(e) => e.to_string(),
            Ok(Some(rec)) if rec.settings != run_settings(cfg, p) => format!(
                "its record ({}) was written for other settings",
                journal::record_path(dir, &p.name).display()
            ),
            Ok(Some(rec)) => match journal::check_run_files(dir, &rec)? {
                Some(why) => why,
                None => {
                    if let Some((_, n)) = rec.shard.as_deref().and_then(|s| s.split_once('/')) {
                        shard_counts.insert(n.parse::<usize>().unwrap_or(0));
                    }
                    runs.push(StudyRun {
                        method: p.method,
                        seed: p.seed,
                        summary: rec.summary,
                    });
                    continue;
                }
            },
        };
        missing.push(MissingRun {
            run: p.name.clone(),
            reason: why,
            shard: None,
        });
    }
    // Name each missing run's shard when the finished ones agree on the number of shards.
    let counts: Vec<usize> = shard_counts.into_iter().collect();
    if let &[n] = counts.as_slice() {
        if n > 0 {
            let slices = partition(&plan, n);
            for m in &mut missing {
                let at = plan.iter().position(|p| p.name == m.run);
                m.shard = slices
                    .iter()
                    .position(|s| at.is_some_and(|a| s.contains(&a)))
                    .map(|i| format!("{}/{n}", i + 1));
            }
        }
    }
    let trained: f64 = teachers
        .teachers
        .iter()
        .map(|t| &t.summary)
        .chain(runs.iter().map(|r| &r.summary))
        .flat_map(|s| s.history.iter().map(|h| h.seconds))
        .sum();
    let mut report = summarise(
        cfg,
        runs,
        teachers
            .teachers
            .iter()
            .map(|t| t.summary.clone())
            .collect(),
        teachers.ensemble_accuracy,
        (teachers.labelled_images, teachers.transfer_images),
        trained,
    );
    report.missing = missing;
    Ok(report)
}

/// Builds `study.md`, `study_report.json` and `study_accuracy.png` of the study in `dir`
/// from the runs its journal holds (written by any shards, or by one process), naming in them
/// the runs that have not finished. Trains nothing and takes no lock: every file it reads was
/// written atomically, and it writes its own files atomically.
pub fn merge(dir: &Path) -> Result<StudyReport> {
    let cfg = StudyConfig::load_saved(dir)?.ok_or_else(|| {
        Error::Resume(format!(
            "{} holds no study (no {STUDY_CONFIG})",
            dir.display()
        ))
    })?;
    let teachers = journal::read_teachers(dir)?.ok_or_else(|| {
        Error::Resume(format!(
            "nothing to merge in {}: its teachers stage has not finished (no {}/{})",
            dir.display(),
            journal::JOURNAL_DIR,
            journal::TEACHERS_RECORD
        ))
    })?;
    let mut report = report_from_journal(&cfg, &teachers, dir)?;
    report.merged = true;
    write_study(&report, dir)?;
    Ok(report)
}

/// Writes `study_report.json`, `study.md` and `study_accuracy.png` into `dir`.
pub fn write_study(report: &StudyReport, dir: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(report)
        .map_err(|e| Error::Other(format!("cannot serialise the study: {e}")))?;
    write_atomic(&dir.join(STUDY_JSON), json.as_bytes())?;
    write_atomic(&dir.join(STUDY_MD), study_markdown(report).as_bytes())?;
    plot::line_chart(
        &dir.join(STUDY_PNG),
        "Test accuracy per epoch: mean over seeds, and mean +/- sd",
        "epoch",
        "test accuracy (%)",
        &accuracy_bands(report),
    )
}

/// Per method: the mean test accuracy per epoch, and the mean ± sd over seeds.
fn accuracy_bands(report: &StudyReport) -> Vec<Series> {
    let mut series = Vec::new();
    for m in &report.config.methods {
        let runs: Vec<&RunSummary> = report
            .runs
            .iter()
            .filter(|r| r.method == *m)
            .map(|r| &r.summary)
            .collect();
        let epochs = runs.iter().map(|r| r.history.len()).min().unwrap_or(0);
        let stats: Vec<(f64, f64)> = (0..epochs)
            .map(|e| {
                mean_std(
                    &runs
                        .iter()
                        .map(|r| 100.0 * r.history[e].test_accuracy)
                        .collect::<Vec<_>>(),
                )
            })
            .collect();
        let line = |name: String, k: f64| Series {
            name,
            points: stats
                .iter()
                .enumerate()
                .map(|(e, (mean, sd))| ((e + 1) as f64, mean + k * sd))
                .collect(),
        };
        series.push(line(m.name().to_string(), 0.0));
        if runs.len() > 1 {
            series.push(line(format!("{} +sd", m.name()), 1.0));
            series.push(line(format!("{} -sd", m.name()), -1.0));
        }
    }
    series
}

fn pm(mean: f64, sd: f64) -> String {
    format!("{:.2} ± {:.2}", 100.0 * mean, 100.0 * sd)
}

/// The text of `study.md`.
pub fn study_markdown(r: &StudyReport) -> String {
    let mut md = String::new();
    let w = &mut md;
    let b = &r.config.base;
    let _ = writeln!(w, "# Distillation study\n");
    let time = if r.merged {
        format!(
            "training time of every epoch summed over the runs {:.1} s",
            r.total_seconds
        )
    } else {
        format!("total wall time {:.1} s", r.total_seconds)
    };
    let _ = writeln!(
        w,
        "{} seeds ({}…) per method · students `{}` on {} labelled images{} · T = {}, α = {} · \
         {} student epochs ({} over the transfer set) · {time}\n",
        b.seeds,
        b.student.seed,
        b.student_arch,
        r.labelled_images,
        if r.transfer_images > 0 {
            format!(", transfer set {} images", r.transfer_images)
        } else {
            String::new()
        },
        b.kd.temperature,
        b.kd.alpha,
        b.student.epochs,
        r.runs
            .iter()
            .find(|x| matches!(x.method, Method::KdTransfer | Method::KdEnsemble))
            .map_or_else(|| "-".into(), |x| x.summary.history.len().to_string()),
    );
    if let Some(l) = &r.load {
        let _ = writeln!(w, "Machine: {}.\n", l.describe());
    }
    for t in &r.teachers {
        let _ = writeln!(
            w,
            "- {} (seed {}): test accuracy {:.2}%",
            t.run,
            t.seed,
            100.0 * t.final_accuracy
        );
    }
    if let Some(e) = r.ensemble_accuracy {
        let _ = writeln!(
            w,
            "- the ensemble of {} teachers: {:.2}%",
            r.teachers.len(),
            100.0 * e
        );
    }
    let _ = writeln!(w);
    let _ = writeln!(
        w,
        "| method | seeds | final accuracy (%) | best accuracy (%) | gain over CE, final (points) | paired t | sign test (+/−, p) | s/epoch |"
    );
    let _ = writeln!(w, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in &r.methods {
        if m.seeds == 0 {
            let _ = writeln!(w, "| {} | 0 | — | — | — | — | — | — |", m.method.name());
            continue;
        }
        let (gain, t, sign) = match &m.gain_final {
            None => ("—".to_string(), "—".to_string(), "—".to_string()),
            Some(g) => (
                format!("{:+.2} ± {:.2}", 100.0 * g.mean, 100.0 * g.sd),
                g.t.map_or_else(|| "—".into(), |t| format!("{t:.2}")),
                format!("{}/{}, p = {:.3}", g.positive, g.negative, g.sign_p),
            ),
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {gain} | {t} | {sign} | {:.1} |",
            m.method.name(),
            m.seeds,
            pm(m.final_mean, m.final_sd),
            pm(m.best_mean, m.best_sd),
            m.seconds_per_epoch
        );
    }
    let _ = writeln!(
        w,
        "\nMean ± sample sd over seeds. The gain pairs each seed's run with the CE run of the same \
         seed (same labelled images, initialisation and batch order).\n\n![accuracy]({STUDY_PNG})"
    );
    if !r.missing.is_empty() {
        let total = r.missing.len() + r.runs.len();
        let _ = writeln!(
            w,
            "\n## Not finished: {} of {total} runs\n\nThe table holds the finished runs only, and \
             each gain pairs the seeds that have both runs.\n",
            r.missing.len()
        );
        for m in &r.missing {
            let shard = m
                .shard
                .as_ref()
                .map_or_else(String::new, |s| format!(" (shard {s})"));
            let _ = writeln!(w, "- {}{shard}: {}", m.run, m.reason);
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_test_by_hand() {
        // 5 of 5 positive: 2 · (1/32) = 0.0625; 4 of 5: 2 · 6/32 = 0.375; 0 pairs: 1.
        assert!((sign_test(5, 0) - 0.0625).abs() < 1e-12);
        assert!((sign_test(1, 4) - 0.375).abs() < 1e-12);
        assert_eq!(sign_test(0, 0), 1.0);
        assert_eq!(sign_test(3, 3), 1.0);
    }

    #[test]
    fn paired_gain_by_hand() {
        // d = [1, 2, 3]: mean 2, sd 1, t = 2 / (1/√3) = 2√3.
        let g = paired_gain(&[2.0, 4.0, 6.0], &[1.0, 2.0, 3.0]);
        assert!((g.mean - 2.0).abs() < 1e-12 && (g.sd - 1.0).abs() < 1e-12);
        assert!((g.t.unwrap() - 2.0 * 3f64.sqrt()).abs() < 1e-12);
        assert_eq!((g.positive, g.negative), (3, 0));
        assert_eq!(paired_gain(&[1.0], &[0.5]).t, None);
        // Two seeds 21 points worse each, as the floats of two test accuracies give it.
        let g = paired_gain(&[0.175, 0.17500000000000002], &[0.385, 0.385]);
        assert!(g.sd > 0.0 && g.sd < 1e-12, "{}", g.sd);
        assert_eq!(g.t, None);
    }

    fn run(method: Method, seed: u64, acc: f64) -> StudyRun {
        StudyRun {
            method,
            seed,
            summary: RunSummary {
                run: format!("{}-seed{seed}", method.name()),
                arch: "student".into(),
                seed,
                train_images: 10,
                final_accuracy: acc,
                best_accuracy: acc,
                best_epoch: 1,
                seconds_per_epoch: 1.0,
                history: Vec::new(),
            },
        }
    }

    #[test]
    fn gains_pair_runs_by_seed_when_some_are_missing() {
        let cfg = StudyConfig {
            base: crate::pipeline::RunConfig {
                seeds: 3,
                ..Default::default()
            },
            methods: vec![Method::Ce, Method::Kd],
            hint: crate::pipeline::study::default_hint(),
        };
        // CE seed 0 is missing and KD seed 2: only seed 1 pairs (0.9 − 0.8).
        let runs = vec![
            run(Method::Kd, 0, 0.5),
            run(Method::Ce, 1, 0.8),
            run(Method::Kd, 1, 0.9),
            run(Method::Ce, 2, 0.7),
        ];
        let r = summarise(&cfg, runs, Vec::new(), None, (10, 0), 1.0);
        let kd = &r.methods[1];
        assert_eq!(kd.seeds, 2);
        let g = kd.gain_final.as_ref().unwrap();
        assert_eq!(g.seeds, 1);
        assert!((g.mean - 0.1).abs() < 1e-12);
        assert_eq!((g.positive, g.negative), (1, 0));
    }
}
