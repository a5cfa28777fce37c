//! `distill study`: a grid of distillation methods × seeds in one directory, with the
//! teacher(s) trained (or loaded) once. Every run is resumable, so a stopped study continues
//! with the runs and epochs it had not finished. The statistics and files are in
//! [`super::study_report`].
//!
//! A study runs in one process ([`study`]), or in stages that may run on different machines
//! sharing the study directory: the teachers stage ([`teacher_stage`]) trains or loads the
//! teachers and writes `journal/teachers.json`; each shard ([`run_shard`]) trains its slice of
//! the student runs ([`super::shard`]) against those teachers and writes one journal record
//! per finished run ([`super::journal`]); a merge ([`super::study_report::merge`]) builds the
//! report from the records. The single process does the same three things in turn, so both
//! ways give the same runs and the same report.
//!
//! Methods ([`Method`]), all on the same labelled fraction with the same seeds:
//! - `ce`: cross-entropy on the labelled images (the twin every other method is paired with);
//! - `kd`: Hinton KD from the first teacher, on the labelled images;
//! - `kd-transfer`: KD on the transfer set (`all` unless the settings name a folder);
//! - `kd-ensemble`: as `kd-transfer`, from the ensemble of all the study's teachers;
//! - `hint`: as `kd`, plus the feature hint term (FitNets) of [`StudyConfig::hint`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::journal::{self, FileSum, RunRecord, RunSettings, TeacherEntry, TeachersRecord};
use super::shard::{partition, plan, Counts, PlannedRun, Shard};
use super::study_report::{report_from_journal, write_study, StudyReport, StudyRun};
use super::teacher::{ensemble_accuracy, load_teacher, teacher_logits};
use super::transfer::{transfer_set, Transfer, TransferSet};
use super::{obtain_teacher, with_epochs, Ctx, MetricsLog, RunConfig, RunDirLock, RunSummary};
use crate::data::{Dataset, Split};
use crate::fs::write_atomic;
use crate::measure::load::LoadWindow;
use crate::nn::{ArchSpec, Sequential};
use crate::train::{
    self, EpochRecord, HintConfig, InputSpec, Observer, TeacherLogits, TrainConfig,
};
use crate::{Device, Error, Result};

/// One way of training the student.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Ce,
    Kd,
    KdTransfer,
    KdEnsemble,
    Hint,
}

impl Method {
    pub const ALL: [Method; 5] = [
        Method::Ce,
        Method::Kd,
        Method::KdTransfer,
        Method::KdEnsemble,
        Method::Hint,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Ce => "ce",
            Method::Kd => "kd",
            Method::KdTransfer => "kd-transfer",
            Method::KdEnsemble => "kd-ensemble",
            Method::Hint => "hint",
        }
    }

    /// A comma-separated list such as `ce,kd,kd-transfer`, without repeats.
    pub fn parse_list(s: &str) -> Result<Vec<Method>> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim) {
            let m: Method = part.parse().map_err(|e| Error::setting("methods", e))?;
            if out.contains(&m) {
                return Err(Error::setting(
                    "methods",
                    format!("'{part}' is listed twice"),
                ));
            }
            out.push(m);
        }
        Ok(out)
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown method '{s}': expected one of {}", names.join(", "))
            })
    }
}

/// A study's settings, saved as `study.json`: the run settings every method shares (its
/// `seeds` is the number of seeds) and the methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyConfig {
    pub base: RunConfig,
    pub methods: Vec<Method>,
    /// The hint term of the `hint` method.
    #[serde(default = "default_hint")]
    pub hint: HintConfig,
}

/// Seeds per method unless the settings say otherwise: a study's `base.seeds`, in place of
/// a lone run's ([`RunConfig::default`]).
pub const DEFAULT_SEEDS: usize = 3;

/// The methods a study compares unless the settings say otherwise.
pub const DEFAULT_METHODS: [Method; 3] = [Method::Ce, Method::Kd, Method::KdTransfer];

/// The ensemble a study's `kd-ensemble` distils when `--teachers` is left at 1.
pub const DEFAULT_ENSEMBLE_TEACHERS: usize = 3;

