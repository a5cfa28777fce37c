//! The subcommands: run, train, distill, eval, predict.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use distill::checkpoint::StoreDtype;
use distill::data::{Augment, Dataset, Split};
use distill::distill::pipeline::{self, RunConfig};
use distill::distill::train::{self, Evaluation, LoadedModel};
use distill::distill::{
    report, EpochRecord, InputSpec, KdConfig, TeacherLogits, TrainConfig, TrainJob, Trained,
};
use distill::nn::ArchSpec;
use distill::optim::LrSchedule;
use distill::Device;

use super::args::{
    DataOpts, DistillArgs, EvalArgs, HyperOpts, KdOpts, PredictArgs, RunArgs, ScheduleKind,
    TrainArgs,
};
use super::progress::{Mode, Progress};
use super::{default_run_dir, Ctx};

// --- settings ------------------------------------------------------------------------------

/// `cfg` with the flags of `h` applied (`epochs` chosen by the caller: `run` has two).
fn apply_hyper(mut cfg: TrainConfig, h: &HyperOpts, epochs: Option<usize>) -> Result<TrainConfig> {
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    if let Some(v) = h.batch_size {
        cfg.batch_size = v;
    }
    if let Some(v) = h.lr {
        cfg.lr = v;
    }
    if let Some(v) = h.optimizer {
        cfg.optimizer = v;
    }
    if let Some(v) = h.momentum {
        cfg.momentum = v;
    }
    if let Some(v) = h.weight_decay {
        cfg.weight_decay = v;
    }
    if let Some(v) = h.seed {
        cfg.seed = v;
    }
    if h.augment {
        cfg.augment = Augment {
            crop_padding: 2,
            hflip: true,
        };
    }
    cfg.schedule = match (h.schedule, cfg.schedule) {
        (Some(ScheduleKind::Constant), _) => LrSchedule::Constant,
        (Some(ScheduleKind::Step), LrSchedule::Step { step_size, gamma }) => LrSchedule::Step {
            step_size: h.step_size.unwrap_or(step_size),
            gamma: h.gamma.unwrap_or(gamma),
        },
        (Some(ScheduleKind::Step), _) => LrSchedule::Step {
            step_size: h.step_size.unwrap_or(10),
            gamma: h.gamma.unwrap_or(0.1),
        },
        (Some(ScheduleKind::Cosine), _) => LrSchedule::Cosine {
            t_max: cfg.epochs,
            eta_min: 0.0,
        },
        (None, LrSchedule::Step { step_size, gamma }) => LrSchedule::Step {
            step_size: h.step_size.unwrap_or(step_size),
            gamma: h.gamma.unwrap_or(gamma),
        },
        (None, s) => s,
    };
    if !matches!(cfg.schedule, LrSchedule::Step { .. })
        && (h.step_size.is_some() || h.gamma.is_some())
    {
        bail!("--step-size and --gamma belong to --schedule step");
    }
    if let LrSchedule::Cosine { t_max, .. } = &mut cfg.schedule {
        *t_max = cfg.epochs; // the cosine spans the run
    }
    validate_train(&cfg)?;
    Ok(cfg)
}

fn validate_train(cfg: &TrainConfig) -> Result<()> {
    if cfg.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if cfg.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    if !(cfg.lr.is_finite() && cfg.lr > 0.0) {
        bail!("--lr must be a finite number > 0, got {}", cfg.lr);
    }
    if !(cfg.momentum.is_finite() && (0.0..1.0).contains(&cfg.momentum)) {
        bail!("--momentum must be in [0, 1), got {}", cfg.momentum);
    }
    if let LrSchedule::Step { step_size, gamma } = cfg.schedule {
        if step_size == 0 {
            bail!("--step-size must be at least 1");
        }
        if !(gamma.is_finite() && gamma > 0.0) {
            bail!("--gamma must be > 0, got {gamma}");
        }
    }
    cfg.validate()?;
    Ok(())
}

fn apply_kd(mut kd: KdConfig, o: &KdOpts) -> Result<KdConfig> {
    if let Some(t) = o.temperature {
        kd.temperature = t;
    }
    if let Some(a) = o.alpha {
        kd.alpha = a;
    }
    if !(kd.temperature.is_finite() && kd.temperature > 0.0) {
        bail!("--temperature must be > 0, got {}", kd.temperature);
    }
    if !(0.0..=1.0).contains(&kd.alpha) {
        bail!("--alpha must be in [0, 1], got {}", kd.alpha);
    }
    Ok(kd)
}

