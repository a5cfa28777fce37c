//! The main job: teacher → baseline student → KD student → report, in one run directory.
//!
//! The teacher trains on the whole training split (or is loaded from a checkpoint). The two
//! students train on a seeded, class-stratified `label_fraction` of it with the same seed and
//! schedule; the only difference is the loss (labels alone vs. Hinton KD against the
//! teacher). Without augmentation the teacher's logits over the students' training images
//! are computed once and cached (offline KD). With `seeds > 1` each student run repeats with
//! seeds `seed, seed+1, …` and the report shows mean ± std.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::train::{
    self, EpochRecord, InputSpec, KdConfig, Observer, TeacherLogits, TrainConfig, TrainJob, Trained,
};
use crate::checkpoint::StoreDtype;
use crate::data::{self, BatchConfig, Dataset, LoadOptions, Split};
use crate::nn::{ArchSpec, Sequential};
use crate::{no_grad, Device, Error, Result, Tensor};

/// Everything `distill run` needs; saved as `config.json` in the run directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub data: PathBuf,
    pub teacher: TrainConfig,
    pub student: TrainConfig,
    pub kd: KdConfig,
    /// Fraction of the labelled training set the students see (the teacher sees it all).
    pub label_fraction: f64,
    /// Student runs repeat with seeds `student.seed + i` for `i < seeds`.
    pub seeds: usize,
    /// Use this teacher instead of training one.
    pub teacher_checkpoint: Option<PathBuf>,
    /// Limit the training / test splits (smoke tests); `None` uses all.
    pub max_train: Option<usize>,
    pub max_test: Option<usize>,
    /// Also write f16 copies of the checkpoints.
    pub half: bool,
}

impl Default for RunConfig {
    /// The defaults of `distill run`: teacher 5 epochs on the full set; students 30 epochs on
    /// 10% of it; Adam 1e-3, batch 128, T = 4, α = 0.9.
    fn default() -> Self {
        RunConfig {
            data: data::default_data_dir(),
            teacher: TrainConfig {
                epochs: 5,
                ..TrainConfig::default()
            },
            student: TrainConfig {
                epochs: 30,
                ..TrainConfig::default()
            },
            kd: KdConfig::default(),
            label_fraction: 0.1,
            seeds: 1,
            teacher_checkpoint: None,
            max_train: None,
            max_test: None,
            half: false,
        }
    }
}