/// The `hint` method's term unless the settings say otherwise: weight 100 (the raw MSE of the
/// conv2 maps is about 0.01, so smaller weights barely register; docs/distillation.md) between
/// the layers hints default to ([`HintConfig::DEFAULT_LAYERS`], the conv2 outputs).
pub fn default_hint() -> HintConfig {
    HintConfig::unchecked(100.0, HintConfig::DEFAULT_LAYERS)
}

impl StudyConfig {
    pub fn validate(&self) -> Result<()> {
        self.base.validate()?;
        if self.methods.is_empty() {
            return Err(Error::setting("methods", "name at least one method"));
        }
        if !self.methods.contains(&Method::Ce) {
            // Every gain is paired with the CE twin of the same seed.
            return Err(Error::setting(
                "methods",
                "must include ce (every method is compared with its CE twin)",
            ));
        }
        if self.methods.contains(&Method::KdEnsemble) && self.base.teacher_checkpoint.is_some() {
            return Err(Error::setting(
                "methods",
                "kd-ensemble needs the study's own teachers, not a loaded one",
            ));
        }
        Ok(())
    }

    /// Teachers the study trains (or loads): the ensemble's size when a method needs one
    /// (`teachers`, at least 2; [`DEFAULT_ENSEMBLE_TEACHERS`] when left at 1), else one.
    pub fn teachers(&self) -> usize {
        if !self.methods.contains(&Method::KdEnsemble) {
            1
        } else if self.base.teachers > 1 {
            self.base.teachers
        } else {
            DEFAULT_ENSEMBLE_TEACHERS
        }
    }

    /// The transfer set of `kd-transfer` and `kd-ensemble`.
    fn transfer(&self) -> Transfer {
        match &self.base.transfer {
            Transfer::Labelled => Transfer::All,
            other => other.clone(),
        }
    }

    /// The settings saved in the study directory `dir`, if it holds a study.
    pub fn load_saved(dir: &Path) -> Result<Option<StudyConfig>> {
        let path = dir.join(STUDY_CONFIG);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Resume(format!("{} is not a distill study: {e}", path.display())))
    }

    /// A stopped study continues only with the same methods and the run settings
    /// [`RunConfig::check_resume`] accepts.
    pub fn check_resume(&self, saved: &StudyConfig, dir: &Path) -> Result<()> {
        if saved.hint != self.hint && self.methods.contains(&Method::Hint) {
            return Err(Error::Resume(format!(
                "{} holds a study with other hint settings ({:?}, now {:?}); start a new study instead",
                dir.display(),
                saved.hint,
                self.hint
            )));
        }
        if saved.methods != self.methods {
            return Err(Error::Resume(format!(
                "{} holds a study of other methods ({:?}, now {:?}); start a new study instead",
                dir.display(),
                saved.methods,
                self.methods
            )));
        }
        self.base.check_resume(&saved.base, dir)
    }
}

/// The settings file of a study directory.
pub const STUDY_CONFIG: &str = "study.json";

/// Where the shards' epoch logs go (one file per shard: appends to one shared file are not
/// dependable on network file systems).
pub const SHARD_LOGS: &str = "shards";

/// Runs (or continues) the whole study in `dir` in this process and writes its report there:
/// the teachers stage, every student run, then the report, built from the journal as a merge
/// builds it.
pub fn study(
    cfg: &StudyConfig,
    device: &Device,
    dir: &Path,
    obs: &mut dyn Observer,
) -> Result<StudyReport> {
    study_on(cfg, std::slice::from_ref(device), dir, obs)
}

