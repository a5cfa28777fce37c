//! The training loop shared by the teacher, the baseline student and the KD student:
//! epochs of batches → forward → loss (cross-entropy, or Hinton KD against a teacher, plus
//! a feature hint term when asked) → backward → optimiser, evaluation on the test split after
//! every epoch, `best`/`last` checkpoints, exact resume, and a stop with a clear message on a NaN or infinite loss.
//!
//! Metrics stay on the device while an epoch runs (loss sums and correct counts are
//! accumulated by kernels); the host reads them every [`READ_EVERY`] batches and at the end
//! of the epoch, so a GPU step is not stalled by read-backs.

use std::path::PathBuf;
use std::sync::Arc;

use web_time::Instant;

use super::config::{KdConfig, TrainConfig};
use super::eval::evaluate_async;
use super::hint::{HintConfig, HintTerm};
use super::interrupt;
use crate::data::InputSpec;
use crate::data::{self, Batch, BatchConfig, Split};
use crate::epoch::EpochRecord;
use crate::nn::{ArchSpec, Sequential};
use crate::ops;
use crate::optim::Optimizer;
use crate::{no_grad, Device, Error, Result, Tensor};

/// How often (in batches) the host reads the running loss for progress and NaN checks.
pub const READ_EVERY: usize = 10;

/// Where a KD student's teacher logits come from.
#[derive(Clone)]
pub enum TeacherLogits<'a> {
    /// Offline KD: logits of every image of the training split, `[n, classes]` row-major,
    /// computed once (only valid without augmentation).
    Cached(Arc<Vec<f32>>),
    /// Online KD: the teacher runs forward (no tape) on every augmented batch.
    Online(&'a Sequential),
}

