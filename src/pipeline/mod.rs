//! The main job: teacher → baseline student → KD student → report, in one run directory.
//!
//! The teacher trains on the whole training split (or is loaded from a checkpoint). The two
//! students train on a seeded, class-stratified `label_fraction` of it with the same seed and
//! schedule; the only difference is the loss (labels alone vs. Hinton KD against the
//! teacher). Without augmentation the teacher's logits over the students' training images
//! are computed once and cached (offline KD). With `seeds > 1` each student run repeats with
//! seeds `seed, seed+1, …` and the report shows mean ± std.
//!
//! [`single`] trains one model the same way (`distill train`, `distill distill`).

pub mod config;
pub mod ensemble;
pub mod floor;
pub mod inference;
pub mod journal;
pub mod lock;
mod markdown;
pub mod metrics;
pub mod report;
pub mod shard;
pub mod single;
pub mod stats;
pub mod study;
pub mod study_report;
pub mod summary;
pub mod teacher;
pub mod transfer;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub use config::{DataSource, RunConfig, DEFAULT_STUDENT_ARCH};
pub use ensemble::Ensemble;
pub use floor::Floor;
pub use inference::{
    evaluate_checkpoint, predict, CheckpointEvaluation, EvalJob, Prediction, DEFAULT_TOP_K,
};
pub use lock::RunDirLock;
pub use markdown::summary_lines;
pub use metrics::MetricsLog;
pub use shard::{Shard, ShardEnv};
pub use single::{check_arch, train_model, ModelJob, ModelOutcome, TeacherSource};
pub use stats::{mean_std, model_stats, ModelStats};
pub use study::{
    run_shard, run_shard_on, study, study_on, teacher_stage, Method, ShardOutcome, StudyConfig,
};
pub use study_report::{merge, StudyReport};
pub use summary::{Report, RunSummary};
pub use transfer::{transfer_epochs, transfer_set, Transfer, TransferSet};

use crate::data::{self, Dataset, Split};
use crate::measure::load::LoadWindow;
use crate::model_file::save_half_copy;
use crate::nn::{ArchSpec, Sequential};
use crate::optim::LrSchedule;
use crate::train::{self, InputSpec, Observer, TeacherLogits, TrainConfig, TrainJob};
use crate::{Device, Error, Result};

/// What every step of a run shares.
struct Ctx<'a> {
    cfg: &'a RunConfig,
    device: &'a Device,
    run_dir: &'a Path,
    input: InputSpec,
    test: Arc<Split>,
}

impl Ctx<'_> {
    /// A resumable training job in `run_dir/<run>`.
    fn job<'t>(
        &self,
        run: &str,
        spec: &ArchSpec,
        config: TrainConfig,
        train: Arc<Split>,
    ) -> TrainJob<'t> {
        TrainJob {
            run: run.into(),
            spec: spec.clone(),
            input: self.input.clone(),
            device: self.device.clone(),
            config,
            train,
            test: self.test.clone(),
            kd: None,
            hint: None,
            checkpoint_dir: Some(self.run_dir.join(run)),
            resume: true,
        }
    }
}

/// The teacher of a run, trained or loaded.
struct TeacherRun {
    model: Sequential,
    summary: RunSummary,
}

/// The students of a run: one baseline and one KD student per seed.
struct Students {
    baseline: Vec<RunSummary>,
    kd: Vec<RunSummary>,
    /// The KD student of the first seed, whose confusion matrix and speed the report shows.
    first_kd: Sequential,
}