/// [`study`] with the student runs on several devices at once, one run per device
/// (`run_on_devices`); the teachers train on the first.
pub fn study_on(
    cfg: &StudyConfig,
    devices: &[Device],
    dir: &Path,
    obs: &mut dyn Observer,
) -> Result<StudyReport> {
    let device = first_device(devices)?;
    cfg.validate()?;
    let started = Instant::now();
    let mut load = LoadWindow::start_here();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    let ds = cfg.base.data_source().load()?;
    let _lock = RunDirLock::acquire(dir)?;
    save_config(cfg, dir)?;
    let mut log = MetricsLog::open(dir, obs)?;
    let setup = Setup::new(cfg, ds, &mut log)?;
    let ctx = setup.ctx(&cfg.base, device, dir);
    let (teachers, record) = obtain_teachers(&ctx, cfg, &setup, &mut log)?;
    let plan = plan(cfg, setup.counts());
    if devices.len() > 1 {
        let all: Vec<usize> = (0..plan.len()).collect();
        run_on_devices(
            dir, cfg, &setup, &record, &plan, &all, devices, None, &mut log,
        )?;
    } else {
        let models: Vec<&Sequential> = teachers.iter().map(|t| &t.model).collect();
        let mut runner = Runner::new(&ctx, cfg, &setup, models, None)?;
        for p in &plan {
            runner.run(p, &mut log)?;
        }
    }
    log.finish()?;
    let mut report = report_from_journal(cfg, &record, dir)?;
    report.total_seconds = started.elapsed().as_secs_f64();
    load.finish();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    report.load = Some(load);
    write_study(&report, dir)?;
    Ok(report)
}

/// The teachers stage alone: trains (or loads) the teachers into `dir`, measures their
/// ensemble when a method needs it, and writes `journal/teachers.json`, which the shards
/// read. Resumable like a study; it holds the study directory's lock, so it cannot run while
/// shards do.
pub fn teacher_stage(
    cfg: &StudyConfig,
    device: &Device,
    dir: &Path,
    obs: &mut dyn Observer,
) -> Result<TeachersRecord> {
    cfg.validate()?;
    let ds = cfg.base.data_source().load()?;
    let _lock = RunDirLock::acquire(dir)?;
    save_config(cfg, dir)?;
    let mut log = MetricsLog::open(dir, obs)?;
    let setup = Setup::new(cfg, ds, &mut log)?;
    let ctx = setup.ctx(&cfg.base, device, dir);
    let (_, record) = obtain_teachers(&ctx, cfg, &setup, &mut log)?;
    log.finish()?;
    Ok(record)
}

/// What a shard did.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShardOutcome {
    pub shard: Shard,
    /// The study's student runs, and this shard's: those it trained (or finished) now and
    /// those it found finished.
    pub planned: usize,
    pub trained: Vec<String>,
    pub skipped: Vec<String>,
}

/// One shard of the student runs: the runs [`Shard::select`] gives it, against the teachers
/// the teachers stage left in `dir`. A finished run (one with a journal record whose
/// checkpoints still match it) is skipped; a stopped one continues from its last epoch. The
/// settings must be the study's own (`study.json`), numbers of epochs included.
pub fn run_shard(
    cfg: &StudyConfig,
    device: &Device,
    dir: &Path,
    shard: Shard,
    obs: &mut dyn Observer,
) -> Result<ShardOutcome> {
    run_shard_on(cfg, std::slice::from_ref(device), dir, shard, obs)
}