fn check_fraction(f: f64) -> Result<()> {
    if !(f > 0.0 && f <= 1.0) {
        bail!("--label-fraction must be in (0, 1], got {f}");
    }
    Ok(())
}

fn check_slices(d: &DataOpts) -> Result<()> {
    if d.max_train == Some(0) {
        bail!("--max-train must be at least 1");
    }
    if d.max_test == Some(0) {
        bail!("--max-test must be at least 1");
    }
    Ok(())
}

fn check_arch(arch: &str) -> Result<()> {
    if !matches!(arch, "teacher" | "student") {
        bail!("unknown architecture '{arch}': expected teacher or student");
    }
    Ok(())
}

/// The dataset at `data` (default: the shipped Fashion-MNIST) with the slices applied.
fn load_data(d: &DataOpts) -> Result<Dataset> {
    let cfg = RunConfig {
        data: d
            .data
            .clone()
            .unwrap_or_else(distill::data::default_data_dir),
        max_train: d.max_train,
        max_test: d.max_test,
        ..RunConfig::default()
    };
    pipeline::load_dataset(&cfg)
        .with_context(|| format!("cannot load the dataset at {}", cfg.data.display()))
}

/// Every leaf where two JSON values differ, as `path: a → b`.
fn differences(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                differences(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} in the run, {b} now")),
        _ => {}
    }
}

// --- run -----------------------------------------------------------------------------------

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let dir = match (&a.resume, &a.out) {
        (Some(r), Some(o)) if r != o => {
            bail!(
                "--resume {} and --out {} name different directories",
                r.display(),
                o.display()
            )
        }
        (Some(r), _) => {
            if !r.join("config.json").is_file() {
                bail!(
                    "cannot resume {}: it holds no config.json (start a new run with --out {})",
                    r.display(),
                    r.display()
                );
            }
            r.clone()
        }
        (None, Some(o)) => o.clone(),
        (None, None) => default_run_dir(""),
    };
    let config_path = dir.join("config.json");
    let resuming = config_path.is_file();
    let saved: Option<RunConfig> = if resuming {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("cannot read {}", config_path.display()))?;
        Some(serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a distill run configuration",
                config_path.display()
            )
        })?)
    } else {
        None
    };
    let base = match &saved {
        Some(s) => {
            if a.quick {
                ctx.note("--quick ignored: a resumed run keeps its saved settings");
            }
            s.clone()
        }
        None if a.quick => RunConfig::quick(),
        None => RunConfig::default(),
    };

    check_slices(&a.data)?;
    let mut cfg = base.clone();
    if let Some(d) = &a.data.data {
        cfg.data = d.clone();
    }
    if a.data.max_train.is_some() {
        cfg.max_train = a.data.max_train;
    }
    if a.data.max_test.is_some() {
        cfg.max_test = a.data.max_test;
    }
    cfg.teacher = apply_hyper(cfg.teacher, &a.hyper, a.teacher_epochs)?;
    cfg.student = apply_hyper(cfg.student, &a.hyper, a.hyper.epochs)?;
    cfg.kd = apply_kd(cfg.kd, &a.kd)?;
    if let Some(f) = a.label_fraction {
        check_fraction(f)?;
        cfg.label_fraction = f;
    }
    if let Some(n) = a.seeds {
        if n == 0 {
            bail!("--seeds must be at least 1");
        }
        cfg.seeds = n;
    }
    if let Some(t) = &a.teacher {
        if !t.is_file() {
            bail!("--teacher {}: no such file", t.display());
        }
        cfg.teacher_checkpoint = Some(t.clone());
    }
    cfg.half |= a.half;

    if let Some(saved) = &saved {
        let strip = |c: &RunConfig| {
            let mut c = c.clone();
            for t in [&mut c.teacher, &mut c.student] {
                t.epochs = 0;
                if let LrSchedule::Cosine { t_max, .. } = &mut t.schedule {
                    *t_max = 0;
                }
            }
            serde_json::to_value(c).unwrap_or_default()
        };
        let mut diff = Vec::new();
        differences("", &strip(saved), &strip(&cfg), &mut diff);
        if !diff.is_empty() {
            bail!(
                "cannot resume {} with other settings (only --epochs and --teacher-epochs may change):\n  {}",
                dir.display(),
                diff.join("\n  ")
            );
        }
        for (who, old, new) in [
            ("teacher", &saved.teacher, &cfg.teacher),
            ("student", &saved.student, &cfg.student),
        ] {
            if old.epochs != new.epochs && matches!(new.schedule, LrSchedule::Cosine { .. }) {
                bail!(
                    "cannot change the {who} epochs of {} from {} to {}: its cosine schedule spans the \
                     epochs it was started with; start a new run instead",
                    dir.display(),
                    old.epochs,
                    new.epochs
                );
            }
        }
    }
    cfg.validate()?;
    if !cfg.data.exists() {
        bail!(
            "the dataset folder {} does not exist (see --data)",
            cfg.data.display()
        );
    }

    let dev = ctx.open_device()?;
    let mut progress = Progress::new(ctx.mode);
    if resuming {
        progress.line(&format!(
            "resuming the run in {} (device {})",
            dir.display(),
            dev.device.name()
        ));
    } else {
        progress.line(&format!(
            "run directory: {} (device {})",
            dir.display(),
            dev.device.name()
        ));
    }
    let report = pipeline::run(&cfg, &dev.device, &dir, &mut progress).map_err(|e| {
        anyhow::Error::new(e).context(format!(
            "the run in {} stopped (finished epochs are kept; `distill run --resume {}` continues)",
            dir.display(),
            dir.display()
        ))
    })?;
    let spinner = progress.spinner("writing the report");
    report::write_report(&report, &dir)
        .with_context(|| format!("cannot write the report into {}", dir.display()))?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    progress.finish();
    if ctx.global.json {
        ctx.print_json(&report)?;
    } else {
        for line in report::summary_lines(&report) {
            println!("{line}");
        }
        println!("report    {}", dir.join("report.md").display());
    }
    dev.print_profile()
}

