//! `distill study`: a grid of distillation methods × seeds, run one after another in one
//! directory, with the teacher(s) trained (or loaded) once and their logits cached once per
//! kind of soft target. Every run is resumable, so a stopped study continues with the runs and
//! epochs it had not finished. The statistics and files are in [`super::study_report`].
//!
//! Methods ([`Method`]), all on the same labelled fraction with the same seeds:
//! - `ce`: cross-entropy on the labelled images (the twin every other method is paired with);
//! - `kd`: Hinton KD from the first teacher, on the labelled images;
//! - `kd-transfer`: KD on the transfer set (`all` unless the settings name a folder);
//! - `kd-ensemble`: as `kd-transfer`, from the ensemble of all the study's teachers;
//! - `hint`: as `kd`, plus the feature hint term (FitNets) of [`StudyConfig::hint`].

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::study_report::{summarise, write_study, StudyReport, StudyRun};
use super::teacher::{ensemble_accuracy, teacher_logits};
use super::transfer::{transfer_epochs, transfer_set, Transfer, TransferSet};
use super::{obtain_teacher, with_epochs, Ctx, MetricsLog, RunConfig, RunDirLock, RunSummary};
use crate::bench::load::LoadWindow;
use crate::checkpoint::write_atomic;
use crate::data::Split;
use crate::nn::{ArchSpec, Sequential};
use crate::train::{self, HintConfig, InputSpec, Observer, TeacherLogits, TrainConfig};
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