/// [`run_shard`] with the shard's runs on several devices at once (`run_on_devices`).
pub fn run_shard_on(
    cfg: &StudyConfig,
    devices: &[Device],
    dir: &Path,
    shard: Shard,
    obs: &mut dyn Observer,
) -> Result<ShardOutcome> {
    let device = first_device(devices)?;
    cfg.validate()?;
    let saved = StudyConfig::load_saved(dir)?.ok_or_else(|| {
        Error::Resume(format!(
            "{} holds no study (no {STUDY_CONFIG}): run its teachers stage first",
            dir.display()
        ))
    })?;
    cfg.check_resume(&saved, dir)?;
    if *cfg != saved {
        return Err(Error::Resume(format!(
            "{}: a shard runs with the study's own settings, but its numbers of epochs differ \
             from those in {STUDY_CONFIG}",
            dir.display()
        )));
    }
    let record = journal::read_teachers(dir)?.ok_or_else(|| {
        Error::Resume(format!(
            "the teachers are not in {}: its teachers stage has not finished (no {}/{}); run \
             it first",
            dir.display(),
            journal::JOURNAL_DIR,
            journal::TEACHERS_RECORD
        ))
    })?;
    let ds = cfg.base.data_source().load()?;
    let mut log = MetricsLog::open_file(
        &dir.join(SHARD_LOGS).join(format!(
            "metrics-{}-of-{}.jsonl",
            shard.index + 1,
            shard.count
        )),
        obs,
    )?;
    // Keeps the teachers stage (and a single-process study) out while shards run.
    let _shared = lock_best_effort(dir, true, &mut log)?;
    let setup = Setup::new(cfg, ds, &mut log)?;
    let counts = setup.counts();
    if counts != record.counts() {
        return Err(Error::Resume(format!(
            "the data here give {} labelled images and a transfer set of {} ({} labelled), \
             but the teachers stage had {}, {} and {}: every shard must see the same data",
            counts.labelled,
            counts.transfer,
            counts.transfer_labelled,
            record.labelled_images,
            record.transfer_images,
            record.transfer_labelled
        )));
    }
    let ctx = setup.ctx(&cfg.base, device, dir);
    let plan = plan(cfg, counts);
    let mine = shard.select(&plan);
    log.message(&format!(
        "shard {shard}: {} of the study's {} student runs",
        mine.len(),
        plan.len()
    ));
    let done = if devices.len() > 1 {
        run_on_devices(
            dir,
            cfg,
            &setup,
            &record,
            &plan,
            &mine,
            devices,
            Some(shard),
            &mut log,
        )?
    } else {
        let needed = teachers_for(dir, cfg, &plan, &mine)?;
        let models = load_teachers(dir, &record, needed, device, &setup.ds)?;
        let mut runner = Runner::new(&ctx, cfg, &setup, models.iter().collect(), Some(shard))?;
        let mut done = Vec::new();
        for &i in &mine {
            done.push((i, runner.run(&plan[i], &mut log)?.1));
        }
        done
    };
    log.finish()?;
    let mut outcome = ShardOutcome {
        shard,
        planned: plan.len(),
        trained: Vec::new(),
        skipped: Vec::new(),
    };
    for (i, trained) in done {
        let list = if trained {
            &mut outcome.trained
        } else {
            &mut outcome.skipped
        };
        list.push(plan[i].name.clone());
    }
    Ok(outcome)
}

fn first_device(devices: &[Device]) -> Result<&Device> {
    devices
        .first()
        .ok_or_else(|| Error::setting("devices", "name at least one device"))
}

/// How many of the study's teachers the unfinished runs among `runs` (positions in `plan`)
/// read.
fn teachers_for(
    dir: &Path,
    cfg: &StudyConfig,
    plan: &[PlannedRun],
    runs: &[usize],
) -> Result<usize> {
    let mut needed = 0;
    for &i in runs {
        let p = &plan[i];
        if journal::read_run(dir, &p.name)?.is_none() {
            needed = needed.max(teachers_needed(cfg, p.method));
        }
    }
    Ok(needed)
}

/// The first `n` teachers of the record, checked against their checksums and loaded onto
/// `device`.
fn load_teachers(
    dir: &Path,
    record: &TeachersRecord,
    n: usize,
    device: &Device,
    ds: &Dataset,
) -> Result<Vec<Sequential>> {
    let mut models = Vec::new();
    for entry in record.teachers.iter().take(n) {
        let root = (!entry.loaded).then_some(dir);
        if let Some(why) = entry.checkpoint.check(root)? {
            return Err(Error::Checkpoint(format!(
                "{}: {why}; run the teachers stage again",
                entry.summary.run
            )));
        }
        let path = match root {
            Some(r) => r.join(&entry.checkpoint.file),
            None => entry.checkpoint.file.clone(),
        };
        models.push(load_teacher(&path, device, ds)?.model);
    }
    Ok(models)
}

