//! One model trained into a directory: `distill train` (labels alone) and `distill distill`
//! (Hinton KD from a teacher checkpoint). The directory gets `best`/`last` checkpoints,
//! `metrics.jsonl` and, when asked, an f16 copy of the best checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use super::ensemble::Ensemble;
use super::lock::RunDirLock;
use super::metrics::MetricsLog;
use super::teacher::ensemble_accuracy;
use super::teacher::{load_teacher, teacher_logits};
use super::transfer::{transfer_set, Transfer};
use crate::data::{Dataset, Split};
use crate::model_file::save_half_copy;
use crate::model_file::LoadedModel;
use crate::nn::ArchSpec;
use crate::train::{
    self, validate_label_fraction, HintConfig, InputSpec, KdConfig, Observer, TrainConfig,
    TrainJob, Trained,
};
use crate::{Device, Error, Result};

/// The teacher of a KD student.
#[derive(Clone, Debug)]
pub struct TeacherSource {
    /// One checkpoint, or several distilled as an ensemble (distill or PyTorch files).
    pub checkpoints: Vec<PathBuf>,
    /// How several teachers' outputs combine.
    pub ensemble: Ensemble,
    pub kd: KdConfig,
    /// Fraction of the labelled training set the student sees.
    pub label_fraction: f64,
    /// Feature (hint) distillation from the teacher's feature map; `None`: outputs only.
    pub hint: Option<HintConfig>,
    /// The images the KD term sees (the labelled ones, all, or those plus a folder's).
    pub transfer: Transfer,
}

impl TeacherSource {
    /// The fraction of the labelled training set a KD student sees unless told otherwise: all.
    pub const DEFAULT_LABEL_FRACTION: f64 = 1.0;

    /// Distillation from `checkpoints` with the defaults: probabilities averaged over an
    /// ensemble, [`KdConfig::default`], every labelled image ([`Self::DEFAULT_LABEL_FRACTION`]),
    /// no hint term, and the labelled images as the transfer set.
    pub fn new(checkpoints: Vec<PathBuf>) -> TeacherSource {
        TeacherSource {
            checkpoints,
            ensemble: Ensemble::default(),
            kd: KdConfig::default(),
            label_fraction: Self::DEFAULT_LABEL_FRACTION,
            hint: None,
            transfer: Transfer::default(),
        }
    }
}

/// One model to train.
#[derive(Clone, Debug)]
pub struct ModelJob {
    /// `teacher` or `student`.
    pub arch: String,
    pub config: TrainConfig,
    /// The run directory (created; an existing run in it is resumed).
    pub out: PathBuf,
    /// Distil from this teacher; `None` trains on labels alone.
    pub teacher: Option<TeacherSource>,
    /// Also write `best.f16.safetensors`.
    pub half: bool,
}

impl ModelJob {
    /// Checks every setting of the job: the one check between the caller and the kernels.
    pub fn validate(&self) -> Result<()> {
        self.config.validate()?;
        if let Some(t) = &self.teacher {
            t.kd.validate()?;
            validate_label_fraction(t.label_fraction)?;
            t.transfer.validate()?;
        }
        Ok(())
    }
}

/// What [`train_model`] produced.
pub struct ModelOutcome {
    /// `kd` for a KD student, else the architecture.
    pub run: String,
    pub trained: Trained,
    pub train_images: usize,
    /// For a KD student: whether the teacher's logits were cached (no augmentation).
    pub offline_kd: Option<bool>,
    /// Whether `best.f16.safetensors` was written.
    pub wrote_half: bool,
}

/// Checks an architecture name (`teacher`, `student` or a spec such as `c16-c32-f128`)
/// before any data is read.
pub fn check_arch(name: &str) -> Result<()> {
    ArchSpec::check_name(name)
}

/// Trains `job` on `ds` into `job.out`, reporting progress to `obs`.
pub fn train_model(
    job: &ModelJob,
    ds: &Dataset,
    device: &Device,
    obs: &mut dyn Observer,
) -> Result<ModelOutcome> {
    job.validate()?;
    let spec = ArchSpec::named(
        &job.arch,
        ds.channels,
        ds.height,
        ds.width,
        ds.num_classes(),
    )?;
    let _lock = RunDirLock::acquire(&job.out)?;
    let mut log = MetricsLog::open(&job.out, obs)?;
    let test = Arc::new(ds.test.clone());
    let outcome = match &job.teacher {
        None => {
            let full = Arc::new(ds.train.clone());
            log.message(&format!(
                "training {} on {} images of {} (device {}), checkpoints in {}",
                job.arch,
                full.len(),
                ds.name,
                device.name(),
                job.out.display()
            ));
            let trained = train::train_validated(
                job_of(
                    job,
                    &job.arch,
                    spec,
                    InputSpec::of(ds),
                    device,
                    full.clone(),
                    test,
                ),
                &mut log,
            )?;
            ModelOutcome {
                run: job.arch.clone(),
                trained,
                train_images: full.len(),
                offline_kd: None,
                wrote_half: false,
            }
        }
        Some(teacher) => distill_into(job, teacher, spec, ds, device, test, &mut log)?,
    };
    log.finish()?;
    let wrote_half = job.half;
    if wrote_half {
        save_half_copy(
            &job.out.join("best.safetensors"),
            &job.out.join("best.f16.safetensors"),
        )?;
    }
    Ok(ModelOutcome {
        wrote_half,
        ..outcome
    })
}