// --- train / distill -----------------------------------------------------------------------

/// What `train` and `distill` print with `--json`.
#[derive(Serialize)]
struct TrainOutput<'a> {
    run: &'a str,
    arch: &'a str,
    device: String,
    dataset: &'a str,
    checkpoint_dir: &'a Path,
    train_images: usize,
    test_images: usize,
    final_accuracy: f64,
    best_accuracy: f64,
    best_epoch: usize,
    seconds: f64,
    config: &'a TrainConfig,
    kd: Option<KdConfig>,
    offline_kd: Option<bool>,
    history: &'a [EpochRecord],
}

struct Finished<'a> {
    run: &'a str,
    arch: &'a str,
    device: &'a Device,
    ds: &'a Dataset,
    out: &'a Path,
    train_images: usize,
    config: &'a TrainConfig,
    kd: Option<KdConfig>,
    offline_kd: Option<bool>,
    half: bool,
    spec: &'a ArchSpec,
    input: &'a InputSpec,
}

impl Finished<'_> {
    fn report(&self, ctx: &Ctx, t: &Trained) -> Result<()> {
        if self.half {
            let best = self.out.join("best.safetensors");
            let loaded = train::load_model(
                &best,
                self.device,
                Some(self.spec.clone()),
                Some(self.input.clone()),
            )?;
            let meta: Vec<(String, String)> = loaded.metadata.into_iter().collect();
            train::save_model(
                &self.out.join("best.f16.safetensors"),
                &loaded.model,
                &meta,
                StoreDtype::F16,
            )?;
        }
        if ctx.global.json {
            return ctx.print_json(&TrainOutput {
                run: self.run,
                arch: self.arch,
                device: self.device.name(),
                dataset: &self.ds.name,
                checkpoint_dir: self.out,
                train_images: self.train_images,
                test_images: self.ds.test.len(),
                final_accuracy: t.final_accuracy,
                best_accuracy: t.best_accuracy,
                best_epoch: t.best_epoch,
                seconds: t.seconds,
                config: self.config,
                kd: self.kd,
                offline_kd: self.offline_kd,
                history: &t.history,
            });
        }
        let per_epoch =
            t.history.iter().map(|r| r.seconds).sum::<f64>() / t.history.len().max(1) as f64;
        println!(
            "{} ({}): test accuracy {:.2}% after {} epochs (best {:.2}% at epoch {}), {:.1}s per epoch, {} training images",
            self.run,
            self.arch,
            100.0 * t.final_accuracy,
            t.history.len(),
            100.0 * t.best_accuracy,
            t.best_epoch,
            per_epoch,
            self.train_images
        );
        println!(
            "checkpoints in {}: best.safetensors, last.safetensors{}",
            self.out.display(),
            if self.half {
                ", best.f16.safetensors"
            } else {
                ""
            }
        );
        Ok(())
    }
}