/// Trains `runs` (positions in `plan`) on `devices` at once, one run per device at a time.
/// The runs are cut into one cost-balanced slice per device by the rule that cuts shards
/// ([`partition`]), so which device trains which run is a function of the settings and the
/// device list, and each device trains its slice in plan order on a thread of its own, with
/// its own copy of the teachers (loaded from their checkpoints) and its own soft targets. Each
/// device's epochs go to `shards/metrics-…-deviceK.jsonl`; its messages and epochs reach
/// `obs` as lines tagged with the device. When one device fails the others stop after their
/// current run, and the first failure is returned. Returns (position, trained now) per run.
#[allow(clippy::too_many_arguments)]
fn run_on_devices(
    dir: &Path,
    cfg: &StudyConfig,
    setup: &Setup,
    record: &TeachersRecord,
    plan: &[PlannedRun],
    runs: &[usize],
    devices: &[Device],
    shard: Option<Shard>,
    obs: &mut dyn Observer,
) -> Result<Vec<(usize, bool)>> {
    let sub: Vec<PlannedRun> = runs.iter().map(|&i| plan[i].clone()).collect();
    let slices: Vec<Vec<usize>> = partition(&sub, devices.len())
        .into_iter()
        .map(|s| s.into_iter().map(|j| runs[j]).collect())
        .collect();
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<String>();
    let results: Vec<Result<Vec<(usize, bool)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = devices
            .iter()
            .zip(&slices)
            .enumerate()
            .map(|(k, (device, slice))| {
                let tx = tx.clone();
                let failed = &failed;
                scope.spawn(move || {
                    let worker = DeviceWorker {
                        k,
                        device,
                        dir,
                        cfg,
                        setup,
                        record,
                        plan,
                        shard,
                    };
                    let r = worker.run(slice, tx, failed);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        drop(tx);
        for line in rx {
            obs.message(&line);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Other("a device's worker panicked".into())))
            })
            .collect()
    });
    let mut done = Vec::new();
    for r in results {
        done.extend(r?);
    }
    done.sort_unstable();
    Ok(done)
}

/// One device of [`run_on_devices`].
struct DeviceWorker<'a> {
    k: usize,
    device: &'a Device,
    dir: &'a Path,
    cfg: &'a StudyConfig,
    setup: &'a Setup,
    record: &'a TeachersRecord,
    plan: &'a [PlannedRun],
    shard: Option<Shard>,
}

impl DeviceWorker<'_> {
    fn run(
        &self,
        slice: &[usize],
        tx: mpsc::Sender<String>,
        failed: &AtomicBool,
    ) -> Result<Vec<(usize, bool)>> {
        let tag = format!("device {} ({})", self.k + 1, self.device.name());
        let mut forward = Forward { tx, tag };
        let file = match self.shard {
            Some(s) => format!(
                "metrics-{}-of-{}-device{}.jsonl",
                s.index + 1,
                s.count,
                self.k + 1
            ),
            None => format!("metrics-device{}.jsonl", self.k + 1),
        };
        let mut log = MetricsLog::open_file(&self.dir.join(SHARD_LOGS).join(file), &mut forward)?;
        let needed = teachers_for(self.dir, self.cfg, self.plan, slice)?;
        let models = load_teachers(self.dir, self.record, needed, self.device, &self.setup.ds)?;
        let ctx = self.setup.ctx(&self.cfg.base, self.device, self.dir);
        let mut runner = Runner::new(
            &ctx,
            self.cfg,
            self.setup,
            models.iter().collect(),
            self.shard,
        )?;
        let mut done = Vec::new();
        for &i in slice {
            if failed.load(Ordering::SeqCst) {
                log.message("stopping: another device failed");
                break;
            }
            done.push((i, runner.run(&self.plan[i], &mut log)?.1));
        }
        log.finish()?;
        Ok(done)
    }
}

/// An observer on a device's thread: its messages and finished epochs, as tagged lines for
/// the caller's observer.
struct Forward {
    tx: mpsc::Sender<String>,
    tag: String,
}

impl Observer for Forward {
    fn epoch_end(&mut self, r: &EpochRecord) {
        let _ = self.tx.send(format!(
            "[{}] {} epoch {}: train loss {:.4}, test accuracy {:.2}%",
            self.tag,
            r.run,
            r.epoch,
            r.train_loss,
            100.0 * r.test_accuracy
        ));
    }
    fn message(&mut self, text: &str) {
        let _ = self.tx.send(format!("[{}] {text}", self.tag));
    }
}