impl RunConfig {
    /// `--quick`: a smoke-sized run (about a minute on two CPU cores).
    pub fn quick() -> Self {
        let d = RunConfig::default();
        RunConfig {
            teacher: TrainConfig {
                epochs: 1,
                ..d.teacher.clone()
            },
            student: TrainConfig {
                epochs: 3,
                ..d.student.clone()
            },
            max_train: Some(6000),
            max_test: Some(2000),
            label_fraction: 0.2,
            ..d
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.teacher.validate()?;
        self.student.validate()?;
        if !(self.label_fraction > 0.0 && self.label_fraction <= 1.0) {
            return Err(Error::Other(format!(
                "--label-fraction must be in (0, 1], got {}",
                self.label_fraction
            )));
        }
        if self.seeds == 0 {
            return Err(Error::Other("--seeds must be at least 1".into()));
        }
        if !(self.kd.temperature.is_finite() && self.kd.temperature > 0.0) {
            return Err(Error::Other(format!(
                "--temperature must be > 0, got {}",
                self.kd.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.kd.alpha) {
            return Err(Error::Other(format!(
                "--alpha must be in [0, 1], got {}",
                self.kd.alpha
            )));
        }
        Ok(())
    }
}

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
    fn of(run: &str, arch: &str, seed: u64, train_images: usize, t: &Trained) -> Self {
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

/// Size and speed of one architecture on the run's device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelStats {
    pub arch: String,
    pub parameters: usize,
    pub bytes_f32: usize,
    pub bytes_f16: usize,
    /// Mean wall time of one forward pass at batch 1.
    pub latency_ms_batch1: f64,
    /// Images per second of forward passes at batch 256.
    pub throughput_batch256: f64,
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
    pub test_images: usize,
    pub config: RunConfig,
    pub teacher: RunSummary,
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
    pub total_seconds: f64,
}

/// Mean and (sample) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Appends every epoch to `metrics.jsonl` and forwards to the caller's observer.
struct MetricsLog<'a> {
    file: std::fs::File,
    path: PathBuf,
    inner: &'a mut dyn Observer,
    error: Option<Error>,
}

impl Observer for MetricsLog<'_> {
    fn epoch_start(&mut self, run: &str, epoch: usize, epochs: usize, batches: usize) {
        self.inner.epoch_start(run, epoch, epochs, batches)
    }
    fn batch(&mut self, done: usize, loss: Option<f64>, ips: f64) {
        self.inner.batch(done, loss, ips)
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        let line = serde_json::to_string(record).unwrap_or_default();
        if let Err(e) = writeln!(self.file, "{line}").and_then(|_| self.file.flush()) {
            self.error.get_or_insert(Error::io(&self.path, e));
        }
        self.inner.epoch_end(record)
    }
    fn message(&mut self, text: &str) {
        self.inner.message(text)
    }
}

/// Loads the dataset named by `cfg.data`, applying `max_train` / `max_test`.
pub fn load_dataset(cfg: &RunConfig) -> Result<Dataset> {
    let mut ds = data::load(&cfg.data, &LoadOptions::default())?;
    if let Some(n) = cfg.max_train {
        ds.train = ds.train.take(n.min(ds.train.len()));
    }
    if let Some(n) = cfg.max_test {
        ds.test = ds.test.take(n.min(ds.test.len()));
    }
    Ok(ds)
}

/// Runs the whole job into `run_dir` (created; an existing one is resumed: finished runs are
/// restored from their checkpoints and unfinished ones continue where they stopped).
pub fn run(
    cfg: &RunConfig,
    device: &Device,
    run_dir: &Path,
    obs: &mut dyn Observer,
) -> Result<Report> {
    cfg.validate()?;
    let started = Instant::now();
    let config_path = run_dir.join("config.json");
    if config_path.exists() {
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let saved: RunConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Other(format!("{}: {e}", config_path.display())))?;
        let comparable = RunConfig {
            teacher: TrainConfig {
                epochs: cfg.teacher.epochs,
                ..saved.teacher.clone()
            },
            student: TrainConfig {
                epochs: cfg.student.epochs,
                ..saved.student.clone()
            },
            ..saved.clone()
        };
        if &comparable != cfg {
            return Err(Error::Other(format!("{} holds a run with other settings; use a new --out or the same settings (only epochs may change)", run_dir.display())));
        }
    }
    // Load the data first: a bad --data must not leave a run directory behind.
    let ds = load_dataset(cfg)?;
    std::fs::create_dir_all(run_dir).map_err(|e| Error::io(run_dir, e))?;
    crate::checkpoint::write_atomic(
        &config_path,
        serde_json::to_string_pretty(cfg)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    let input = InputSpec::of(&ds);
    let classes = ds.num_classes();
    let teacher_spec = ArchSpec::preset("teacher", ds.channels, ds.height, ds.width, classes)?;
    let student_spec = ArchSpec::preset("student", ds.channels, ds.height, ds.width, classes)?;
    let full_train = Arc::new(ds.train.clone());
    let test = Arc::new(ds.test.clone());
    let metrics_path = run_dir.join("metrics.jsonl");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| Error::io(&metrics_path, e))?;
    let mut log = MetricsLog {
        file,
        path: metrics_path,
        inner: obs,
        error: None,
    };

    // 1. The teacher: trained on everything, or loaded.
    let (teacher, teacher_summary) = match &cfg.teacher_checkpoint {
        Some(path) => {
            let loaded = train::load_model_for_data(path, device, &input)?;
            if loaded.spec.num_classes != classes
                || loaded.spec.in_channels != ds.channels
                || loaded.spec.height != ds.height
                || loaded.spec.width != ds.width
            {
                return Err(Error::Checkpoint(format!(
                    "{}: teacher expects {}x{}x{} inputs and {} classes, the data has {}x{}x{} and {classes}",
                    path.display(),
                    loaded.spec.in_channels,
                    loaded.spec.height,
                    loaded.spec.width,
                    loaded.spec.num_classes,
                    ds.channels,
                    ds.height,
                    ds.width
                )));
            }
            let eval = train::evaluate(&loaded.model, device, &test, &input, 256, false)?;
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
            (loaded.model, summary)
        }
        None => {
            let job = TrainJob {
                run: "teacher".into(),
                spec: teacher_spec.clone(),
                input: input.clone(),
                device: device.clone(),
                config: cfg.teacher.clone(),
                train: full_train.clone(),
                test: test.clone(),
                kd: None,
                checkpoint_dir: Some(run_dir.join("teacher")),
                resume: true,
            };
            let t = train::train(job, &mut log)?;
            let summary =
                RunSummary::of("teacher", "teacher", cfg.teacher.seed, full_train.len(), &t);
            (t.model, summary)
        }
    };

    // 2. The students' data: a seeded, stratified fraction of the labelled set.
    let student_train: Arc<Split> = if cfg.label_fraction < 1.0 {
        Arc::new(full_train.label_fraction(cfg.label_fraction, cfg.student.seed)?)
    } else {
        full_train.clone()
    };

    // 3. Offline KD: the teacher's logits over the students' images, once.
    let (teacher_logits, cache_seconds) = if cfg.student.augment.is_active() {
        (TeacherLogits::Online(&teacher), None)
    } else {
        let t0 = Instant::now();
        let logits = train::predict_logits(&teacher, device, &student_train, &input, 256)?;
        let secs = t0.elapsed().as_secs_f64();
        log.message(&format!(
            "teacher logits cached for {} images in {secs:.1}s (offline KD)",
            student_train.len()
        ));
        (TeacherLogits::Cached(Arc::new(logits)), Some(secs))
    };

    // 4. Baseline and KD students, seed by seed.
    let mut baseline = Vec::new();
    let mut kd = Vec::new();
    let mut kd_models: Vec<Sequential> = Vec::new();
    for i in 0..cfg.seeds {
        let seed = cfg.student.seed + i as u64;
        let suffix = if cfg.seeds > 1 {
            format!("-seed{seed}")
        } else {
            String::new()
        };
        for (run, kd_cfg) in [
            ("baseline", None),
            ("kd", Some((cfg.kd, teacher_logits.clone()))),
        ] {
            let name = format!("{run}{suffix}");
            let job = TrainJob {
                run: name.clone(),
                spec: student_spec.clone(),
                input: input.clone(),
                device: device.clone(),
                config: TrainConfig {
                    seed,
                    ..cfg.student.clone()
                },
                train: student_train.clone(),
                test: test.clone(),
                kd: kd_cfg,
                checkpoint_dir: Some(run_dir.join(&name)),
                resume: true,
            };
            let t = train::train(job, &mut log)?;
            let summary = RunSummary::of(&name, "student", seed, student_train.len(), &t);
            if run == "baseline" {
                baseline.push(summary);
            } else {
                kd.push(summary);
                kd_models.push(t.model);
            }
        }
    }
    if let Some(e) = log.error.take() {
        return Err(e);
    }
    if cfg.half {
        let runs = std::iter::once(("teacher".to_string(), &teacher_spec)).chain(
            baseline
                .iter()
                .chain(&kd)
                .map(|r| (r.run.clone(), &student_spec)),
        );
        for (dir, spec) in runs {
            let src = run_dir.join(&dir).join("best.safetensors");
            if src.exists() {
                let loaded =
                    train::load_model(&src, device, Some(spec.clone()), Some(input.clone()))?;
                let meta: Vec<(String, String)> = loaded.metadata.into_iter().collect();
                train::save_model(
                    &run_dir.join(&dir).join("best.f16.safetensors"),
                    &loaded.model,
                    &meta,
                    StoreDtype::F16,
                )?;
            }
        }
    }

    // 5. What it bought: accuracy, size, speed.
    log.message("evaluating the KD student and measuring inference latency and throughput…");
    let kd_eval = train::evaluate(&kd_models[0], device, &test, &input, 256, true)?;
    let sample = data::try_batches(
        test.clone(),
        input.channels,
        input.height,
        input.width,
        &BatchConfig::eval(256, input.mean.clone(), input.std.clone()),
        0,
    )?
    .next()
    .ok_or_else(|| Error::Data("the test split is empty".into()))?;
    let teacher_stats = model_stats(&teacher, &teacher_spec, device, &sample.images)?;
    let student_stats = model_stats(&kd_models[0], &student_spec, device, &sample.images)?;
    let gains = |f: fn(&RunSummary) -> f64| {
        mean_std(&kd.iter().map(f).collect::<Vec<_>>()).0
            - mean_std(&baseline.iter().map(f).collect::<Vec<_>>()).0
    };
    let student_epochs_run = (cfg.student.epochs * cfg.seeds) as f64;
    let report = Report {
        version: env!("CARGO_PKG_VERSION").into(),
        dataset: ds.name.clone(),
        device: device.name(),
        class_names: ds.class_names.clone(),
        teacher_train_images: full_train.len(),
        student_train_images: student_train.len(),
        test_images: test.len(),
        config: cfg.clone(),
        kd_gain_final: gains(|r| r.final_accuracy),
        kd_gain_best: gains(|r| r.best_accuracy),
        compression: teacher_stats.parameters as f64 / student_stats.parameters as f64,
        speedup_throughput: student_stats.throughput_batch256 / teacher_stats.throughput_batch256,
        speedup_latency: teacher_stats.latency_ms_batch1 / student_stats.latency_ms_batch1,
        teacher_cache_seconds: cache_seconds,
        // Online KD would run the teacher over the same images in every KD epoch.
        teacher_seconds_saved: cache_seconds.map(|s| s * (student_epochs_run - 1.0).max(0.0)),
        kd_confusion: kd_eval.confusion.unwrap_or_default(),
        teacher: teacher_summary,
        baseline,
        kd,
        teacher_stats,
        student_stats,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// Parameters, bytes, batch-1 latency and batch-256 throughput of a model on `device`.
/// `images` holds normalised test images (at least one): real data, so the activations and
/// the work they cause are those of inference, not of a synthetic input.
pub fn model_stats(
    model: &Sequential,
    spec: &ArchSpec,
    device: &Device,
    images: &[f32],
) -> Result<ModelStats> {
    let image_len = spec.in_channels * spec.height * spec.width;
    if images.len() < image_len || images.len() % image_len != 0 {
        return Err(Error::Shape(format!(
            "model_stats: {} values are not whole images of {image_len}",
            images.len()
        )));
    }
    let shape1 = [1, spec.in_channels, spec.height, spec.width];
    let shape256 = [256, spec.in_channels, spec.height, spec.width];
    let batch256: Vec<f32> = images
        .iter()
        .copied()
        .cycle()
        .take(256 * image_len)
        .collect();
    let x1 = Tensor::from_f32(&images[..image_len], &shape1, device)?;
    let x256 = Tensor::from_f32(&batch256, &shape256, device)?;
    let time = |x: &Tensor, min_iters: usize, budget: f64| -> Result<f64> {
        no_grad(|| {
            model.forward(x)?.to_vec()?; // warm-up: pipelines, pools, caches
            let t0 = Instant::now();
            let mut iters = 0;
            while iters < min_iters || t0.elapsed().as_secs_f64() < budget {
                model.forward(x)?.to_vec()?;
                iters += 1;
                if iters >= 10_000 {
                    break;
                }
            }
            Ok(t0.elapsed().as_secs_f64() / iters as f64)
        })
    };
    let latency = time(&x1, 5, 0.5)?;
    let per_batch = time(&x256, 2, 1.0)?;
    Ok(ModelStats {
        arch: spec.arch.clone(),
        parameters: spec.num_parameters(),
        bytes_f32: train::model_bytes(spec, StoreDtype::F32),
        bytes_f16: train::model_bytes(spec, StoreDtype::F16),
        latency_ms_batch1: latency * 1e3,
        throughput_batch256: 256.0 / per_batch,
    })
}