/// The `hint` method's term unless the settings say otherwise: weight 100 (the raw MSE of the
/// conv2 maps is about 0.01, so smaller weights barely register; docs/distillation.md) between
/// the conv2 outputs.
pub fn default_hint() -> HintConfig {
    HintConfig {
        weight: 100.0,
        student_layer: "conv2".into(),
        teacher_layer: "conv2".into(),
    }
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
    /// (`teachers`, at least 2; 3 when left at 1), else one.
    pub fn teachers(&self) -> usize {
        if !self.methods.contains(&Method::KdEnsemble) {
            1
        } else if self.base.teachers > 1 {
            self.base.teachers
        } else {
            3
        }
    }

    /// The transfer set of `kd-transfer` and `kd-ensemble`.
    fn transfer(&self) -> Transfer {
        match &self.base.transfer {
            Transfer::Labelled => Transfer::All,
            other => other.clone(),
        }
    }

    fn load_saved(dir: &Path) -> Result<Option<StudyConfig>> {
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
    fn check_resume(&self, saved: &StudyConfig, dir: &Path) -> Result<()> {
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

/// What the student runs share: the labelled images, the transfer set and the soft targets.
struct Inputs<'t> {
    labelled: Arc<Split>,
    transfer: Option<TransferSet>,
    kd: Option<TeacherLogits<'t>>,
    kd_transfer: Option<TeacherLogits<'t>>,
    kd_ensemble: Option<TeacherLogits<'t>>,
}

/// Runs (or continues) the study in `dir` and writes its report there.
pub fn study(
    cfg: &StudyConfig,
    device: &Device,
    dir: &Path,
    obs: &mut dyn Observer,
) -> Result<StudyReport> {
    cfg.validate()?;
    let started = Instant::now();
    let mut load = LoadWindow::start_here();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    let mut ds = cfg.base.data_source().load()?;
    let _lock = RunDirLock::acquire(dir)?;
    if let Some(saved) = StudyConfig::load_saved(dir)? {
        cfg.check_resume(&saved, dir)?;
    }
    let json = serde_json::to_string_pretty(cfg).unwrap_or_default();
    write_atomic(&dir.join(STUDY_CONFIG), json.as_bytes())?;
    let base = &cfg.base;
    let ctx = Ctx {
        cfg: base,
        device,
        run_dir: dir,
        input: InputSpec::of(&ds),
        test: Arc::new(std::mem::take(&mut ds.test)),
    };
    let full = Arc::new(std::mem::take(&mut ds.train));
    let labelled_idx = full.label_fraction_indices(base.label_fraction, base.student.seed)?;
    let labelled = Arc::new(full.subset(&labelled_idx));
    let mut log = MetricsLog::open(dir, obs)?;
    let teachers = (0..cfg.teachers())
        .map(|i| obtain_teacher(&ctx, &ds, &full, &mut log, i))
        .collect::<Result<Vec<_>>>()?;
    let models: Vec<_> = teachers.iter().map(|t| (&t.model, &ctx.input)).collect();
    let soft = (base.kd.temperature, base.ensemble);
    let augmented = base.student.augment.is_active();
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
    let mut cache = |on: &Arc<Split>, teachers| -> Result<TeacherLogits> {
        Ok(teacher_logits(teachers, device, on, soft, augmented, &mut log)?.0)
    };
    let first = &models[..1];
    let inputs = Inputs {
        kd: (needs(Method::Kd) || needs(Method::Hint))
            .then(|| cache(&labelled, first))
            .transpose()?,
        kd_transfer: match &transfer {
            Some(t) if needs(Method::KdTransfer) => Some(cache(&t.split, first)?),
            _ => None,
        },
        kd_ensemble: match &transfer {
            Some(t) if needs(Method::KdEnsemble) => Some(cache(&t.split, &models)?),
            _ => None,
        },
        labelled,
        transfer,
    };
    let ensemble = if needs(Method::KdEnsemble) {
        Some(ensemble_accuracy(&models, device, &ctx.test, soft)?)
    } else {
        None
    };
    let runs = student_runs(&ctx, cfg, &ds, &inputs, &teachers[0].model, &mut log)?;
    log.finish()?;
    let teacher_summaries: Vec<RunSummary> = teachers.iter().map(|t| t.summary.clone()).collect();
    let mut report = summarise(
        cfg,
        runs,
        teacher_summaries,
        ensemble,
        (
            inputs.labelled.len(),
            inputs.transfer.as_ref().map_or(0, |t| t.split.len()),
        ),
        started.elapsed().as_secs_f64(),
    );
    load.finish();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    report.load = Some(load);
    write_study(&report, dir)?;
    Ok(report)
}

/// Every (seed, method) run in order: seed by seed, so a stopped study has whole seeds done.
fn student_runs(
    ctx: &Ctx,
    cfg: &StudyConfig,
    ds: &crate::data::Dataset,
    inputs: &Inputs,
    first_teacher: &Sequential,
    log: &mut MetricsLog,
) -> Result<Vec<StudyRun>> {
    let base = &cfg.base;
    let spec = ArchSpec::named(
        &base.student_arch,
        ds.channels,
        ds.height,
        ds.width,
        ds.num_classes(),
    )?;
    let mut runs = Vec::new();
    for i in 0..base.seeds {
        let seed = base.student.seed + i as u64;
        for &method in &cfg.methods {
            let (split, epochs, logits) = match method {
                Method::Ce => (inputs.labelled.clone(), base.student.epochs, None),
                Method::Kd | Method::Hint => (
                    inputs.labelled.clone(),
                    base.student.epochs,
                    inputs.kd.clone(),
                ),
                Method::KdTransfer | Method::KdEnsemble => {
                    let t = inputs
                        .transfer
                        .as_ref()
                        .ok_or_else(|| Error::Other("the transfer set was not prepared".into()))?;
                    let logits = if method == Method::KdTransfer {
                        inputs.kd_transfer.clone()
                    } else {
                        inputs.kd_ensemble.clone()
                    };
                    let epochs = transfer_epochs(
                        base.student.epochs,
                        t.labelled,
                        t.split.len(),
                        base.transfer_epochs,
                    );
                    (t.split.clone(), epochs, logits)
                }
            };
            let name = format!("{}-seed{seed}", method.name());
            let config = with_epochs(
                TrainConfig {
                    seed,
                    ..base.student.clone()
                },
                epochs,
            );
            let mut job = ctx.job(&name, &spec, config, split.clone());
            job.kd = logits.map(|l| (base.kd, l));
            if method == Method::Hint {
                job.hint = Some((cfg.hint.clone(), first_teacher));
            }
            let t = train::train(job, log)?;
            runs.push(StudyRun {
                method,
                seed,
                summary: RunSummary::of(&name, &spec.arch, seed, split.len(), &t),
            });
        }
    }
    Ok(runs)
}