/// Runs the whole job into `run_dir` and writes its report there (`report.md`, `report.json`,
/// plots). The directory is created, and locked for the run ([`RunDirLock`]); an existing run
/// is resumed: finished trainings are restored from their checkpoints and unfinished ones
/// continue where they stopped.
pub fn run(
    cfg: &RunConfig,
    device: &Device,
    run_dir: &Path,
    obs: &mut dyn Observer,
) -> Result<Report> {
    cfg.validate()?;
    let started = Instant::now();
    let mut load = LoadWindow::start_here();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    // Load the data first: a bad data folder must not leave a run directory behind.
    let mut ds = cfg.data_source().load()?;
    let _lock = RunDirLock::acquire(run_dir)?;
    if let Some(saved) = RunConfig::load_saved(run_dir)? {
        cfg.check_resume(&saved, run_dir)?;
    }
    crate::fs::write_atomic(
        &run_dir.join("config.json"),
        serde_json::to_string_pretty(cfg)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let ctx = Ctx {
        cfg,
        device,
        run_dir,
        input: InputSpec::of(&ds),
        // The splits move out of `ds` (its shapes and names stay): one copy of the images.
        test: Arc::new(std::mem::take(&mut ds.test)),
    };
    let full_train = Arc::new(std::mem::take(&mut ds.train));
    let labelled = if cfg.label_fraction < 1.0 {
        full_train.label_fraction_indices(cfg.label_fraction, cfg.student.seed)?
    } else {
        (0..full_train.len()).collect()
    };
    let student_train: Arc<Split> = if labelled.len() < full_train.len() {
        Arc::new(full_train.subset(&labelled))
    } else {
        full_train.clone()
    };

    let mut log = MetricsLog::open(run_dir, obs)?;
    let teachers = (0..cfg.teachers)
        .map(|i| obtain_teacher(&ctx, &ds, &full_train, &mut log, i))
        .collect::<Result<Vec<_>>>()?;
    let transfer =
        student_transfer_set(&ctx, &ds, &full_train, &student_train, &labelled, &mut log)?;
    let pairs: Vec<_> = teachers.iter().map(|t| (&t.model, &ctx.input)).collect();
    let soft = (cfg.kd.temperature, cfg.ensemble);
    let (logits, cache_seconds) = teacher::teacher_logits(
        &pairs,
        device,
        &transfer.split,
        soft,
        cfg.student.augment.is_active(),
        &mut log,
    )?;
    let ensemble_accuracy = if pairs.len() > 1 {
        let acc = teacher::ensemble_accuracy(&pairs, device, &ctx.test, soft)?;
        log.message(&format!(
            "the ensemble of {} teachers: test accuracy {:.2}%",
            pairs.len(),
            100.0 * acc
        ));
        Some(acc)
    } else {
        None
    };
    let kd_epochs = transfer_epochs(
        cfg.student.epochs,
        transfer.labelled,
        transfer.split.len(),
        cfg.transfer_epochs,
    );
    let students = train_students(
        &ctx,
        &ds,
        &student_train,
        &transfer,
        kd_epochs,
        logits,
        &mut log,
    )?;
    log.finish()?;
    if cfg.half {
        write_half_copies(run_dir, &teachers, &students)?;
    }

    let (c, h, w) = (ds.channels, ds.height, ds.width);
    let student_flops = students.first_kd.flops_per_image(c, h, w)?;
    let teacher_flops = teachers
        .iter()
        .map(|t| t.model.flops_per_image(c, h, w))
        .collect::<Result<Vec<_>>>()?;
    let transfer_images = transfer.split.len();
    obs.message("evaluating the KD student and measuring inference latency and throughput…");
    let mut report = measure(&ctx, &ds, &teachers[0], students)?;
    report.teachers = teachers.iter().map(|t| t.summary.clone()).collect();
    report.ensemble_accuracy = ensemble_accuracy;
    report.teacher_train_images = full_train.len();
    report.student_train_images = student_train.len();
    report.transfer_labelled_images = transfer.labelled;
    report.transfer_soft_only_images = transfer.soft_only;
    report.kd_epochs = kd_epochs;
    report.teacher_cache_seconds = cache_seconds;
    // Online KD would run the teacher over the same images in every KD epoch.
    let student_epochs_run = (kd_epochs * cfg.seeds) as f64;
    report.teacher_seconds_saved = cache_seconds.map(|s| s * (student_epochs_run - 1.0).max(0.0));
    let cache = cache_seconds.map(|secs| {
        let forward: f64 = teacher_flops.iter().map(|f| f.forward).sum();
        (transfer_images, forward, secs)
    });
    load.finish();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    let peak = floor_peak(device, &load, obs);
    report.floor = peak.and_then(|(peak, source)| {
        run_floor(
            &report,
            &teacher_flops,
            student_flops,
            cache,
            &peak,
            &source,
        )
    });
    report.load = Some(load);
    report.total_seconds = started.elapsed().as_secs_f64();
    obs.message("writing the report");
    report::write_report(&report, run_dir)?;
    Ok(report)
}

/// The peak a run's floor is read against, and where it comes from: this machine's last quiet
/// `distill bench` of `device`, else the peak measured now, at the end of the run (`load`
/// is the run's load window).
fn floor_peak(
    device: &Device,
    load: &LoadWindow,
    obs: &mut dyn Observer,
) -> Option<(crate::measure::Peak, String)> {
    let kept = crate::measure::reference::default_dir()
        .and_then(|dir| crate::measure::reference::reference_peak(&dir, device));
    if let Some(r) = kept {
        let source = r.describe();
        return Some((r.peak, source));
    }
    obs.message("measuring the device's peak for the floor (no quiet `distill bench` of it kept)");
    let peak = crate::measure::peak::device_peak(device)?;
    let source = format!(
        "measured at the end of this run ({}); `distill bench` on a quiet machine keeps a \
         steadier one",
        load.describe()
    );
    Some((peak, source))
}

/// The run's work against `peak` (see [`floor`]).
fn run_floor(
    report: &Report,
    teacher_flops: &[crate::nn::Flops],
    student_flops: crate::nn::Flops,
    cache: Option<(usize, f64, f64)>,
    peak: &crate::measure::Peak,
    peak_source: &str,
) -> Option<Floor> {
    let teachers = report.teachers.iter().zip(teacher_flops);
    let students = report.baseline.iter().chain(&report.kd);
    let runs: Vec<floor::Trained> = teachers
        .map(|(summary, &flops)| floor::Trained { flops, summary })
        .chain(students.map(|summary| floor::Trained {
            flops: student_flops,
            summary,
        }))
        .collect();
    floor::floor(&runs, cache, report.test_images, peak, peak_source)
}

/// The teacher: trained on the whole training split, or loaded from `teacher_checkpoint`
/// (and evaluated, so the report can show its accuracy).
fn obtain_teacher(
    ctx: &Ctx,
    ds: &Dataset,
    full_train: &Arc<Split>,
    log: &mut MetricsLog,
    index: usize,
) -> Result<TeacherRun> {
    let cfg = ctx.cfg;
    // The first teacher keeps the name of a run with one; the others are teacher2, teacher3, …
    let name = match index {
        0 => "teacher".to_string(),
        i => format!("teacher{}", i + 1),
    };
    let seed = cfg.teacher.seed + index as u64;
    if let Some(path) = &cfg.teacher_checkpoint {
        let loaded = teacher::load_teacher(path, ctx.device, ds)?;
        let eval = train::evaluate(&loaded.model, ctx.device, &ctx.test, &ctx.input, 256, false)?;
        log.message(&format!(
            "teacher loaded from {}: test accuracy {:.2}%",
            path.display(),
            100.0 * eval.accuracy
        ));
        let summary = RunSummary {
            run: "teacher".into(),
            arch: loaded.spec.arch.clone(),
            seed: cfg.teacher.seed,
            train_images: full_train.len(),
            final_accuracy: eval.accuracy,
            best_accuracy: eval.accuracy,
            best_epoch: 0,
            seconds_per_epoch: 0.0,
            history: Vec::new(),
        };
        return Ok(TeacherRun {
            model: loaded.model,
            summary,
        });
    }
    let spec = ArchSpec::preset(
        "teacher",
        ds.channels,
        ds.height,
        ds.width,
        ds.num_classes(),
    )?;
    let config = TrainConfig {
        seed,
        ..cfg.teacher.clone()
    };
    let job = ctx.job(&name, &spec, config, full_train.clone());
    let t = train::train_validated(job, log)?;
    let summary = RunSummary::of(&name, "teacher", seed, full_train.len(), &t);
    Ok(TeacherRun {
        model: t.model,
        summary,
    })
}

/// The KD student's transfer set: the labelled images, or more (`transfer`), shared with
/// the baseline's split when it is the same images.
fn student_transfer_set(
    ctx: &Ctx,
    ds: &Dataset,
    full_train: &Arc<Split>,
    student_train: &Arc<Split>,
    labelled: &[usize],
    log: &mut MetricsLog,
) -> Result<TransferSet> {
    let set = transfer_set(
        &ctx.cfg.transfer,
        full_train,
        labelled,
        student_train,
        (ds.channels, ds.height, ds.width),
        &mut |w| log.message(&format!("warning: {w}")),
    )?;
    if set.soft_only > 0 {
        log.message(&format!(
            "transfer set: {} images, {} with labels and {} with the teacher's soft targets only",
            set.labelled + set.soft_only,
            set.labelled,
            set.soft_only
        ));
    }
    Ok(set)
}

/// Baseline and KD students, seed by seed, on the same images with the same schedule.
fn train_students(
    ctx: &Ctx,
    ds: &Dataset,
    student_train: &Arc<Split>,
    transfer: &TransferSet,
    kd_epochs: usize,
    logits: TeacherLogits,
    log: &mut MetricsLog,
) -> Result<Students> {
    let cfg = ctx.cfg;
    let spec = ArchSpec::named(
        &cfg.student_arch,
        ds.channels,
        ds.height,
        ds.width,
        ds.num_classes(),
    )?;
    let mut baseline = Vec::new();
    let mut kd = Vec::new();
    let mut first_kd = None;
    for i in 0..cfg.seeds {
        let seed = cfg.student.seed + i as u64;
        let suffix = if cfg.seeds > 1 {
            format!("-seed{seed}")
        } else {
            String::new()
        };
        let config = TrainConfig {
            seed,
            ..cfg.student.clone()
        };
        let name = format!("baseline{suffix}");
        let job = ctx.job(&name, &spec, config.clone(), student_train.clone());
        let t = train::train_validated(job, log)?;
        baseline.push(RunSummary::of(
            &name,
            &spec.arch,
            seed,
            student_train.len(),
            &t,
        ));

        let name = format!("kd{suffix}");
        let config = with_epochs(config, kd_epochs);
        let mut job = ctx.job(&name, &spec, config, transfer.split.clone());
        job.kd = Some((cfg.kd, logits.clone()));
        let t = train::train_validated(job, log)?;
        kd.push(RunSummary::of(
            &name,
            &spec.arch,
            seed,
            transfer.split.len(),
            &t,
        ));
        first_kd.get_or_insert(t.model);
    }
    let first_kd = first_kd.ok_or_else(|| Error::setting("seeds", "must be at least 1"))?;
    Ok(Students {
        baseline,
        kd,
        first_kd,
    })
}

/// `config` with `epochs` epochs (a cosine schedule spans them).
pub(crate) fn with_epochs(config: TrainConfig, epochs: usize) -> TrainConfig {
    let schedule = match config.schedule {
        LrSchedule::Cosine { eta_min, .. } => LrSchedule::Cosine {
            t_max: epochs,
            eta_min,
        },
        other => other,
    };
    TrainConfig {
        epochs,
        schedule,
        ..config
    }
}

/// `best.f16.safetensors` beside every `best.safetensors` of the run.
fn write_half_copies(run_dir: &Path, teachers: &[TeacherRun], students: &Students) -> Result<()> {
    let runs = teachers
        .iter()
        .map(|t| &t.summary)
        .chain(&students.baseline)
        .chain(&students.kd);
    for run in runs {
        let dir = run_dir.join(&run.run);
        if dir.join("best.safetensors").exists() {
            save_half_copy(
                &dir.join("best.safetensors"),
                &dir.join("best.f16.safetensors"),
            )?;
        }
    }
    Ok(())
}

/// What KD bought: the KD student's confusion matrix, both models' size and speed, and the
/// accuracy gains over the baseline (the caller fills in the run's counts and times).
fn measure(ctx: &Ctx, ds: &Dataset, teacher: &TeacherRun, students: Students) -> Result<Report> {
    let (device, input) = (ctx.device, &ctx.input);
    let kd_eval = train::evaluate(&students.first_kd, device, &ctx.test, input, 256, true)?;
    let sample = data::try_batches(
        ctx.test.clone(),
        input.channels,
        input.height,
        input.width,
        &input.batch_config(256),
        0,
    )?
    .next()
    .ok_or_else(|| Error::Data("the test split is empty".into()))?;
    let classes = ds.num_classes();
    let teacher_spec = ArchSpec::preset("teacher", ds.channels, ds.height, ds.width, classes)?;
    let student_spec = ArchSpec::named(
        &ctx.cfg.student_arch,
        ds.channels,
        ds.height,
        ds.width,
        classes,
    )?;
    let teacher_stats = model_stats(&teacher.model, &teacher_spec, device, &sample.images)?;
    let student_stats = model_stats(&students.first_kd, &student_spec, device, &sample.images)?;
    let (baseline, kd) = (students.baseline, students.kd);
    let gains = |f: fn(&RunSummary) -> f64| {
        mean_std(&kd.iter().map(f).collect::<Vec<_>>()).0
            - mean_std(&baseline.iter().map(f).collect::<Vec<_>>()).0
    };
    Ok(Report {
        version: env!("CARGO_PKG_VERSION").into(),
        dataset: ds.name.clone(),
        device: device.name(),
        class_names: ds.class_names.clone(),
        teacher_train_images: 0,
        student_train_images: 0,
        transfer_labelled_images: 0,
        transfer_soft_only_images: 0,
        kd_epochs: 0,
        test_images: ctx.test.len(),
        config: ctx.cfg.clone(),
        kd_gain_final: gains(|r| r.final_accuracy),
        kd_gain_best: gains(|r| r.best_accuracy),
        compression: teacher_stats.parameters as f64 / student_stats.parameters as f64,
        speedup_throughput: student_stats.throughput_batch256 / teacher_stats.throughput_batch256,
        speedup_latency: teacher_stats.latency_ms_batch1 / student_stats.latency_ms_batch1,
        teacher_cache_seconds: None,
        teacher_seconds_saved: None,
        kd_confusion: kd_eval.confusion.unwrap_or_default(),
        teacher: teacher.summary.clone(),
        teachers: Vec::new(),
        ensemble_accuracy: None,
        baseline,
        kd,
        teacher_stats,
        student_stats,
        floor: None,
        total_seconds: 0.0,
        load: None,
    })
}