/// How many of the study's teachers a run of `method` reads: none, the first, or all.
fn teachers_needed(cfg: &StudyConfig, method: Method) -> usize {
    match method {
        Method::Ce => 0,
        Method::Kd | Method::Hint | Method::KdTransfer => 1,
        Method::KdEnsemble => cfg.teachers(),
    }
}

/// Checks the settings against those saved in `dir`, then saves them there.
fn save_config(cfg: &StudyConfig, dir: &Path) -> Result<()> {
    if let Some(saved) = StudyConfig::load_saved(dir)? {
        cfg.check_resume(&saved, dir)?;
    }
    let json = serde_json::to_string_pretty(cfg).unwrap_or_default();
    write_atomic(&dir.join(STUDY_CONFIG), json.as_bytes())
}

/// A lock that guards against a mistake (two processes on the same run) where the file
/// system supports it: a lock that is refused is an error, a file system that cannot lock
/// (some network mounts) a warning. Nothing else depends on it: every file is written
/// atomically and every run has files of its own.
fn lock_best_effort(dir: &Path, shared: bool, log: &mut MetricsLog) -> Result<Option<RunDirLock>> {
    let lock = if shared {
        RunDirLock::acquire_shared(dir)
    } else {
        RunDirLock::acquire(dir)
    };
    match lock {
        Ok(l) => Ok(Some(l)),
        Err(e @ Error::Io { .. }) => {
            log.message(&format!(
                "warning: cannot lock {} ({e}); going on without the lock",
                dir.display()
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The data a study's runs share: the dataset (its splits moved out), the labelled images and
/// the transfer set.
struct Setup {
    ds: Dataset,
    input: InputSpec,
    test: Arc<Split>,
    full: Arc<Split>,
    labelled: Arc<Split>,
    transfer: Option<TransferSet>,
}

impl Setup {
    fn new(cfg: &StudyConfig, mut ds: Dataset, log: &mut MetricsLog) -> Result<Setup> {
        let base = &cfg.base;
        let input = InputSpec::of(&ds);
        let test = Arc::new(std::mem::take(&mut ds.test));
        let full = Arc::new(std::mem::take(&mut ds.train));
        let labelled_idx = full.label_fraction_indices(base.label_fraction, base.student.seed)?;
        let labelled = Arc::new(full.subset(&labelled_idx));
        let needs = |m: Method| cfg.methods.contains(&m);
        let transfer = if needs(Method::KdTransfer) || needs(Method::KdEnsemble) {
            let shape = (ds.channels, ds.height, ds.width);
            let warn = &mut |w: &str| log.message(&format!("warning: {w}"));
            Some(transfer_set(
                &cfg.transfer(),
                &full,
                &labelled_idx,
                &labelled,
                shape,
                warn,
            )?)
        } else {
            None
        };
        Ok(Setup {
            ds,
            input,
            test,
            full,
            labelled,
            transfer,
        })
    }

    fn counts(&self) -> Counts {
        Counts {
            labelled: self.labelled.len(),
            transfer: self.transfer.as_ref().map_or(0, |t| t.split.len()),
            transfer_labelled: self.transfer.as_ref().map_or(0, |t| t.labelled),
        }
    }

    fn ctx<'a>(&self, base: &'a RunConfig, device: &'a Device, dir: &'a Path) -> Ctx<'a> {
        Ctx {
            cfg: base,
            device,
            run_dir: dir,
            input: self.input.clone(),
            test: self.test.clone(),
        }
    }
}

impl TeachersRecord {
    /// The image counts the teachers stage saw.
    pub fn counts(&self) -> Counts {
        Counts {
            labelled: self.labelled_images,
            transfer: self.transfer_images,
            transfer_labelled: self.transfer_labelled,
        }
    }
}

/// Trains (or loads) the teachers, measures their ensemble when a method needs it, and writes
/// the teachers' record.
fn obtain_teachers(
    ctx: &Ctx,
    cfg: &StudyConfig,
    setup: &Setup,
    log: &mut MetricsLog,
) -> Result<(Vec<super::TeacherRun>, TeachersRecord)> {
    let teachers = (0..cfg.teachers())
        .map(|i| obtain_teacher(ctx, &setup.ds, &setup.full, log, i))
        .collect::<Result<Vec<_>>>()?;
    let ensemble = if cfg.methods.contains(&Method::KdEnsemble) {
        let pairs: Vec<_> = teachers.iter().map(|t| (&t.model, &ctx.input)).collect();
        let soft = (cfg.base.kd.temperature, cfg.base.ensemble);
        Some(ensemble_accuracy(&pairs, ctx.device, &ctx.test, soft)?)
    } else {
        None
    };
    let entries = teachers
        .iter()
        .map(|t| {
            let (checkpoint, loaded) = match &cfg.base.teacher_checkpoint {
                Some(path) => (FileSum::of(None, path)?, true),
                None => {
                    let file = PathBuf::from(&t.summary.run).join("last.safetensors");
                    (FileSum::of(Some(ctx.run_dir), &file)?, false)
                }
            };
            Ok(TeacherEntry {
                summary: t.summary.clone(),
                checkpoint,
                loaded,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let counts = setup.counts();
    let record = TeachersRecord {
        version: journal::VERSION,
        teachers: entries,
        ensemble_accuracy: ensemble,
        labelled_images: counts.labelled,
        transfer_images: counts.transfer,
        transfer_labelled: counts.transfer_labelled,
        device: ctx.device.name(),
        finished: crate::calendar::utc_now().1,
    };
    journal::write_teachers(ctx.run_dir, &record)?;
    Ok((teachers, record))
}

/// What a run of the plan is trained with: its record must say the same for it to be
/// skipped.
pub(crate) fn run_settings(cfg: &StudyConfig, p: &PlannedRun) -> RunSettings {
    let base = &cfg.base;
    let train = with_epochs(
        TrainConfig {
            seed: p.seed,
            ..base.student.clone()
        },
        p.epochs,
    );
    RunSettings {
        method: p.method,
        seed: p.seed,
        train,
        train_images: p.train_images,
        kd: (p.method != Method::Ce).then_some(base.kd),
        hint: (p.method == Method::Hint).then(|| cfg.hint.clone()),
    }
}

/// Trains student runs of the plan against the teachers, computing each kind of soft target
/// once, when a run first needs it.
struct Runner<'a, 't> {
    ctx: &'a Ctx<'a>,
    cfg: &'a StudyConfig,
    setup: &'t Setup,
    spec: ArchSpec,
    teachers: Vec<&'t Sequential>,
    shard: Option<Shard>,
    kd: Option<TeacherLogits<'t>>,
    kd_transfer: Option<TeacherLogits<'t>>,
    kd_ensemble: Option<TeacherLogits<'t>>,
}

impl<'a, 't> Runner<'a, 't> {
    fn new(
        ctx: &'a Ctx<'a>,
        cfg: &'a StudyConfig,
        setup: &'t Setup,
        teachers: Vec<&'t Sequential>,
        shard: Option<Shard>,
    ) -> Result<Self> {
        let ds = &setup.ds;
        let spec = ArchSpec::named(
            &cfg.base.student_arch,
            ds.channels,
            ds.height,
            ds.width,
            ds.num_classes(),
        )?;
        Ok(Runner {
            ctx,
            cfg,
            setup,
            spec,
            teachers,
            shard,
            kd: None,
            kd_transfer: None,
            kd_ensemble: None,
        })
    }

    /// The soft targets of `method`'s runs (computed on first use).
    fn logits(
        &mut self,
        method: Method,
        log: &mut MetricsLog,
    ) -> Result<Option<TeacherLogits<'t>>> {
        let setup = self.setup;
        let transfer = || {
            setup
                .transfer
                .as_ref()
                .map(|t| t.split.clone())
                .ok_or_else(|| Error::Other("the transfer set was not prepared".into()))
        };
        let (slot, split, all) = match method {
            Method::Ce => return Ok(None),
            Method::Kd | Method::Hint => (&mut self.kd, setup.labelled.clone(), false),
            Method::KdTransfer => (&mut self.kd_transfer, transfer()?, false),
            Method::KdEnsemble => (&mut self.kd_ensemble, transfer()?, true),
        };
        if slot.is_none() {
            let n = if all { self.teachers.len() } else { 1 };
            if self.teachers.len() < n.max(1) {
                return Err(Error::Other("the teachers were not loaded".into()));
            }
            let pairs: Vec<_> = self.teachers[..n]
                .iter()
                .map(|&m| (m, &setup.input))
                .collect();
            let base = &self.cfg.base;
            let soft = (base.kd.temperature, base.ensemble);
            let augmented = base.student.augment.is_active();
            let (logits, _) =
                teacher_logits(&pairs, self.ctx.device, &split, soft, augmented, log)?;
            *slot = Some(logits);
        }
        Ok(slot.clone())
    }

    /// Runs `p`, or takes it from its journal record when it has finished; `true` when it
    /// trained (or finished) now.
    fn run(&mut self, p: &PlannedRun, log: &mut MetricsLog) -> Result<(StudyRun, bool)> {
        let dir = self.ctx.run_dir;
        let settings = run_settings(self.cfg, p);
        if let Some(rec) = journal::read_run(dir, &p.name)? {
            check_record(dir, &rec, &settings)?;
            log.message(&format!(
                "{}: finished before ({}/{}.json); skipped",
                p.name,
                journal::JOURNAL_DIR,
                p.name
            ));
            let run = StudyRun {
                method: p.method,
                seed: p.seed,
                summary: rec.summary,
            };
            return Ok((run, false));
        }
        let _lock = lock_best_effort(&dir.join(&p.name), false, log)?;
        let split = match p.method {
            Method::Ce | Method::Kd | Method::Hint => self.setup.labelled.clone(),
            Method::KdTransfer | Method::KdEnsemble => self
                .setup
                .transfer
                .as_ref()
                .map(|t| t.split.clone())
                .ok_or_else(|| Error::Other("the transfer set was not prepared".into()))?,
        };
        let logits = self.logits(p.method, log)?;
        let mut job = self
            .ctx
            .job(&p.name, &self.spec, settings.train.clone(), split.clone());
        job.kd = logits.map(|l| (self.cfg.base.kd, l));
        if p.method == Method::Hint {
            let first = *self
                .teachers
                .first()
                .ok_or_else(|| Error::Other("the teachers were not loaded".into()))?;
            job.hint = Some((self.cfg.hint.clone(), first));
        }
        let t = train::train_validated(job, log)?;
        let summary = RunSummary::of(&p.name, &self.spec.arch, p.seed, split.len(), &t);
        let record = RunRecord {
            version: journal::VERSION,
            run: p.name.clone(),
            settings,
            summary: summary.clone(),
            checkpoints: journal::run_checkpoints(dir, &p.name)?,
            shard: self.shard.map(|s| s.to_string()),
            device: self.ctx.device.name(),
            finished: crate::calendar::utc_now().1,
        };
        journal::write_run(dir, &record)?;
        let run = StudyRun {
            method: p.method,
            seed: p.seed,
            summary,
        };
        Ok((run, true))
    }
}

/// A finished run's record may stand for the run only with the same settings and with its
/// checkpoints as they were written.
fn check_record(dir: &Path, rec: &RunRecord, settings: &RunSettings) -> Result<()> {
    let path = journal::record_path(dir, &rec.run);
    if rec.settings != *settings {
        return Err(Error::Resume(format!(
            "{} was written for other settings ({:?}; now {:?}); start a new study instead",
            path.display(),
            rec.settings,
            settings
        )));
    }
    if let Some(why) = journal::check_run_files(dir, rec)? {
        return Err(Error::Checkpoint(format!(
            "{}: {why}; delete {} and {} to train the run again",
            rec.run,
            path.display(),
            dir.join(&rec.run).display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_make_a_valid_study() {
        let hint = default_hint();
        assert_eq!(hint.layers(), HintConfig::DEFAULT_LAYERS);
        assert_eq!(HintConfig::new(hint.weight, &hint.layers()).unwrap(), hint);
        let cfg = StudyConfig {
            base: RunConfig {
                seeds: DEFAULT_SEEDS,
                ..RunConfig::default()
            },
            methods: DEFAULT_METHODS.to_vec(),
            hint,
        };
        cfg.validate().unwrap();
    }
}