/// Progress callbacks; the CLI draws bars, tests stay silent.
pub trait Observer {
    fn epoch_start(&mut self, _run: &str, _epoch: usize, _epochs: usize, _batches: usize) {}
    /// `loss` is the mean training loss of the epoch so far, when it was read back.
    fn batch(&mut self, _done: usize, _loss: Option<f64>, _images_per_second: f64) {}
    fn epoch_end(&mut self, _record: &EpochRecord) {}
    fn message(&mut self, _text: &str) {}
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

/// A training job.
pub struct TrainJob<'a> {
    /// `teacher`, `baseline`, `kd`: names the run in metrics and the checkpoint folder.
    pub run: String,
    pub spec: ArchSpec,
    pub input: InputSpec,
    pub device: Device,
    pub config: TrainConfig,
    pub train: Arc<Split>,
    pub test: Arc<Split>,
    /// KD settings and the teacher's logits; `None` trains on labels alone.
    pub kd: Option<(KdConfig, TeacherLogits<'a>)>,
    /// Feature (hint) distillation from this teacher's feature map; `None` adds no hint term.
    pub hint: Option<(HintConfig, &'a Sequential)>,
    /// Folder for `best.safetensors`, `last.safetensors`, `last.state.safetensors`.
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from `checkpoint_dir/last.*` when present.
    pub resume: bool,
}

/// The outcome of [`train`].
pub struct Trained {
    pub model: Sequential,
    pub history: Vec<EpochRecord>,
    pub best_epoch: usize,
    pub best_accuracy: f64,
    pub final_accuracy: f64,
    /// Wall time of the epochs this call ran (not those restored by a resume).
    pub seconds: f64,
}

/// Trains `job.spec` from its seed (or resumes) and returns the model and its history.
/// [`train_async`] waited for on this thread.
#[cfg(not(target_arch = "wasm32"))]
pub fn train(job: TrainJob, obs: &mut dyn Observer) -> Result<Trained> {
    pollster::block_on(train_async(job, obs))
}

/// [`train`] for a caller that has validated the job's settings where they entered the
/// library (the pipeline's jobs), so they are not checked twice.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn train_validated(job: TrainJob, obs: &mut dyn Observer) -> Result<Trained> {
    pollster::block_on(train_job(job, obs))
}

/// [`train`] as a future: the one training loop, natively and in a browser. It awaits the
/// device only where it reads metrics back (every [`READ_EVERY`] batches and at the end of an
/// epoch), and there gives the host a turn ([`crate::runtime::yield_now`]), so a page stays
/// responsive even on the CPU backend.
pub async fn train_async(job: TrainJob<'_>, obs: &mut dyn Observer) -> Result<Trained> {
    job.config.validate()?;
    if let Some((kd, _)) = &job.kd {
        kd.validate()?;
    }
    train_job(job, obs).await
}

/// The loop itself, on settings already validated.
async fn train_job(job: TrainJob<'_>, obs: &mut dyn Observer) -> Result<Trained> {
    check_cached_logits(&job)?;
    let cfg = &job.config;
    let model = job.spec.build(&job.device, cfg.seed)?;
    let hint = match &job.hint {
        Some((h, teacher)) => Some(HintTerm::new(
            h,
            teacher,
            &model,
            &job.input,
            &job.device,
            cfg.seed,
        )?),
        None => None,
    };
    let mut params = model.parameters();
    params.extend(hint.iter().flat_map(HintTerm::parameters));
    let mut optimizer = Optimizer::new(cfg.optim_config(), params)?;
    let mut history: Vec<EpochRecord> = Vec::new();
    checkpoints::open(
        &job,
        &model,
        &mut optimizer,
        hint.as_ref(),
        &mut history,
        obs,
    )?;

    let started = Instant::now();
    let _running = interrupt::Running::start();
    for epoch in history.len() + 1..=cfg.epochs {
        let record = train_epoch(&job, &model, hint.as_ref(), &mut optimizer, epoch, obs).await?;
        let is_best = history
            .iter()
            .all(|r| record.test_accuracy > r.test_accuracy);
        history.push(record.clone());
        checkpoints::save(&job, &model, &optimizer, hint.as_ref(), &history, is_best)?;
        obs.epoch_end(&record);
    }

    let (best_epoch, best_accuracy) = history.iter().fold((0, f64::MIN), |(be, ba), r| {
        if r.test_accuracy > ba {
            (r.epoch, r.test_accuracy)
        } else {
            (be, ba)
        }
    });
    let final_accuracy = history.last().map_or(0.0, |r| r.test_accuracy);
    Ok(Trained {
        model,
        history,
        best_epoch,
        best_accuracy,
        final_accuracy,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Cached logits need a fixed image order per index and one row per training image; images
/// without a label (a transfer set) need a teacher.
fn check_cached_logits(job: &TrainJob) -> Result<()> {
    if job.kd.is_none() && job.train.labels.contains(&ops::NO_LABEL) {
        return Err(Error::InvalidArgument(format!(
            "{}: images without a label can only be distilled on (they need a teacher)",
            job.run
        )));
    }
    let Some((_, TeacherLogits::Cached(logits))) = &job.kd else {
        return Ok(());
    };
    if job.config.augment.is_active() {
        return Err(Error::InvalidArgument(
            "cached teacher logits cannot be used with augmentation: use online KD".into(),
        ));
    }
    let classes = job.spec.num_classes;
    if logits.len() != job.train.len() * classes {
        return Err(Error::Shape(format!(
            "cached teacher logits hold {} values, expected {} images × {classes} classes",
            logits.len(),
            job.train.len()
        )));
    }
    Ok(())
}

/// The checkpoint folder of a job: resume from it, write to it after every epoch.
#[cfg(not(target_arch = "wasm32"))]
mod checkpoints {
    use super::*;
    use crate::checkpoint::StoreDtype;
    use crate::model_file::{model_metadata, save_model};
    use crate::train::resume;

    /// Restores `history` (and the weights and optimiser state) when the job resumes, and
    /// creates the folder.
    pub(super) fn open(
        job: &TrainJob,
        model: &Sequential,
        optimizer: &mut Optimizer,
        hint: Option<&HintTerm>,
        history: &mut Vec<EpochRecord>,
        obs: &mut dyn Observer,
    ) -> Result<()> {
        let Some(dir) = &job.checkpoint_dir else {
            return Ok(());
        };
        if job.resume && resume::has_state(dir) {
            *history = resume::restore(dir, job, model, optimizer, hint)?;
            obs.message(&format!(
                "{}: resumed after epoch {} from {}",
                job.run,
                history.len(),
                dir.display()
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
    }

    /// `last` (and `best` when this epoch is the best so far) and the resume state.
    pub(super) fn save(
        job: &TrainJob,
        model: &Sequential,
        optimizer: &Optimizer,
        hint: Option<&HintTerm>,
        history: &[EpochRecord],
        is_best: bool,
    ) -> Result<()> {
        let (Some(dir), Some(record)) = (&job.checkpoint_dir, history.last()) else {
            return Ok(());
        };
        let cfg = &job.config;
        let meta = model_metadata(&job.spec, &job.input, cfg.seed, Some(record));
        save_model(&dir.join("last.safetensors"), model, &meta, StoreDtype::F32)?;
        if is_best {
            save_model(&dir.join("best.safetensors"), model, &meta, StoreDtype::F32)?;
        }
        resume::save_state(dir, optimizer, history, cfg, hint)
    }
}

/// A page has no folders: its checkpoints are downloaded as bytes instead
/// ([`crate::model_file::encode_model`]).
#[cfg(target_arch = "wasm32")]
mod checkpoints {
    use super::*;

    pub(super) fn open(
        job: &TrainJob,
        _: &Sequential,
        _: &mut Optimizer,
        _: Option<&HintTerm>,
        _: &mut Vec<EpochRecord>,
        _: &mut dyn Observer,
    ) -> Result<()> {
        match &job.checkpoint_dir {
            None => Ok(()),
            Some(_) => Err(Error::InvalidArgument(
                "a checkpoint folder needs a file system, which a browser does not have".into(),
            )),
        }
    }

    pub(super) fn save(
        _: &TrainJob,
        _: &Sequential,
        _: &Optimizer,
        _: Option<&HintTerm>,
        _: &[EpochRecord],
        _: bool,
    ) -> Result<()> {
        Ok(())
    }
}

/// One epoch: every batch through forward, loss, backward and the optimiser, then the test
/// split. The batch order and augmentation are functions of (seed, epoch).
async fn train_epoch(
    job: &TrainJob<'_>,
    model: &Sequential,
    hint: Option<&HintTerm<'_>>,
    optimizer: &mut Optimizer,
    epoch: usize,
    obs: &mut dyn Observer,
) -> Result<EpochRecord> {
    let (cfg, input, device) = (&job.config, &job.input, &job.device);
    let epoch_start = Instant::now();
    let lr = cfg.schedule.lr_at(cfg.lr, epoch - 1);
    optimizer.set_lr(lr);
    let mut batch_cfg = input.batch_config(cfg.batch_size);
    batch_cfg.shuffle = true;
    batch_cfg.seed = cfg.seed;
    batch_cfg.augment = cfg.augment;
    let batches = batches_of(&job.train, input, &batch_cfg, epoch as u64)?;
    let total_batches = batches.num_batches();
    obs.epoch_start(&job.run, epoch, cfg.epochs, total_batches);

    let loss_sum = Tensor::zeros(&[], device)?; // a scalar, as the losses are
    let correct = Tensor::from_u32(&[0], &[1], device)?;
    let mut seen = 0usize;
    // Training accuracy counts the rows with a label (a transfer set's others have none).
    let mut labelled_seen = 0usize;
    for (b, batch) in batches.enumerate() {
        let rows = batch.len();
        let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
        let y = Tensor::from_u32(&batch.labels, &[rows], device)?;
        let (logits, hint_term) = match hint {
            Some(h) => h.forward(model, &x).map(|(l, t)| (l, Some(t)))?,
            None => (model.forward(&x)?, None),
        };
        let mut loss = loss_of(job, &batch, &x, &logits, &y)?;
        if let Some(term) = hint_term {
            loss = ops::add(&loss, &term)?;
        }
        optimizer.zero_grad();
        loss.backward()?;
        optimizer.step()?;
        ops::add_scaled_(&loss_sum, rows as f32, &loss)?;
        ops::accuracy_count(&logits.detach(), &y, &correct)?;
        seen += rows;
        labelled_seen += batch.labels.iter().filter(|&&l| l != ops::NO_LABEL).count();

        let done = b + 1;
        if interrupt::stop_requested() {
            return Err(stopped(job, epoch));
        }
        let mean_loss = if done % READ_EVERY == 0 || done == total_batches {
            let l = loss_sum.read().await?[0] as f64 / seen as f64;
            check_finite(job, l, epoch, done)?;
            crate::runtime::yield_now().await;
            Some(l)
        } else {
            device.backend().flush()?;
            None
        };
        let images_per_second = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
        obs.batch(done, mean_loss, images_per_second);
    }
    let train_seconds = epoch_start.elapsed().as_secs_f64();
    let eval = evaluate_async(
        model,
        device,
        &job.test,
        input,
        cfg.batch_size.max(256),
        false,
    )
    .await?;
    Ok(EpochRecord {
        run: job.run.clone(),
        epoch,
        lr,
        train_loss: loss_sum.read().await?[0] as f64 / seen.max(1) as f64,
        train_accuracy: correct.read_u32().await?[0] as f64 / labelled_seen.max(1) as f64,
        test_loss: eval.loss,
        test_accuracy: eval.accuracy,
        seconds: epoch_start.elapsed().as_secs_f64(),
        images_per_second: seen as f64 / train_seconds.max(1e-9),
    })
}

/// The batches of `split` for an epoch, shaped as `input` says.
pub(crate) fn batches_of(
    split: &Arc<Split>,
    input: &InputSpec,
    cfg: &BatchConfig,
    epoch: u64,
) -> Result<data::BatchIter> {
    data::try_batches(
        split.clone(),
        input.channels,
        input.height,
        input.width,
        cfg,
        epoch,
    )
}

/// The batch's loss: cross-entropy on the labels, or Hinton KD against the teacher's logits.
fn loss_of(
    job: &TrainJob,
    batch: &Batch,
    x: &Tensor,
    logits: &Tensor,
    y: &Tensor,
) -> Result<Tensor> {
    let Some((kd, teacher)) = &job.kd else {
        return ops::cross_entropy(logits, y);
    };
    let teacher_logits = match teacher {
        TeacherLogits::Cached(all) => {
            let classes = job.spec.num_classes;
            let mut rows = Vec::with_capacity(batch.len() * classes);
            for &i in &batch.indices {
                rows.extend_from_slice(&all[i * classes..(i + 1) * classes]);
            }
            Tensor::from_f32(&rows, &[batch.len(), classes], &job.device)?
        }
        TeacherLogits::Online(teacher) => no_grad(|| teacher.forward(x))?,
    };
    ops::kd_loss(logits, &teacher_logits, y, kd.temperature, kd.alpha)
}

/// The error of a training stopped on request in `epoch` (which is dropped).
fn stopped(job: &TrainJob, epoch: usize) -> Error {
    let kept = match &job.checkpoint_dir {
        Some(dir) if epoch > 1 => format!("epochs 1–{} are kept in {}", epoch - 1, dir.display()),
        Some(_) => "no epoch had finished".to_string(),
        None => "nothing is kept (no checkpoint folder)".to_string(),
    };
    Error::Interrupted(format!("{}: stopped during epoch {epoch}; {kept}", job.run))
}

/// A NaN or infinite running loss stops the run, saying what was kept.
fn check_finite(job: &TrainJob, loss: f64, epoch: usize, batch: usize) -> Result<()> {
    if loss.is_finite() {
        return Ok(());
    }
    let kept = job
        .checkpoint_dir
        .as_ref()
        .filter(|d| cfg!(not(target_arch = "wasm32")) && d.join("last.safetensors").exists())
        .map(|d| format!("; the last good checkpoint is kept in {}", d.display()))
        .unwrap_or_else(|| "; no checkpoint was written".into());
    Err(Error::Diverged(format!(
        "{}: the training loss became {loss} in epoch {epoch} by batch {batch}{kept}",
        job.run
    )))
}