fn prepare_out(out: &Path, progress: &mut Progress) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    progress.log_metrics_to(out.join("metrics.jsonl"))
}

pub fn train(ctx: &Ctx, a: TrainArgs) -> Result<()> {
    let arch = a
        .arch
        .clone()
        .context("`distill train` needs --arch teacher or --arch student")?;
    check_arch(&arch)?;
    check_slices(&a.data)?;
    let cfg = apply_hyper(TrainConfig::default(), &a.hyper, a.hyper.epochs)?;
    let ds = load_data(&a.data)?;
    let dev = ctx.open_device()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| default_run_dir(&format!("-{arch}")));
    let spec = ArchSpec::preset(&arch, ds.channels, ds.height, ds.width, ds.num_classes())?;
    let input = InputSpec::of(&ds);
    let mut progress = Progress::new(ctx.mode);
    prepare_out(&out, &mut progress)?;
    progress.line(&format!(
        "training {arch} on {} images of {} (device {}), checkpoints in {}",
        ds.train.len(),
        ds.name,
        dev.device.name(),
        out.display()
    ));
    let job = TrainJob {
        run: arch.clone(),
        spec: spec.clone(),
        input: input.clone(),
        device: dev.device.clone(),
        config: cfg.clone(),
        train: Arc::new(ds.train.clone()),
        test: Arc::new(ds.test.clone()),
        kd: None,
        checkpoint_dir: Some(out.clone()),
        resume: true,
    };
    let t = train::train(job, &mut progress)?;
    if let Some(e) = progress.metrics_error.take() {
        return Err(e);
    }
    progress.finish();
    Finished {
        run: &arch,
        arch: &arch,
        device: &dev.device,
        ds: &ds,
        out: &out,
        train_images: ds.train.len(),
        config: &cfg,
        kd: None,
        offline_kd: None,
        half: a.half,
        spec: &spec,
        input: &input,
    }
    .report(ctx, &t)?;
    dev.print_profile()
}

/// Checks that a model fits the dataset (channels, size, classes).
fn check_fits(path: &Path, m: &LoadedModel, ds: &Dataset) -> Result<()> {
    let s = &m.spec;
    if (s.in_channels, s.height, s.width) != (ds.channels, ds.height, ds.width)
        || s.num_classes != ds.num_classes()
    {
        bail!(
            "{} expects {}×{}×{} images and {} classes, but the dataset {} has {}×{}×{} images and {} classes",
            path.display(),
            s.in_channels,
            s.height,
            s.width,
            s.num_classes,
            ds.name,
            ds.channels,
            ds.height,
            ds.width,
            ds.num_classes()
        );
    }
    Ok(())
}

fn load_checkpoint(path: &Path, device: &Device) -> Result<LoadedModel> {
    if !path.is_file() {
        bail!("{}: no such checkpoint file", path.display());
    }
    train::load_model(path, device, None, None)
        .with_context(|| format!("cannot load the checkpoint {}", path.display()))
}

