//! The training loop shared by the teacher, the baseline student and the KD student:
//! epochs of batches → forward → loss (cross-entropy, or Hinton KD against a teacher) →
//! backward → optimiser, evaluation on the test split after every epoch, `best`/`last`
//! checkpoints, exact resume, and a stop with a clear message on a NaN or infinite loss.
//!
//! Metrics stay on the device while an epoch runs (loss sums and correct counts are
//! accumulated by kernels); the host reads them every [`READ_EVERY`] batches and at the end
//! of the epoch, so a GPU step is not stalled by read-backs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, NamedTensor, StoreDtype};
use crate::data::{self, Augment, BatchConfig, Split};
use crate::nn::{ArchSpec, Sequential};
use crate::ops;
use crate::optim::{LrSchedule, OptimConfig, Optimizer};
use crate::{no_grad, DType, Device, Error, Result, Tensor};

/// How often (in batches) the host reads the running loss for progress and NaN checks.
pub const READ_EVERY: usize = 10;

/// The optimiser family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adam,
    AdamW,
    Sgd,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "adam" => Ok(OptimizerKind::Adam),
            "adamw" => Ok(OptimizerKind::AdamW),
            "sgd" => Ok(OptimizerKind::Sgd),
            other => Err(format!(
                "unknown optimizer '{other}': expected adam, adamw or sgd"
            )),
        }
    }
}

/// Everything that defines a training run's schedule (the same for baseline and KD student).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub weight_decay: f32,
    /// SGD only.
    pub momentum: f32,
    pub schedule: LrSchedule,
    pub seed: u64,
    pub augment: Augment,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 128,
            optimizer: OptimizerKind::Adam,
            lr: 1e-3,
            weight_decay: 0.0,
            momentum: 0.9,
            schedule: LrSchedule::Constant,
            seed: 0,
            augment: Augment::default(),
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(Error::Other("epochs and batch size must be > 0".into()));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::Other(format!(
                "learning rate must be finite and > 0, got {}",
                self.lr
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::Other(format!(
                "weight decay must be >= 0, got {}",
                self.weight_decay
            )));
        }
        Ok(())
    }

    fn optim_config(&self) -> OptimConfig {
        match self.optimizer {
            OptimizerKind::Adam => OptimConfig::adam(self.lr, self.weight_decay),
            OptimizerKind::AdamW => OptimConfig::adamw(self.lr, self.weight_decay),
            OptimizerKind::Sgd => {
                OptimConfig::sgd(self.lr, self.momentum, self.weight_decay, false)
            }
        }
    }
}

/// Hinton KD hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct KdConfig {
    pub temperature: f32,
    pub alpha: f32,
}

impl Default for KdConfig {
    fn default() -> Self {
        KdConfig {
            temperature: 4.0,
            alpha: 0.9,
        }
    }
}

/// Where a KD student's teacher logits come from.
#[derive(Clone)]
pub enum TeacherLogits<'a> {
    /// Offline KD: logits of every image of the training split, `[n, classes]` row-major,
    /// computed once (only valid without augmentation).
    Cached(Arc<Vec<f32>>),
    /// Online KD: the teacher runs forward (no tape) on every augmented batch.
    Online(&'a Sequential),
}

/// What the model sees: shape, normalisation and class names (stored in checkpoints so
/// inference normalises exactly as training did).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub class_names: Vec<String>,
}

