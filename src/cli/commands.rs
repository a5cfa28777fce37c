//! The subcommands run, train, distill, eval and predict: each turns its flags into the
//! library's settings, calls one library function and prints what came back.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use distill::data::Augment;
use distill::optim::LrSchedule;
use distill::pipeline::{
    self, DataSource, EvalJob, Method, ModelJob, ModelOutcome, RunConfig, StudyConfig,
    TeacherSource,
};
use distill::train::{EpochRecord, HintConfig, KdConfig, TrainConfig};
use distill::Device;

use super::args::{
    DataOpts, DistillArgs, EvalArgs, HyperOpts, KdOpts, PredictArgs, RunArgs, ScheduleKind,
    StageArg, StudyArgs, TrainArgs,
};
use super::progress::{Mode, Progress};
use super::{default_run_dir, Ctx};

// --- flags → settings ----------------------------------------------------------------------

/// `cfg` with the flags of `h` applied (`epochs` chosen by the caller: `run` has two).
fn apply_hyper(mut cfg: TrainConfig, h: &HyperOpts, epochs: Option<usize>) -> Result<TrainConfig> {
    cfg.epochs = epochs.unwrap_or(cfg.epochs);
    cfg.batch_size = h.batch_size.unwrap_or(cfg.batch_size);
    cfg.lr = h.lr.unwrap_or(cfg.lr);
    cfg.optimizer = h.optimizer.unwrap_or(cfg.optimizer);
    cfg.momentum = h.momentum.unwrap_or(cfg.momentum);
    cfg.weight_decay = h.weight_decay.unwrap_or(cfg.weight_decay);
    cfg.seed = h.seed.unwrap_or(cfg.seed);
    if h.augment {
        cfg.augment = Augment {
            crop_padding: 2,
            hflip: true,
        };
    }
    cfg.schedule = match (h.schedule, cfg.schedule) {
        (Some(ScheduleKind::Constant), _) => LrSchedule::Constant,
        (Some(ScheduleKind::Step), LrSchedule::Step { step_size, gamma })
        | (None, LrSchedule::Step { step_size, gamma }) => LrSchedule::Step {
            step_size: h.step_size.unwrap_or(step_size),
            gamma: h.gamma.unwrap_or(gamma),
        },
        (Some(ScheduleKind::Step), _) => LrSchedule::Step {
            step_size: h.step_size.unwrap_or(LrSchedule::DEFAULT_STEP_SIZE),
            gamma: h.gamma.unwrap_or(LrSchedule::DEFAULT_GAMMA),
        },
        // The cosine spans the run.
        (Some(ScheduleKind::Cosine), _) | (None, LrSchedule::Cosine { .. }) => LrSchedule::Cosine {
            t_max: cfg.epochs,
            eta_min: 0.0,
        },
        (None, s) => s,
    };
    if !matches!(cfg.schedule, LrSchedule::Step { .. })
        && (h.step_size.is_some() || h.gamma.is_some())
    {
        bail!("--step-size and --gamma belong to --schedule step");
    }
    Ok(cfg)
}

/// The library checks the settings where they enter it: the flags are only applied here.
fn apply_kd(kd: KdConfig, o: &KdOpts) -> KdConfig {
    KdConfig {
        temperature: o.temperature.unwrap_or(kd.temperature),
        alpha: o.alpha.unwrap_or(kd.alpha),
    }
}

fn data_source(d: &DataOpts) -> DataSource {
    DataSource {
        path: d
            .data
            .clone()
            .unwrap_or_else(distill::data::default_data_dir),
        max_train: d.max_train,
        max_test: d.max_test,
    }
}

fn load_data(source: &DataSource) -> Result<distill::data::Dataset> {
    source
        .load()
        .with_context(|| format!("cannot load the dataset at {}", source.path.display()))
}

/// A job's error; one that stopped it part-way says what is kept and how to continue.
fn stopped(e: distill::Error, dir: &Path, how_to_continue: &str) -> anyhow::Error {
    use distill::Error::*;
    match e {
        Busy(_) | InvalidSetting { .. } | InvalidArgument(_) | Resume(_) | Data(_) => e.into(),
        _ => anyhow::Error::new(e).context(format!(
            "the job in {} stopped (finished epochs are kept; {how_to_continue})",
            dir.display()
        )),
    }
}

// --- run -----------------------------------------------------------------------------------