pub fn distill(ctx: &Ctx, a: DistillArgs) -> Result<()> {
    let teacher_path = a
        .teacher
        .clone()
        .context("`distill distill` needs --teacher CKPT (a checkpoint from `distill train --arch teacher` or `distill run`)")?;
    let arch = a.arch.clone().unwrap_or_else(|| "student".into());
    check_arch(&arch)?;
    check_slices(&a.data)?;
    let fraction = a.label_fraction.unwrap_or(1.0);
    check_fraction(fraction)?;
    let cfg = apply_hyper(TrainConfig::default(), &a.hyper, a.hyper.epochs)?;
    let kd = apply_kd(KdConfig::default(), &a.kd)?;
    let dev = ctx.open_device()?;
    let ds = load_data(&a.data)?;
    if !teacher_path.is_file() {
        bail!("{}: no such checkpoint file", teacher_path.display());
    }
    // A distill checkpoint, or a bare PyTorch state_dict of the seed's modules.
    let teacher = train::load_model_for_data(&teacher_path, &dev.device, &InputSpec::of(&ds))
        .with_context(|| format!("cannot load the teacher {}", teacher_path.display()))?;
    check_fits(&teacher_path, &teacher, &ds)?;
    // The student sees exactly what the teacher saw: the teacher's normalisation and classes.
    let input = teacher.input.clone();
    let spec = ArchSpec::preset(&arch, ds.channels, ds.height, ds.width, ds.num_classes())?;
    let out = a.out.clone().unwrap_or_else(|| default_run_dir("-kd"));
    let mut progress = Progress::new(ctx.mode);
    prepare_out(&out, &mut progress)?;

    let full = Arc::new(ds.train.clone());
    let student_train: Arc<Split> = if fraction < 1.0 {
        Arc::new(full.label_fraction(fraction, cfg.seed)?)
    } else {
        full
    };
    let test = Arc::new(ds.test.clone());
    progress.line(&format!(
        "distilling {} into a {arch} on {} images of {} (T = {}, α = {}, device {}), checkpoints in {}",
        teacher_path.display(),
        student_train.len(),
        ds.name,
        kd.temperature,
        kd.alpha,
        dev.device.name(),
        out.display()
    ));
    let offline = !cfg.augment.is_active();
    let logits = if offline {
        let spinner = progress.spinner("caching the teacher's logits");
        let t0 = std::time::Instant::now();
        let l = train::predict_logits(&teacher.model, &dev.device, &student_train, &input, 256)?;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        progress.line(&format!(
            "teacher logits cached for {} images in {:.1}s (offline KD)",
            student_train.len(),
            t0.elapsed().as_secs_f64()
        ));
        TeacherLogits::Cached(Arc::new(l))
    } else {
        progress.line("augmentation is on: the teacher runs on every batch (online KD)");
        TeacherLogits::Online(&teacher.model)
    };
    let job = TrainJob {
        run: "kd".into(),
        spec: spec.clone(),
        input: input.clone(),
        device: dev.device.clone(),
        config: cfg.clone(),
        train: student_train.clone(),
        test,
        kd: Some((kd, logits)),
        checkpoint_dir: Some(out.clone()),
        resume: true,
    };
    let t = train::train(job, &mut progress)?;
    if let Some(e) = progress.metrics_error.take() {
        return Err(e);
    }
    progress.finish();
    Finished {
        run: "kd",
        arch: &arch,
        device: &dev.device,
        ds: &ds,
        out: &out,
        train_images: student_train.len(),
        config: &cfg,
        kd: Some(kd),
        offline_kd: Some(offline),
        half: a.half,
        spec: &spec,
        input: &input,
    }
    .report(ctx, &t)?;
    dev.print_profile()
}

// --- eval ----------------------------------------------------------------------------------

#[derive(Serialize)]
struct EvalOutput<'a> {
    checkpoint: &'a Path,
    arch: &'a str,
    dataset: &'a str,
    device: String,
    test_images: usize,
    accuracy: f64,
    loss: f64,
    class_names: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    per_class_accuracy: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    confusion: Option<&'a Vec<Vec<u64>>>,
}

pub fn eval(ctx: &Ctx, a: EvalArgs) -> Result<()> {
    if a.max_test == Some(0) {
        bail!("--max-test must be at least 1");
    }
    if a.batch_size == Some(0) {
        bail!("--batch-size must be at least 1");
    }
    let dev = ctx.open_device()?;
    let m = load_checkpoint(&a.checkpoint, &dev.device)?;
    let ds = load_data(&DataOpts {
        data: a.data.clone(),
        max_train: Some(1),
        max_test: a.max_test,
    })?;
    check_fits(&a.checkpoint, &m, &ds)?;
    let want_confusion = a.confusion || a.confusion_png.is_some();
    let progress = Progress::new(ctx.mode);
    let spinner = progress.spinner(&format!("evaluating on {} test images", ds.test.len()));
    let test = Arc::new(ds.test.clone());
    let ev: Evaluation = train::evaluate(
        &m.model,
        &dev.device,
        &test,
        &m.input,
        a.batch_size.unwrap_or(256),
        want_confusion,
    )?;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    drop(progress);
    let names = &m.input.class_names;
    let per_class = ev.confusion.as_ref().map(|c| {
        c.iter()
            .enumerate()
            .map(|(i, row)| row[i] as f64 / row.iter().sum::<u64>().max(1) as f64)
            .collect::<Vec<f64>>()
    });
    if let (Some(path), Some(c)) = (&a.confusion_png, &ev.confusion) {
        distill::distill::plot::confusion_matrix(
            path,
            &format!("{}: confusion matrix (test)", m.spec.arch),
            c,
            names,
        )?;
    }
    if ctx.global.json {
        ctx.print_json(&EvalOutput {
            checkpoint: &a.checkpoint,
            arch: &m.spec.arch,
            dataset: &ds.name,
            device: dev.device.name(),
            test_images: ds.test.len(),
            accuracy: ev.accuracy,
            loss: ev.loss,
            class_names: names,
            per_class_accuracy: per_class,
            confusion: ev.confusion.as_ref(),
        })?;
        return dev.print_profile();
    }
    println!(
        "{} ({}): test accuracy {:.2}%  loss {:.4}  on {} test images of {} ({})",
        a.checkpoint.display(),
        m.spec.arch,
        100.0 * ev.accuracy,
        ev.loss,
        ds.test.len(),
        ds.name,
        dev.device.name()
    );
    if let (Some(c), Some(pc)) = (&ev.confusion, &per_class) {
        let width = names
            .iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(5)
            .max(5);
        println!("\nconfusion matrix (rows: true class, columns: predicted class index)");
        print!("{:>width$}  ", "");
        for j in 0..c.len() {
            print!("{j:>6}");
        }
        println!("  accuracy");
        for (i, row) in c.iter().enumerate() {
            print!(
                "{:>width$}  ",
                format!("{i} {}", names[i]),
                width = width + 2
            );
            for v in row {
                print!("{v:>6}");
            }
            println!("  {:>7.2}%", 100.0 * pc[i]);
        }
        if let Some(p) = &a.confusion_png {
            println!("\nconfusion matrix drawn in {}", p.display());
        }
    }
    dev.print_profile()
}