/// The [`TrainJob`] of `job` for one run name, resumable in `job.out`.
fn job_of<'a>(
    job: &ModelJob,
    run: &str,
    spec: ArchSpec,
    input: InputSpec,
    device: &Device,
    train: Arc<Split>,
    test: Arc<Split>,
) -> TrainJob<'a> {
    TrainJob {
        run: run.into(),
        spec,
        input,
        device: device.clone(),
        config: job.config.clone(),
        train,
        test,
        kd: None,
        hint: None,
        checkpoint_dir: Some(job.out.clone()),
        resume: true,
    }
}

/// A KD student of `teacher` on a stratified fraction of the training split. It sees exactly
/// what the teacher saw: the teacher's normalisation and class names.
fn distill_into(
    job: &ModelJob,
    teacher: &TeacherSource,
    spec: ArchSpec,
    ds: &Dataset,
    device: &Device,
    test: Arc<Split>,
    log: &mut MetricsLog,
) -> Result<ModelOutcome> {
    let teachers = load_teachers(teacher, device, ds, &test, log)?;
    let loaded = &teachers[0];
    let labelled = if teacher.label_fraction < 1.0 {
        ds.train
            .label_fraction_indices(teacher.label_fraction, job.config.seed)?
    } else {
        (0..ds.train.len()).collect()
    };
    let transfer = transfer_set(
        &teacher.transfer,
        &ds.train,
        &labelled,
        &Arc::new(ds.train.subset(&labelled)),
        (ds.channels, ds.height, ds.width),
        &mut |w| log.message(&format!("warning: {w}")),
    )?;
    let student_train = transfer.split;
    log.message(&format!(
        "distilling {} into a {} on {} images of {} ({} with labels, {} with soft targets only; \
         T = {}, α = {}, device {}), checkpoints in {}",
        teacher
            .checkpoints
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + "),
        job.arch,
        student_train.len(),
        ds.name,
        transfer.labelled,
        transfer.soft_only,
        teacher.kd.temperature,
        teacher.kd.alpha,
        device.name(),
        job.out.display()
    ));
    let augmented = job.config.augment.is_active();
    let pairs: Vec<_> = teachers.iter().map(|t| (&t.model, &t.input)).collect();
    let soft = (teacher.kd.temperature, teacher.ensemble);
    let (logits, _) = teacher_logits(&pairs, device, &student_train, soft, augmented, log)?;
    let mut train_job = job_of(
        job,
        "kd",
        spec,
        loaded.input.clone(),
        device,
        student_train.clone(),
        test,
    );
    train_job.kd = Some((teacher.kd, logits));
    train_job.hint = teacher.hint.clone().map(|h| (h, &loaded.model));
    let trained = train::train_validated(train_job, log)?;
    Ok(ModelOutcome {
        run: "kd".into(),
        trained,
        train_images: student_train.len(),
        offline_kd: Some(!augmented),
        wrote_half: false,
    })
}

/// The teachers of `source`, each checked against the data and its test accuracy logged
/// (with the ensemble's, for several).
fn load_teachers(
    source: &TeacherSource,
    device: &Device,
    ds: &Dataset,
    test: &Arc<Split>,
    log: &mut MetricsLog,
) -> Result<Vec<LoadedModel>> {
    if source.checkpoints.is_empty() {
        return Err(Error::setting("teacher", "no teacher checkpoint given"));
    }
    let mut teachers = Vec::new();
    for path in &source.checkpoints {
        let t = load_teacher(path, device, ds)?;
        let acc = train::evaluate(&t.model, device, test, &t.input, 256, false)?.accuracy;
        log.message(&format!(
            "teacher {} ({}): test accuracy {:.2}%",
            path.display(),
            t.spec.arch,
            100.0 * acc
        ));
        teachers.push(t);
    }
    if teachers.len() > 1 {
        let pairs: Vec<_> = teachers.iter().map(|t| (&t.model, &t.input)).collect();
        let soft = (source.kd.temperature, source.ensemble);
        let acc = ensemble_accuracy(&pairs, device, test, soft)?;
        log.message(&format!(
            "the ensemble of {} teachers: test accuracy {:.2}%",
            teachers.len(),
            100.0 * acc
        ));
    }
    Ok(teachers)
}