/// The run directory: `--resume DIR` (which must hold a run), else `--out`, else a new one.
fn run_dir(a: &RunArgs) -> Result<PathBuf> {
    match (&a.resume, &a.out) {
        (Some(r), Some(o)) if r != o => bail!(
            "--resume {} and --out {} name different directories",
            r.display(),
            o.display()
        ),
        (Some(r), _) if !r.join("config.json").is_file() => bail!(
            "cannot resume {}: it holds no config.json (start a new run with --out {})",
            r.display(),
            r.display()
        ),
        (Some(r), _) => Ok(r.clone()),
        (None, Some(o)) => Ok(o.clone()),
        (None, None) => Ok(default_run_dir("")),
    }
}

/// The settings of `run`: those saved in the run directory (a resume) or the defaults, with
/// the flags applied.
fn run_config(ctx: &Ctx, a: &RunArgs, saved: Option<RunConfig>) -> Result<RunConfig> {
    let mut cfg = match saved {
        Some(s) => {
            if a.quick {
                ctx.note("--quick ignored: a resumed run keeps its saved settings");
            }
            s
        }
        None if a.quick => RunConfig::quick(),
        None => RunConfig::default(),
    };
    cfg.data = a.data.data.clone().unwrap_or(cfg.data);
    cfg.max_train = a.data.max_train.or(cfg.max_train);
    cfg.max_test = a.data.max_test.or(cfg.max_test);
    cfg.teacher = apply_hyper(cfg.teacher, &a.hyper, a.teacher_epochs)?;
    cfg.student = apply_hyper(cfg.student, &a.hyper, a.hyper.epochs)?;
    cfg.kd = apply_kd(cfg.kd, &a.kd);
    cfg.label_fraction = a.label_fraction.unwrap_or(cfg.label_fraction);
    cfg.seeds = a.seeds.unwrap_or(cfg.seeds);
    if let Some(t) = &a.transfer {
        cfg.transfer = parse_transfer(t)?;
    }
    cfg.transfer_epochs = a.transfer_epochs.or(cfg.transfer_epochs);
    if let Some(arch) = &a.student_arch {
        cfg.student_arch = arch.clone();
    }
    cfg.teachers = a.teachers.unwrap_or(cfg.teachers);
    if let Some(e) = &a.ensemble {
        cfg.ensemble = parse_ensemble(e)?;
    }
    if a.teacher.is_some() {
        cfg.teacher_checkpoint = a.teacher.clone();
    }
    cfg.half |= a.half;
    if !cfg.data.exists() {
        bail!(
            "the dataset folder {} does not exist (see --data)",
            cfg.data.display()
        );
    }
    Ok(cfg)
}

pub fn run(ctx: &Ctx, a: RunArgs) -> Result<()> {
    let dir = run_dir(&a)?;
    let saved = RunConfig::load_saved(&dir)?;
    let resuming = saved.is_some();
    let cfg = run_config(ctx, &a, saved)?;
    let device = ctx.open_device()?;
    let mut progress = Progress::new(ctx.mode);
    progress.line(&format!(
        "{} {} (device {})",
        if resuming {
            "resuming the run in"
        } else {
            "run directory:"
        },
        dir.display(),
        device.name()
    ));
    let resume = format!("`distill run --resume {}` continues", dir.display());
    let report =
        pipeline::run(&cfg, &device, &dir, &mut progress).map_err(|e| stopped(e, &dir, &resume))?;
    progress.finish();
    if let Some(path) = &a.record {
        let what = format!("`distill run` on {}", report.dataset);
        write_record(
            ctx,
            path,
            &what,
            report.figures(),
            &device,
            report.load.clone(),
        )?;
    }
    if ctx.global.json {
        ctx.print_json(&report)?;
    } else {
        for line in pipeline::summary_lines(&report) {
            println!("{line}");
        }
        println!("report    {}", dir.join("report.md").display());
    }
    ctx.print_profile(&device)
}

/// Writes a record (`--record FILE`) of `figures` measured on `device` by this command, with
/// the load window the job kept.
fn write_record(
    ctx: &Ctx,
    path: &Path,
    what: &str,
    figures: Vec<distill::bench::record::Figure>,
    device: &Device,
    load: Option<distill::bench::load::LoadWindow>,
) -> Result<()> {
    let rec = distill::bench::record::Record::measured_on(what, figures, device, load);
    rec.save(path)
        .with_context(|| format!("cannot write the record {}", path.display()))?;
    ctx.note(&format!("wrote {}", path.display()));
    Ok(())
}