// --- predict -------------------------------------------------------------------------------

#[derive(Serialize)]
struct ClassProb {
    class: String,
    index: usize,
    probability: f64,
}

#[derive(Serialize)]
struct Prediction {
    image: PathBuf,
    top: Vec<ClassProb>,
}

/// An image file as planar bytes of `channels` × `height` × `width` (bilinear resize).
fn read_image(path: &Path, input: &InputSpec) -> Result<Vec<u8>> {
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?
        .decode()
        .with_context(|| format!("{} is not an image distill can read", path.display()))?;
    let (w, h) = (input.width as u32, input.height as u32);
    let img = if img.width() != w || img.height() != h {
        img.resize_exact(w, h, image::imageops::FilterType::Triangle)
    } else {
        img
    };
    let plane = input.height * input.width;
    match input.channels {
        1 => Ok(img.to_luma8().into_raw()),
        3 => {
            let rgb = img.to_rgb8().into_raw();
            let mut out = vec![0u8; 3 * plane];
            for p in 0..plane {
                for c in 0..3 {
                    out[c * plane + p] = rgb[p * 3 + c];
                }
            }
            Ok(out)
        }
        c => bail!(
            "the checkpoint expects {c}-channel images; only 1 (grey) and 3 (RGB) are supported"
        ),
    }
}

pub fn predict(ctx: &Ctx, a: PredictArgs) -> Result<()> {
    let k = a.top_k.unwrap_or(3);
    if k == 0 {
        bail!("--top-k must be at least 1");
    }
    let dev = ctx.open_device()?;
    let m = load_checkpoint(&a.checkpoint, &dev.device)?;
    let classes = m.spec.num_classes;
    let mut bytes = Vec::new();
    for path in &a.images {
        bytes.extend(read_image(path, &m.input)?);
    }
    // The same batching as training and evaluation, so normalisation is identical.
    let split = Arc::new(Split::new(bytes, vec![0; a.images.len()])?);
    let logits = train::predict_logits(&m.model, &dev.device, &split, &m.input, 256)?;
    let mut out = Vec::new();
    for (i, path) in a.images.iter().enumerate() {
        let row = &logits[i * classes..(i + 1) * classes];
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let exp: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
        let sum: f64 = exp.iter().sum();
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&x, &y| exp[y].total_cmp(&exp[x]).then(x.cmp(&y)));
        let top = order
            .into_iter()
            .take(k)
            .map(|c| ClassProb {
                class: m
                    .input
                    .class_names
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| c.to_string()),
                index: c,
                probability: exp[c] / sum,
            })
            .collect();
        out.push(Prediction {
            image: path.clone(),
            top,
        });
    }
    if ctx.global.json {
        ctx.print_json(&out)?;
    } else {
        for p in &out {
            println!("{}", p.image.display());
            for (rank, c) in p.top.iter().enumerate() {
                println!(
                    "  {}. {:<16} {:>6.2}%",
                    rank + 1,
                    c.class,
                    100.0 * c.probability
                );
            }
        }
    }
    if k > classes && ctx.mode != Mode::Quiet {
        eprintln!("note: --top-k {k} is more than the {classes} classes; printed all of them");
    }
    dev.print_profile()
}