impl InputSpec {
    pub fn of(ds: &data::Dataset) -> InputSpec {
        InputSpec {
            channels: ds.channels,
            height: ds.height,
            width: ds.width,
            mean: ds.mean.clone(),
            std: ds.std.clone(),
            class_names: ds.class_names.clone(),
        }
    }
    fn batch_config(&self, batch_size: usize) -> BatchConfig {
        BatchConfig::eval(batch_size, self.mean.clone(), self.std.clone())
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub run: String,
    /// 1-based.
    pub epoch: usize,
    pub lr: f32,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_accuracy: f64,
    pub seconds: f64,
    pub images_per_second: f64,
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
pub fn train(job: TrainJob, obs: &mut dyn Observer) -> Result<Trained> {
    job.config.validate()?;
    let cfg = &job.config;
    let input = &job.input;
    let model = job.spec.build(&job.device, cfg.seed)?;
    let params = model.parameters();
    let mut optimizer = Optimizer::new(cfg.optim_config(), params.clone())?;
    let mut history: Vec<EpochRecord> = Vec::new();

    if let (true, Some(dir)) = (job.resume, &job.checkpoint_dir) {
        if dir.join("last.state.safetensors").exists() {
            history = restore(dir, &job, &model, &mut optimizer)?;
            obs.message(&format!(
                "{}: resumed after epoch {} from {}",
                job.run,
                history.len(),
                dir.display()
            ));
        }
    }
    if let Some(dir) = &job.checkpoint_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }

    let classes = job.spec.num_classes;
    let mut batch_cfg = BatchConfig::eval(cfg.batch_size, input.mean.clone(), input.std.clone());
    batch_cfg.shuffle = true;
    batch_cfg.seed = cfg.seed;
    batch_cfg.augment = cfg.augment;
    if let Some((_, TeacherLogits::Cached(logits))) = &job.kd {
        if cfg.augment.is_active() {
            return Err(Error::Other(
                "cached teacher logits cannot be used with augmentation: use online KD".into(),
            ));
        }
        if logits.len() != job.train.len() * classes {
            return Err(Error::Shape(format!(
                "cached teacher logits hold {} values, expected {} images × {classes} classes",
                logits.len(),
                job.train.len()
            )));
        }
    }

    let started = Instant::now();
    let device = &job.device;
    let be = device.backend();
    for epoch in history.len() + 1..=cfg.epochs {
        let epoch_start = Instant::now();
        let lr = cfg.schedule.lr_at(cfg.lr, epoch - 1);
        optimizer.set_lr(lr);
        let batches = data::try_batches(
            job.train.clone(),
            input.channels,
            input.height,
            input.width,
            &batch_cfg,
            epoch as u64,
        )?;
        let total_batches = batches.num_batches();
        obs.epoch_start(&job.run, epoch, cfg.epochs, total_batches);

        let loss_sum = Tensor::zeros(&[1], device)?;
        let correct = Tensor::from_u32(&[0], &[1], device)?;
        let mut seen = 0usize;
        for (b, batch) in batches.enumerate() {
            let rows = batch.len();
            let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
            let y = Tensor::from_u32(&batch.labels, &[rows], device)?;
            let logits = model.forward(&x)?;
            let loss = match &job.kd {
                None => ops::cross_entropy(&logits, &y)?,
                Some((kd, teacher)) => {
                    let t = match teacher {
                        TeacherLogits::Cached(all) => {
                            let mut rows_data = Vec::with_capacity(rows * classes);
                            for &i in &batch.indices {
                                rows_data.extend_from_slice(&all[i * classes..(i + 1) * classes]);
                            }
                            Tensor::from_f32(&rows_data, &[rows, classes], device)?
                        }
                        TeacherLogits::Online(teacher) => no_grad(|| teacher.forward(&x))?,
                    };
                    ops::kd_loss(&logits, &t, &y, kd.temperature, kd.alpha)?
                }
            };
            optimizer.zero_grad();
            loss.backward()?;
            optimizer.step()?;
            be.axpy(rows as f32, loss.storage(), loss_sum.storage())?;
            ops::accuracy_count(&logits.detach(), &y, &correct)?;
            seen += rows;

            let done = b + 1;
            let read = done % READ_EVERY == 0 || done == total_batches;
            let mean_loss = if read {
                let l = loss_sum.to_vec()?[0] as f64 / seen as f64;
                if !l.is_finite() {
                    let kept = job
                        .checkpoint_dir
                        .as_ref()
                        .filter(|d| d.join("last.safetensors").exists())
                        .map(|d| format!("; the last good checkpoint is kept in {}", d.display()))
                        .unwrap_or_else(|| "; no checkpoint was written".into());
                    return Err(Error::Diverged(format!(
                        "{}: the training loss became {l} in epoch {epoch} by batch {done} (try a lower --lr){kept}",
                        job.run
                    )));
                }
                Some(l)
            } else {
                be.flush()?;
                None
            };
            obs.batch(
                done,
                mean_loss,
                seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9),
            );
        }
        let train_loss = loss_sum.to_vec()?[0] as f64 / seen.max(1) as f64;
        let train_accuracy = correct.to_vec_u32()?[0] as f64 / seen.max(1) as f64;
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let eval = evaluate(
            &model,
            device,
            &job.test,
            input,
            cfg.batch_size.max(256),
            false,
        )?;
        let record = EpochRecord {
            run: job.run.clone(),
            epoch,
            lr,
            train_loss,
            train_accuracy,
            test_loss: eval.loss,
            test_accuracy: eval.accuracy,
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds.max(1e-9),
        };
        let is_best = history
            .iter()
            .all(|r| record.test_accuracy > r.test_accuracy);
        history.push(record.clone());
        if let Some(dir) = &job.checkpoint_dir {
            let meta = model_metadata(&job.spec, input, cfg.seed, Some(&record));
            save_model(
                &dir.join("last.safetensors"),
                &model,
                &meta,
                StoreDtype::F32,
            )?;
            if is_best {
                save_model(
                    &dir.join("best.safetensors"),
                    &model,
                    &meta,
                    StoreDtype::F32,
                )?;
            }
            save_state(dir, &optimizer, &history, cfg)?;
        }
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

/// Test-set metrics.
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// `confusion[true][predicted]`, when asked for.
    pub confusion: Option<Vec<Vec<u64>>>,
}

/// Mean cross-entropy and accuracy of `model` on `split` (no tape, in order, no augmentation).
pub fn evaluate(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    batch_size: usize,
    confusion: bool,
) -> Result<Evaluation> {
    no_grad(|| {
        let classes = input.class_names.len();
        let be = device.backend();
        let loss_sum = Tensor::zeros(&[1], device)?;
        let correct = Tensor::from_u32(&[0], &[1], device)?;
        let mut matrix = confusion.then(|| vec![vec![0u64; classes]; classes]);
        let mut n = 0usize;
        for batch in data::try_batches(
            split.clone(),
            input.channels,
            input.height,
            input.width,
            &input.batch_config(batch_size),
            0,
        )? {
            let rows = batch.len();
            let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
            let y = Tensor::from_u32(&batch.labels, &[rows], device)?;
            let logits = model.forward(&x)?;
            if logits.shape() != [rows, classes] {
                return Err(Error::Shape(format!(
                    "model outputs {:?} but the data has {classes} classes",
                    logits.shape()
                )));
            }
            let loss = ops::cross_entropy(&logits, &y)?;
            be.axpy(rows as f32, loss.storage(), loss_sum.storage())?;
            ops::accuracy_count(&logits, &y, &correct)?;
            if let Some(m) = matrix.as_mut() {
                let l = logits.to_vec()?;
                for (r, &label) in batch.labels.iter().enumerate() {
                    m[label as usize][argmax(&l[r * classes..(r + 1) * classes])] += 1;
                }
            }
            n += rows;
        }
        if n == 0 {
            return Err(Error::Data("evaluation split is empty".into()));
        }
        Ok(Evaluation {
            loss: loss_sum.to_vec()?[0] as f64 / n as f64,
            accuracy: correct.to_vec_u32()?[0] as f64 / n as f64,
            confusion: matrix,
        })
    })
}

/// The model's logits for every image of `split`, `[n, classes]` row-major (offline KD).
pub fn predict_logits(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    batch_size: usize,
) -> Result<Vec<f32>> {
    no_grad(|| {
        let mut out = Vec::with_capacity(split.len() * input.class_names.len());
        for batch in data::try_batches(
            split.clone(),
            input.channels,
            input.height,
            input.width,
            &input.batch_config(batch_size),
            0,
        )? {
            let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
            out.extend(model.forward(&x)?.to_vec()?);
        }
        Ok(out)
    })
}

/// Index of the first maximum.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

// --- checkpoints -------------------------------------------------------------------------------

/// Metadata every model checkpoint carries (all values are strings, as safetensors wants).
pub fn model_metadata(
    spec: &ArchSpec,
    input: &InputSpec,
    seed: u64,
    record: Option<&EpochRecord>,
) -> Vec<(String, String)> {
    let mut m = vec![
        ("format".to_string(), "distill".to_string()),
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ("arch".into(), spec.arch.clone()),
        ("in_channels".into(), spec.in_channels.to_string()),
        ("height".into(), spec.height.to_string()),
        ("width".into(), spec.width.to_string()),
        ("num_classes".into(), spec.num_classes.to_string()),
        (
            "arch_spec".into(),
            serde_json::to_string(spec).unwrap_or_default(),
        ),
        (
            "input".into(),
            serde_json::to_string(input).unwrap_or_default(),
        ),
        (
            "class_names".into(),
            serde_json::to_string(&input.class_names).unwrap_or_default(),
        ),
        (
            "mean".into(),
            serde_json::to_string(&input.mean).unwrap_or_default(),
        ),
        (
            "std".into(),
            serde_json::to_string(&input.std).unwrap_or_default(),
        ),
        ("seed".into(), seed.to_string()),
    ];
    if let Some(r) = record {
        m.push(("epoch".into(), r.epoch.to_string()));
        m.push((
            "metrics".into(),
            serde_json::to_string(r).unwrap_or_default(),
        ));
    }
    m
}

/// Writes the model's parameters (PyTorch names and layouts) atomically.
pub fn save_model(
    path: &Path,
    model: &Sequential,
    metadata: &[(String, String)],
    dtype: StoreDtype,
) -> Result<()> {
    let tensors = model
        .parameters()
        .into_iter()
        .map(|(name, t)| {
            Ok(NamedTensor {
                name,
                shape: t.shape().to_vec(),
                data: t.to_vec()?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    checkpoint::save(path, &tensors, &metadata.iter().cloned().collect(), dtype)
}

/// A model read back from a checkpoint.
pub struct LoadedModel {
    pub spec: ArchSpec,
    pub input: InputSpec,
    pub model: Sequential,
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// Loads a checkpoint written by [`save_model`] (or a PyTorch state_dict of the seed's
/// modules saved with safetensors plus our metadata keys, or given `spec`/`input` explicitly).
pub fn load_model(
    path: &Path,
    device: &Device,
    spec: Option<ArchSpec>,
    input: Option<InputSpec>,
) -> Result<LoadedModel> {
    model_from_checkpoint(checkpoint::load(path)?, path, device, spec, input)
}

/// Loads a model to use on `data`, typically a teacher: a distill checkpoint as it is; a bare
/// PyTorch `state_dict` of the seed's modules (saved with `safetensors.torch.save_file`, no
/// metadata) with its architecture read off the tensor shapes and the data's input size,
/// normalisation and class names.
pub fn load_model_for_data(path: &Path, device: &Device, data: &InputSpec) -> Result<LoadedModel> {
    let ckpt = checkpoint::load(path)?;
    if ckpt.metadata.contains_key("arch_spec") || ckpt.metadata.contains_key("arch") {
        return model_from_checkpoint(ckpt, path, device, None, None);
    }
    let spec = infer_spec(&ckpt, data, path)?;
    model_from_checkpoint(ckpt, path, device, Some(spec), Some(data.clone()))
}

/// The seed architecture whose parameters have these shapes, for inputs shaped like `data`.
fn infer_spec(ckpt: &checkpoint::Checkpoint, data: &InputSpec, path: &Path) -> Result<ArchSpec> {
    let shape = |name: &str, rank: usize| -> Result<Vec<usize>> {
        match ckpt.get(name) {
            Some(t) if t.shape.len() == rank => Ok(t.shape.clone()),
            Some(t) => Err(Error::Checkpoint(format!("{}: {name} has shape {:?}, expected rank {rank}", path.display(), t.shape))),
            None => Err(Error::Checkpoint(format!(
                "{}: no '{name}': not a checkpoint of the seed's modules (conv1, conv2, fc1, fc2) and no distill metadata",
                path.display()
            ))),
        }
    };
    let (conv1, conv2, fc1, fc2) = (
        shape("conv1.weight", 4)?,
        shape("conv2.weight", 4)?,
        shape("fc1.weight", 2)?,
        shape("fc2.weight", 2)?,
    );
    if conv1[1] != data.channels || fc2[0] != data.class_names.len() {
        return Err(Error::Checkpoint(format!(
            "{}: the model takes {} input channels and predicts {} classes; the data has {} and {}",
            path.display(),
            conv1[1],
            fc2[0],
            data.channels,
            data.class_names.len()
        )));
    }
    let arch = match (conv1[0], conv2[0], fc1[0]) {
        (64, 128, 1000) => "teacher",
        (32, 64, 500) => "student",
        _ => "custom",
    };
    let spec = ArchSpec {
        arch: arch.into(),
        in_channels: conv1[1],
        height: data.height,
        width: data.width,
        num_classes: fc2[0],
        conv_channels: [conv1[0], conv2[0]],
        hidden: fc1[0],
    };
    spec.validate()?;
    Ok(spec)
}

fn model_from_checkpoint(
    ckpt: checkpoint::Checkpoint,
    path: &Path,
    device: &Device,
    spec: Option<ArchSpec>,
    input: Option<InputSpec>,
) -> Result<LoadedModel> {
    let meta = &ckpt.metadata;
    let spec = match spec {
        Some(s) => s,
        None => match meta.get("arch_spec") {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                Error::Checkpoint(format!("{}: bad arch_spec metadata: {e}", path.display()))
            })?,
            None => {
                let get = |k: &str| -> Result<usize> {
                    meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
                        Error::Checkpoint(format!(
                            "{}: metadata lacks '{k}' (needed to rebuild the architecture)",
                            path.display()
                        ))
                    })
                };
                let arch = meta.get("arch").ok_or_else(|| {
                    Error::Checkpoint(format!(
                        "{}: metadata lacks 'arch' (teacher or student)",
                        path.display()
                    ))
                })?;
                ArchSpec::preset(
                    arch,
                    get("in_channels")?,
                    get("height")?,
                    get("width")?,
                    get("num_classes")?,
                )?
            }
        },
    };
    let input = match input {
        Some(i) => i,
        None => match meta.get("input") {
            Some(json) => serde_json::from_str(json).map_err(|e| {
                Error::Checkpoint(format!("{}: bad input metadata: {e}", path.display()))
            })?,
            None => InputSpec {
                channels: spec.in_channels,
                height: spec.height,
                width: spec.width,
                mean: vec![0.0; spec.in_channels],
                std: vec![1.0; spec.in_channels],
                class_names: (0..spec.num_classes).map(|i| i.to_string()).collect(),
            },
        },
    };
    checkpoint::check_matches(&spec.parameter_shapes(), &ckpt, path)?;
    let model = spec.build(device, 0)?;
    for (name, p) in model.parameters() {
        let t = ckpt
            .get(&name)
            .ok_or_else(|| Error::Checkpoint(format!("{}: missing {name}", path.display())))?;
        p.assign(&t.data)?;
    }
    Ok(LoadedModel {
        spec,
        input,
        model,
        metadata: ckpt.metadata,
    })
}

fn save_state(
    dir: &Path,
    optimizer: &Optimizer,
    history: &[EpochRecord],
    cfg: &TrainConfig,
) -> Result<()> {
    let (tensors, steps) = optimizer.export_state()?;
    let meta = [
        (
            "history".to_string(),
            serde_json::to_string(history).unwrap_or_default(),
        ),
        (
            "optimizer_steps".into(),
            serde_json::to_string(&steps).unwrap_or_default(),
        ),
        (
            "config".into(),
            serde_json::to_string(cfg).unwrap_or_default(),
        ),
    ];
    checkpoint::save(
        &dir.join("last.state.safetensors"),
        &tensors,
        &meta.into_iter().collect(),
        StoreDtype::F32,
    )
}

/// Restores weights, optimiser state and history from `dir/last.*`; the data order and
/// augmentation are functions of (seed, epoch), so nothing else is needed to continue exactly.
fn restore(
    dir: &Path,
    job: &TrainJob,
    model: &Sequential,
    optimizer: &mut Optimizer,
) -> Result<Vec<EpochRecord>> {
    let state_path = dir.join("last.state.safetensors");
    let state = checkpoint::load(&state_path)?;
    let bad = |what: &str| Error::Checkpoint(format!("{}: {what}", state_path.display()));
    let saved_cfg: TrainConfig = serde_json::from_str(
        state
            .metadata
            .get("config")
            .ok_or_else(|| bad("no config"))?,
    )
    .map_err(|e| bad(&format!("bad config: {e}")))?;
    let same_schedule = TrainConfig {
        epochs: job.config.epochs,
        ..saved_cfg.clone()
    };
    if same_schedule != job.config {
        return Err(Error::Checkpoint(format!(
            "{}: cannot resume: the run was started with different settings ({saved_cfg:?}); only --epochs may change",
            state_path.display()
        )));
    }
    let history: Vec<EpochRecord> = serde_json::from_str(
        state
            .metadata
            .get("history")
            .ok_or_else(|| bad("no history"))?,
    )
    .map_err(|e| bad(&format!("bad history: {e}")))?;
    let steps: Vec<u32> = serde_json::from_str(
        state
            .metadata
            .get("optimizer_steps")
            .ok_or_else(|| bad("no optimizer steps"))?,
    )
    .map_err(|e| bad(&format!("bad optimizer steps: {e}")))?;
    let weights_path = dir.join("last.safetensors");
    let weights = checkpoint::load(&weights_path)?;
    checkpoint::check_matches(&job.spec.parameter_shapes(), &weights, &weights_path)?;
    for (name, p) in model.parameters() {
        p.assign(
            &weights
                .get(&name)
                .ok_or_else(|| bad(&format!("missing {name}")))?
                .data,
        )?;
    }
    optimizer.import_state(&state.tensors, &steps)?;
    Ok(history)
}

/// Size of a model's parameters in bytes for a storage dtype.
pub fn model_bytes(spec: &ArchSpec, dtype: StoreDtype) -> usize {
    spec.num_parameters() * if dtype == StoreDtype::F16 { 2 } else { 4 }
}

/// Whether a tensor's values are all finite (for checks on loaded weights).
pub fn all_finite(t: &Tensor) -> Result<bool> {
    Ok(t.dtype() != DType::F32 || t.to_vec()?.iter().all(|v| v.is_finite()))
}