/// `--transfer labelled|all|DIR`.
fn parse_transfer(s: &str) -> Result<pipeline::Transfer> {
    s.parse()
        .map_err(|e: String| anyhow::anyhow!("--transfer: {e}"))
}

/// `--ensemble probabilities|logits`.
fn parse_ensemble(s: &str) -> Result<pipeline::Ensemble> {
    s.parse()
        .map_err(|e: String| anyhow::anyhow!("--ensemble: {e}"))
}

// --- study ---------------------------------------------------------------------------------

pub fn study(ctx: &Ctx, a: StudyArgs) -> Result<()> {
    if let Some(dir) = &a.merge {
        return merge(ctx, dir, &a);
    }
    let staged = a.stage.is_some() || a.shard.is_some();
    if staged && a.run.out.is_none() && a.run.resume.is_none() {
        bail!("--stage and --shard need the study directory every task shares: give --out DIR");
    }
    if staged && a.run.record.is_some() {
        bail!("--record belongs to a whole study; a staged study's report is written by --merge");
    }
    // The batch system's variables are read here, once; the library gets their values.
    let shard = match &a.shard {
        Some(spec) => Some(pipeline::Shard::parse(
            spec,
            &pipeline::ShardEnv::from_vars(|k| std::env::var(k).ok()),
        )?),
        None => None,
    };
    let dir = match (&a.run.resume, &a.run.out) {
        (Some(r), Some(o)) if r != o => bail!(
            "--resume {} and --out {} name different directories",
            r.display(),
            o.display()
        ),
        (Some(r), _) if !r.join(pipeline::study::STUDY_CONFIG).is_file() => {
            bail!("cannot resume {}: it holds no study.json", r.display())
        }
        (Some(d), _) | (None, Some(d)) => d.clone(),
        (None, None) => default_run_dir("-study"),
    };
    let saved: Option<StudyConfig> =
        std::fs::read_to_string(dir.join(pipeline::study::STUDY_CONFIG))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let mut base = run_config(ctx, &a.run, saved.as_ref().map(|s| s.base.clone()))?;
    if saved.is_none() && a.run.seeds.is_none() {
        base.seeds = pipeline::study::DEFAULT_SEEDS;
    }
    let methods = match (&a.methods, &saved) {
        (Some(m), _) => Method::parse_list(m)?,
        (None, Some(s)) => s.methods.clone(),
        (None, None) => pipeline::study::DEFAULT_METHODS.to_vec(),
    };
    let hint = match (&a.hint_weight, &a.hint_layers, &saved) {
        (None, None, Some(s)) => s.hint.clone(),
        (w, l, _) => {
            let default = pipeline::study::default_hint();
            let layers = l.clone().unwrap_or_else(|| default.layers());
            HintConfig::new(w.unwrap_or(default.weight), &layers)?
        }
    };
    let cfg = StudyConfig {
        base,
        methods,
        hint,
    };
    let devices = match &a.devices {
        Some(list) => open_devices(ctx, list)?,
        None => vec![ctx.open_device()?],
    };
    let device = devices[0].clone();
    let mut progress = Progress::new(ctx.mode);
    let names: Vec<String> = devices.iter().map(|d| d.name()).collect();
    progress.line(&format!(
        "study directory: {} (device{} {})",
        dir.display(),
        if names.len() > 1 { "s" } else { "" },
        names.join(", ")
    ));
    if a.stage == Some(StageArg::Teachers) {
        let rec = pipeline::teacher_stage(&cfg, &device, &dir, &mut progress)
            .map_err(|e| stopped(e, &dir, "the same command continues"))?;
        progress.finish();
        if ctx.global.json {
            return ctx.print_json(&rec);
        }
        for t in &rec.teachers {
            println!(
                "{:<12} test accuracy {:.2}%  ({}, SHA-256 {})",
                t.summary.run,
                100.0 * t.summary.final_accuracy,
                t.checkpoint.file.display(),
                &t.checkpoint.sha256[..16]
            );
        }
        if let Some(e) = rec.ensemble_accuracy {
            println!("{:<12} test accuracy {:.2}%", "ensemble", 100.0 * e);
        }
        println!(
            "next: `distill study --out {} --shard I/N` for I = 1…N (or --shard auto/N in an \
             array job), then `distill study --merge {}`",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    if let Some(shard) = shard {
        let out = pipeline::run_shard_on(&cfg, &devices, &dir, shard, &mut progress)
            .map_err(|e| stopped(e, &dir, "the same command continues"))?;
        progress.finish();
        if ctx.global.json {
            return ctx.print_json(&out);
        }
        println!(
            "shard {}: trained {} and found {} finished of its {} runs ({} in the study)",
            out.shard,
            out.trained.len(),
            out.skipped.len(),
            out.trained.len() + out.skipped.len(),
            out.planned
        );
        for name in &out.trained {
            println!("  trained  {name}");
        }
        for name in &out.skipped {
            println!("  finished {name}");
        }
        return Ok(());
    }
    let resume = format!("`distill study --resume {}` continues", dir.display());
    let report = pipeline::study_on(&cfg, &devices, &dir, &mut progress)
        .map_err(|e| stopped(e, &dir, &resume))?;
    progress.finish();
    if let Some(path) = &a.run.record {
        let methods: Vec<&str> = cfg.methods.iter().map(|m| m.name()).collect();
        let what = format!(
            "`distill study` of {} over {} seeds",
            methods.join(", "),
            cfg.base.seeds
        );
        write_record(
            ctx,
            path,
            &what,
            report.figures(),
            &device,
            report.load.clone(),
        )?;
    }
    if ctx.global.json {
        return ctx.print_json(&report);
    }
    print_study_table(&report);
    println!(
        "report    {}",
        dir.join(pipeline::study_report::STUDY_MD).display()
    );
    Ok(())
}

/// `--devices gpu:0,gpu:1,cpu`: each entry opened as `--device` opens one (a repeated entry
/// opens the adapter again, as a device of its own).
fn open_devices(ctx: &Ctx, list: &str) -> Result<Vec<Device>> {
    if let Some(d) = &ctx.global.device {
        ctx.note(&format!("--devices {list} is used, not the device '{d}'"));
    }
    let mut out = Vec::new();
    for spec in list.split(',').map(str::trim) {
        if spec.is_empty() {
            bail!("--devices '{list}': an empty entry");
        }
        let device = Device::open(spec, &ctx.device_options())
            .with_context(|| format!("--devices: {spec}"))?;
        if ctx.global.profile {
            device.set_profiling(true)?;
        }
        out.push(device);
    }
    Ok(out)
}

/// `distill study --merge DIR`.
fn merge(ctx: &Ctx, dir: &Path, a: &StudyArgs) -> Result<()> {
    if a.run.out.is_some() || a.run.resume.is_some() || a.run.record.is_some() {
        bail!("--merge DIR names the study itself and writes its report there; drop --out, --resume and --record");
    }
    let report = pipeline::merge(dir)?;
    if ctx.global.json {
        return ctx.print_json(&report);
    }
    print_study_table(&report);
    if !report.missing.is_empty() {
        println!(
            "not finished: {} of {} runs",
            report.missing.len(),
            report.missing.len() + report.runs.len()
        );
        for m in &report.missing {
            let shard = m
                .shard
                .as_ref()
                .map_or_else(String::new, |s| format!(" (shard {s})"));
            println!("  {}{shard}: {}", m.run, m.reason);
        }
    }
    println!(
        "report    {}",
        dir.join(pipeline::study_report::STUDY_MD).display()
    );
    Ok(())
}

/// One line per method: accuracy and the paired gain over CE.
fn print_study_table(report: &pipeline::StudyReport) {
    for m in &report.methods {
        if m.seeds == 0 {
            println!("{:<12} no finished run", m.method.name());
            continue;
        }
        let gain = m.gain_final.as_ref().map_or(String::new(), |g| {
            format!(
                "  gain {:+.2} ± {:.2} points (t {}, sign {}/{})",
                100.0 * g.mean,
                100.0 * g.sd,
                g.t.map_or_else(|| "-".into(), |t| format!("{t:.2}")),
                g.positive,
                g.negative
            )
        });
        println!(
            "{:<12} final {:.2}% ± {:.2}  best {:.2}% ± {:.2}{gain}",
            m.method.name(),
            100.0 * m.final_mean,
            100.0 * m.final_sd,
            100.0 * m.best_mean,
            100.0 * m.best_sd
        );
    }
}

// --- train / distill -----------------------------------------------------------------------

pub fn train(ctx: &Ctx, a: TrainArgs) -> Result<()> {
    let arch = a.arch.clone().context(
        "`distill train` needs --arch: teacher, student, or a compact spec such as c16-c32-f128",
    )?;
    pipeline::check_arch(&arch)?;
    let job = ModelJob {
        config: apply_hyper(TrainConfig::default(), &a.hyper, a.hyper.epochs)?,
        out: a
            .out
            .clone()
            .unwrap_or_else(|| default_run_dir(&format!("-{arch}"))),
        arch,
        teacher: None,
        half: a.half,
    };
    train_and_print(ctx, &job, &data_source(&a.data))
}

pub fn distill(ctx: &Ctx, a: DistillArgs) -> Result<()> {
    if a.teacher.is_empty() {
        bail!("`distill distill` needs --teacher CKPT (a checkpoint from `distill train --arch teacher` or `distill run`; repeat it for an ensemble)");
    }
    let arch = a
        .arch
        .clone()
        .unwrap_or_else(|| pipeline::DEFAULT_STUDENT_ARCH.into());
    pipeline::check_arch(&arch)?;
    let d = TeacherSource::new(a.teacher.clone());
    let job = ModelJob {
        arch,
        config: apply_hyper(TrainConfig::default(), &a.hyper, a.hyper.epochs)?,
        out: a.out.clone().unwrap_or_else(|| default_run_dir("-kd")),
        teacher: Some(TeacherSource {
            ensemble: a
                .ensemble
                .as_deref()
                .map(parse_ensemble)
                .transpose()?
                .unwrap_or(d.ensemble),
            kd: apply_kd(d.kd, &a.kd),
            label_fraction: a.label_fraction.unwrap_or(d.label_fraction),
            hint: hint_config(&a, d.hint.as_ref())?,
            transfer: match a.transfer.as_deref() {
                Some(t) => parse_transfer(t)?,
                None => d.transfer.clone(),
            },
            ..d
        }),
        half: a.half,
    };
    train_and_print(ctx, &job, &data_source(&a.data))
}

/// `--hint-weight` and `--hint-layers` over the `default` hint (the library's: none) as a
/// hint setting: `None` when the weight is 0 (off).
fn hint_config(a: &DistillArgs, default: Option<&HintConfig>) -> Result<Option<HintConfig>> {
    let layers = a.hint_layers.clone().or(default.map(HintConfig::layers));
    match a.hint_weight.or(default.map(|h| h.weight)) {
        None | Some(0.0) if a.hint_layers.is_some() => {
            bail!("--hint-layers needs a --hint-weight > 0")
        }
        None | Some(0.0) => Ok(None),
        Some(w) => Ok(Some(HintConfig::new(
            w,
            layers.as_deref().unwrap_or(HintConfig::DEFAULT_LAYERS),
        )?)),
    }
}

/// What `train` and `distill` print with `--json`.
#[derive(Serialize)]
struct TrainOutput<'a> {
    run: &'a str,
    arch: &'a str,
    device: String,
    dataset: &'a str,
    checkpoint_dir: &'a std::path::Path,
    train_images: usize,
    test_images: usize,
    final_accuracy: f64,
    best_accuracy: f64,
    best_epoch: usize,
    seconds: f64,
    config: &'a TrainConfig,
    kd: Option<KdConfig>,
    hint: Option<&'a HintConfig>,
    offline_kd: Option<bool>,
    history: &'a [EpochRecord],
}

fn train_and_print(ctx: &Ctx, job: &ModelJob, source: &DataSource) -> Result<()> {
    let ds = load_data(source)?;
    let device = ctx.open_device()?;
    let mut progress = Progress::new(ctx.mode);
    let out: ModelOutcome = pipeline::train_model(job, &ds, &device, &mut progress)
        .map_err(|e| stopped(e, &job.out, "the same command continues"))?;
    progress.finish();
    let t = &out.trained;
    if ctx.global.json {
        ctx.print_json(&TrainOutput {
            run: &out.run,
            arch: &job.arch,
            device: device.name(),
            dataset: &ds.name,
            checkpoint_dir: &job.out,
            train_images: out.train_images,
            test_images: ds.test.len(),
            final_accuracy: t.final_accuracy,
            best_accuracy: t.best_accuracy,
            best_epoch: t.best_epoch,
            seconds: t.seconds,
            config: &job.config,
            kd: job.teacher.as_ref().map(|t| t.kd),
            hint: job.teacher.as_ref().and_then(|t| t.hint.as_ref()),
            offline_kd: out.offline_kd,
            history: &t.history,
        })?;
        return ctx.print_profile(&device);
    }
    let per_epoch =
        t.history.iter().map(|r| r.seconds).sum::<f64>() / t.history.len().max(1) as f64;
    println!(
        "{} ({}): test accuracy {:.2}% after {} epochs (best {:.2}% at epoch {}), {:.1}s per epoch, {} training images",
        out.run,
        job.arch,
        100.0 * t.final_accuracy,
        t.history.len(),
        100.0 * t.best_accuracy,
        t.best_epoch,
        per_epoch,
        out.train_images
    );
    println!(
        "checkpoints in {}: best.safetensors, last.safetensors{}",
        job.out.display(),
        if out.wrote_half {
            ", best.f16.safetensors"
        } else {
            ""
        }
    );
    ctx.print_profile(&device)
}

// --- eval / predict ------------------------------------------------------------------------

pub fn eval(ctx: &Ctx, a: EvalArgs) -> Result<()> {
    let device = ctx.open_device()?;
    let job = EvalJob {
        checkpoint: a.checkpoint.clone(),
        data: data_source(&DataOpts {
            data: a.data.clone(),
            max_test: a.max_test,
            ..DataOpts::default()
        }),
        batch_size: a.batch_size.unwrap_or(EvalJob::DEFAULT_BATCH_SIZE),
        confusion: a.confusion || a.confusion_png.is_some(),
    };
    let progress = Progress::new(ctx.mode);
    let spinner = progress.spinner("evaluating on the test images");
    let ev = pipeline::evaluate_checkpoint(&job, &device)?;
    drop(spinner);
    drop(progress);
    let names = &ev.class_names;
    if let (Some(path), Some(c)) = (&a.confusion_png, &ev.confusion) {
        let title = format!("{}: confusion matrix (test)", ev.arch);
        distill::plot::confusion_matrix(path, &title, c, names)?;
    }
    if ctx.global.json {
        ctx.print_json(&ev)?;
        return ctx.print_profile(&device);
    }
    println!(
        "{} ({}): test accuracy {:.2}%  loss {:.4}  on {} test images of {} ({})",
        a.checkpoint.display(),
        ev.arch,
        100.0 * ev.accuracy,
        ev.loss,
        ev.test_images,
        ev.dataset,
        ev.device
    );
    if let (Some(c), Some(pc)) = (&ev.confusion, &ev.per_class_accuracy) {
        print_confusion(c, pc, names);
        if let Some(p) = &a.confusion_png {
            println!("\nconfusion matrix drawn in {}", p.display());
        }
    }
    ctx.print_profile(&device)
}

fn print_confusion(c: &[Vec<u64>], per_class: &[f64], names: &[String]) {
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
        let label = format!("{i} {}", names[i]);
        print!("{label:>w$}  ", w = width + 2);
        for v in row {
            print!("{v:>6}");
        }
        println!("  {:>7.2}%", 100.0 * per_class[i]);
    }
}

pub fn predict(ctx: &Ctx, a: PredictArgs) -> Result<()> {
    let k = a.top_k.unwrap_or(pipeline::DEFAULT_TOP_K);
    let device = ctx.open_device()?;
    let source = data_source(&DataOpts {
        data: a.data.clone(),
        ..DataOpts::default()
    });
    let out = pipeline::predict(&a.checkpoint, &a.images, k, &source, &device)?;
    if ctx.global.json {
        ctx.print_json(&out)?;
    } else {
        for p in &out {
            println!("{}", p.image.display());
            for (rank, c) in p.top.iter().enumerate() {
                let pct = 100.0 * c.probability;
                println!("  {}. {:<16} {pct:>6.2}%", rank + 1, c.class);
            }
        }
    }
    let classes = out.first().map_or(0, |p| p.top.len());
    if k > classes && ctx.mode != Mode::Quiet {
        eprintln!("note: --top-k {k} is more than the {classes} classes; printed all of them");
    }
    ctx.print_profile(&device)
}
