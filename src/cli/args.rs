//! The command line (clap derive) and the `--config FILE.toml` file, which takes the same keys
//! as the long flags (snake_case or kebab-case). Each option is declared once, in an
//! [`options!`] struct: its flag, help and type there give the file key too. Flags override
//! the file; the file overrides the defaults (the library's, where the help names them).
//!
//! A default is never written here: the help that names one takes it from the library
//! ([`with_default`]), where the settings get it too.

use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use distill::optim::LrSchedule;
use distill::pipeline::{self, study, Method, RunConfig, TeacherSource};
use distill::train::{HintConfig, KdConfig, OptimizerKind};
use distill::Tile;

/// A flag's help: its description, then the default the library gives the setting, as
/// `TEXT Default: VALUE` (without a final period, as clap shows every other help line).
fn with_default(text: &str, default: impl Display) -> String {
    format!("{text} Default: {default}")
}

/// A list of methods as `--methods` takes it.
fn method_list(methods: &[Method]) -> String {
    let names: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    names.join(",")
}

/// What `distill distill` builds its teacher settings from.
fn distill_defaults() -> TeacherSource {
    TeacherSource::new(Vec::new())
}

/// `distill distill --hint-weight`'s default: the library's hint, or none (weight 0: off).
fn distill_hint_weight() -> String {
    match distill_defaults().hint {
        Some(h) => h.weight.to_string(),
        None => "0 (off)".into(),
    }
}

/// `--transfer-epochs`' help: the library's rule, and what it gives the default job (the rule
/// depends on the share of labelled images only, so any training set size shows it).
fn transfer_epochs_help() -> String {
    let d = RunConfig::default();
    let total = 1_000_000;
    let labelled = (d.label_fraction * total as f64).round() as usize;
    let epochs = pipeline::transfer_epochs(d.student.epochs, labelled, total, None);
    with_default(
        "The KD student's epochs over a larger transfer set.",
        format!(
            "{:.2}× the baseline's optimiser steps, at most its epochs: {epochs} over all images \
             in the default job",
            pipeline::transfer::TRANSFER_STEP_RATIO
        ),
    )
}

/// `--no-autotune`'s help, with the shape the library builds without autotune.
fn no_autotune_help() -> String {
    format!(
        "GPU only: build matmul and conv2d with the default {}×{} tile instead of the shape \
         timed for this adapter (once, then cached; see `distill devices`). Also \
         DISTILL_AUTOTUNE=0",
        Tile::DEFAULT.rows(),
        Tile::DEFAULT.cols()
    )
}

/// `--quick`'s help: the sizes of the library's quick job.
fn quick_help() -> String {
    let q = RunConfig::quick();
    let count = |n: Option<usize>| n.map_or("all".to_string(), |n| n.to_string());
    format!(
        "Smoke-sized run: {}/{} images, teacher {} epoch{}, students {} epochs, {}% labels",
        count(q.max_train),
        count(q.max_test),
        q.teacher.epochs,
        if q.teacher.epochs == 1 { "" } else { "s" },
        q.student.epochs,
        (100.0 * q.label_fraction).round()
    )
}

/// `--seeds`: `distill run`'s help; `distill study` adds its own default.
const SEEDS_HELP: &str = "Train each student with N seeds (seed, seed+1, …) and report mean ± std";

/// Declares an option struct once: its clap flags as written, and its [`FromFile`] (each field
/// `pub` is also a `--config` key of its own name; a group fills its own keys; a field `cli`
/// is a flag only).
macro_rules! options {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* $scope:ident $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl FromFile for $name {
            fn fill_from(&mut self, _key: &str, _file: &FileConfig) -> Result<()> {
                $( options!(@fill $scope self.$field, stringify!($field), _file); )*
                Ok(())
            }
            fn keys(_key: &'static str, _out: &mut Vec<&'static str>) {
                $( options!(@keys $scope $ty, stringify!($field), _out); )*
            }
        }
    };
    (@fill pub $place:expr, $key:expr, $file:expr) => { $place.fill_from($key, $file)? };
    (@fill cli $place:expr, $key:expr, $file:expr) => {};
    (@keys pub $ty:ty, $key:expr, $out:expr) => { <$ty as FromFile>::keys($key, $out) };
    (@keys cli $ty:ty, $key:expr, $out:expr) => {};
}

#[derive(Parser, Debug)]
#[command(
    name = "distill",
    version,
    about = "Train a teacher CNN and distill it into a small student (Hinton KD), on hand-written CPU and GPU kernels.",
    after_help = "Start with `distill run --quick` (a smoke-sized run on a few thousand images) or `distill run` (the full job on Fashion-MNIST)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: Global,
}

options! {
    /// Options every subcommand takes.
    #[derive(Args, Debug, Default)]
    #[command(next_help_heading = "Global options")]
    pub struct Global {
        /// Where to compute: auto (a hardware GPU, else the CPU), cpu, gpu (the best adapter,
        /// including software ones), gpu:N (see `distill devices`). Default: $DISTILL_DEVICE, else auto.
        #[arg(long, global = true, value_name = "DEVICE")]
        pub device: Option<String>,
        /// Read options from a TOML file (keys as the long flags); flags override it.
        #[arg(long, global = true, value_name = "FILE.toml")]
        cli config: Option<PathBuf>,
        /// Machine-readable output on stdout (JSON); no progress bars.
        #[arg(long, global = true)]
        pub json: bool,
        /// No progress bars and no per-epoch lines (errors are still printed).
        #[arg(long, global = true)]
        pub quiet: bool,
        /// GPU only: print the time spent in each kernel at the end (needs timestamp queries).
        #[arg(long, global = true)]
        pub profile: bool,
        #[arg(long, global = true, help = no_autotune_help())]
        pub no_autotune: bool,
    }
}

impl Global {
    /// The global options with what the flags left unset taken from `$DISTILL_DEVICE`, then
    /// from the file.
    pub fn fill(&mut self, file: &FileConfig) -> Result<()> {
        if self.device.is_none() {
            self.device = std::env::var("DISTILL_DEVICE")
                .ok()
                .filter(|s| !s.trim().is_empty());
        }
        self.fill_from("", file)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job: train the teacher on every training image, then a baseline student and a
    /// KD student on a fraction of them, and write the report. Resumes a run directory that
    /// already holds a config.json.
    Run(RunArgs),
    /// Train one model (the teacher or student preset, or a compact spec such as
    /// c16-c32-f128) on labels alone.
    Train(TrainArgs),
    /// Train a student by knowledge distillation from a saved teacher.
    Distill(DistillArgs),
    /// Test accuracy and loss of a checkpoint.
    Eval(EvalArgs),
    /// Classify image files with a checkpoint (top-k classes and probabilities).
    Predict(PredictArgs),
    /// A grid of distillation methods × seeds with the teacher(s) trained once: a table of
    /// accuracy (mean ± sd) and paired gains over cross-entropy. Resumable.
    Study(StudyArgs),
    /// List the compute devices: every GPU adapter and the CPU backend.
    Devices,
    /// Benchmark this machine: each device's measured peaks, every kernel, the training
    /// step; a table, or a JSON report (--json, --out). --device all (default), cpu, gpu or
    /// gpu:N. Or compare reports: --compare A.json B.json … [--chart FILE.png].
    Bench(BenchArgs),
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Constant,
    Step,
    Cosine,
}

fn parse_optimizer(s: &str) -> Result<OptimizerKind, String> {
    s.parse()
}

options! {
    /// The dataset and its slices.
    #[derive(Args, Debug, Default, Clone)]
    #[command(next_help_heading = "Data")]
    pub struct DataOpts {
        /// Dataset folder (IDX, CIFAR binaries or an image folder). Default: the shipped
        /// Fashion-MNIST ($DISTILL_DATA, else ./datasets/fashion-mnist).
        #[arg(long, value_name = "PATH")]
        pub data: Option<PathBuf>,
        /// Use only the first N training images.
        #[arg(long, value_name = "N")]
        pub max_train: Option<usize>,
        /// Use only the first N test images.
        #[arg(long, value_name = "N")]
        pub max_test: Option<usize>,
    }
}

options! {
    /// The optimisation schedule.
    #[derive(Args, Debug, Default, Clone)]
    #[command(next_help_heading = "Training")]
    pub struct HyperOpts {
        /// Epochs (`distill run`: of the students; the teacher's are --teacher-epochs).
        #[arg(long, value_name = "N")]
        pub epochs: Option<usize>,
        /// Images per batch.
        #[arg(long, value_name = "N")]
        pub batch_size: Option<usize>,
        /// Learning rate.
        #[arg(long, value_name = "LR")]
        pub lr: Option<f32>,
        /// adam, adamw or sgd.
        #[arg(long, value_parser = parse_optimizer, value_name = "NAME")]
        pub optimizer: Option<OptimizerKind>,
        /// SGD momentum.
        #[arg(long)]
        pub momentum: Option<f32>,
        /// L2 penalty (Adam, SGD) or decoupled decay (AdamW).
        #[arg(long)]
        pub weight_decay: Option<f32>,
        /// Learning-rate schedule (cosine spans all epochs).
        #[arg(long, value_enum)]
        pub schedule: Option<ScheduleKind>,
        #[arg(long, value_name = "N", help = with_default(
            "Step schedule: epochs between decays.",
            LrSchedule::DEFAULT_STEP_SIZE,
        ))]
        pub step_size: Option<usize>,
        #[arg(long, help = with_default("Step schedule: decay factor.", LrSchedule::DEFAULT_GAMMA))]
        pub gamma: Option<f32>,
        /// Seed of initialisation, shuffling and augmentation.
        #[arg(long)]
        pub seed: Option<u64>,
        /// Augment training images: random crop with padding 2 and horizontal flips (KD then runs
        /// the teacher online).
        #[arg(long)]
        pub augment: bool,
    }
}

options! {
    /// Hinton KD settings.
    #[derive(Args, Debug, Default, Clone)]
    #[command(next_help_heading = "Distillation")]
    pub struct KdOpts {
        // `distill run` and `distill distill` both start from KdConfig::default().
        #[arg(long, value_name = "T", help = with_default(
            "Softmax temperature T (> 0).",
            KdConfig::default().temperature,
        ))]
        pub temperature: Option<f32>,
        #[arg(long, help = with_default(
            "Weight of the distillation term, in [0, 1].",
            KdConfig::default().alpha,
        ))]
        pub alpha: Option<f32>,
    }
}

#[derive(Args, Debug, Default)]
pub struct BenchArgs {
    /// Smaller shapes and budgets (under a minute on 2 CPU cores).
    #[arg(long)]
    pub quick: bool,
    /// Also measure software adapters (lavapipe), with small shapes.
    #[arg(long)]
    pub software: bool,
    /// Write the JSON report to FILE (atomically).
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,
    /// Compare reports instead of measuring: a markdown table on stdout.
    #[arg(long, num_args = 1.., value_name = "REPORT.json")]
    pub compare: Vec<PathBuf>,
    /// With --compare: also draw the % of peak of every row as a PNG bar chart.
    #[arg(long, value_name = "FILE.png", requires = "compare")]
    pub chart: Option<PathBuf>,
    /// Run the kernel-study ladder instead: every rung checked on odd shapes, then timed
    /// against the device's measured peak (--device cpu, gpu or gpu:N; default cpu).
    #[arg(long, value_name = "matmul|conv", conflicts_with = "compare")]
    pub ladder: Option<String>,
    /// With --ladder: only check the rungs, time nothing.
    #[arg(long, requires = "ladder")]
    pub check_only: bool,
    /// Also write a record of every figure (docs/results/README.md): the figures, the
    /// machine, the date, the commit, this command and the load average around the run.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["compare", "ladder"])]
    pub record: Option<PathBuf>,
}

options! {
    #[derive(Args, Debug, Default)]
    pub struct RunArgs {
        /// Run directory. Default: runs/<YYYYmmdd-HHMMSS> (UTC). If it holds a config.json the
        /// run resumes.
        #[arg(long, value_name = "DIR")]
        pub out: Option<PathBuf>,
        /// Continue the interrupted run in DIR with its saved settings. Only the epochs of a model
        /// on a constant or step schedule may change: by default the teacher's (--teacher-epochs);
        /// the students' cosine spans the epochs they started with.
        #[arg(long, value_name = "DIR")]
        pub resume: Option<PathBuf>,
        #[arg(long, help = quick_help())]
        pub quick: bool,
        #[arg(long, value_name = "N", help = SEEDS_HELP)]
        pub seeds: Option<usize>,
        #[arg(long, value_name = "F", help = with_default(
            "Fraction of the labelled training images the students see, in (0, 1].",
            RunConfig::default().label_fraction,
        ))]
        pub label_fraction: Option<f64>,
        /// Use this teacher checkpoint instead of training one.
        #[arg(long, value_name = "CKPT")]
        pub teacher: Option<PathBuf>,
        #[arg(long, value_name = "N", help = with_default(
            "Teacher epochs.",
            RunConfig::default().teacher.epochs,
        ))]
        pub teacher_epochs: Option<usize>,
        #[arg(long, value_name = "labelled|all|DIR", help = with_default(
            "The KD student's transfer set: all (every training image, CE on the labelled ones, \
             soft targets on all), labelled (its labelled images only), or a folder of \
             unlabelled images added to the labelled ones.",
            RunConfig::default().transfer,
        ))]
        pub transfer: Option<String>,
        #[arg(long, value_name = "N", help = transfer_epochs_help())]
        pub transfer_epochs: Option<usize>,
        /// Train N teachers (seeds seed, seed+1, …) and distil their ensemble.
        #[arg(long, value_name = "N")]
        pub teachers: Option<usize>,
        #[arg(long, value_name = "probabilities|logits", help = with_default(
            "How an ensemble's outputs combine: probabilities or logits.",
            RunConfig::default().ensemble,
        ))]
        pub ensemble: Option<String>,
        #[arg(long, value_name = "SPEC", help = with_default(
            "The students' architecture: student, teacher, or a compact spec of the same layout \
             as those two presets: conv widths then the hidden width, e.g. c16-c32-f128.",
            RunConfig::default().student_arch,
        ))]
        pub student_arch: Option<String>,
        /// Also write f16 copies of the best checkpoints.
        #[arg(long)]
        pub half: bool,
        /// Also write a record of the headline figures (docs/results/README.md): the figures, the
        /// machine, the date, the commit, this command and the load average around the job.
        #[arg(long, value_name = "FILE.json")]
        pub record: Option<PathBuf>,
        #[command(flatten)]
        pub data: DataOpts,
        #[command(flatten)]
        pub hyper: HyperOpts,
        #[command(flatten)]
        pub kd: KdOpts,
    }
}

/// A stage of `distill study` that can run alone.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageArg {
    /// Train (or load) the teachers, measure their ensemble, write journal/teachers.json.
    Teachers,
}

options! {
    #[derive(Args, Debug, Default)]
    // A study's --seeds is per method, with the study's own default.
    #[command(mut_arg("seeds", |a| a.help(with_default(
        &format!("{SEEDS_HELP}."),
        study::DEFAULT_SEEDS,
    ))))]
    pub struct StudyArgs {
        #[arg(long, value_name = "LIST", help = with_default(
            "Methods, comma-separated: ce, kd, kd-transfer, kd-ensemble, hint.",
            method_list(&study::DEFAULT_METHODS),
        ))]
        pub methods: Option<String>,
        #[arg(long, value_name = "W", help = with_default(
            "The `hint` method's weight.",
            study::default_hint().weight,
        ))]
        pub hint_weight: Option<f32>,
        #[arg(long, value_name = "S:T", help = with_default(
            "The `hint` method's layers, student:teacher.",
            study::default_hint().layers(),
        ))]
        pub hint_layers: Option<String>,
        /// Run one stage of the study only: `teachers` trains (or loads) the teachers into the
        /// study directory (--out) and stops. The student runs then go to --shard tasks, and
        /// --merge writes the report.
        #[arg(long, value_enum, value_name = "teachers")]
        cli stage: Option<StageArg>,
        /// Train only the I-th of N balanced slices of the student runs (I from 1), against the
        /// teachers the teachers stage left in the study directory (--out); writes no report.
        /// auto/N: I from the batch system (Slurm's SLURM_ARRAY_TASK_ID less
        /// SLURM_ARRAY_TASK_MIN, or Kubernetes' JOB_COMPLETION_INDEX); auto: N from
        /// SLURM_ARRAY_TASK_COUNT too.
        #[arg(long, value_name = "I/N|auto/N|auto", conflicts_with = "stage")]
        cli shard: Option<String>,
        /// Train the student runs on several devices at once, one run per entry at a time
        /// (comma-separated, as --device takes them; an entry may repeat: gpu:0,gpu:0,cpu). The
        /// teachers train on the first.
        #[arg(long, value_name = "LIST")]
        cli devices: Option<String>,
        /// Write study.md, study_report.json and the plot of the study in DIR from the runs that
        /// have finished (in any shard), naming those that have not. Trains nothing.
        #[arg(long, value_name = "DIR", conflicts_with_all = ["stage", "shard", "devices"])]
        cli merge: Option<PathBuf>,
        // The run settings every method shares (--seeds: seeds per method; --out / --resume: the
        // study directory, resumed when it holds a study.json).
        #[command(flatten)]
        pub run: RunArgs,
    }
}

options! {
    #[derive(Args, Debug, Default)]
    pub struct TrainArgs {
        /// The architecture: teacher, student, or a compact spec of the same layout such as
        /// c16-c32-f128 (conv widths, then the hidden width).
        #[arg(long, value_name = "ARCH")]
        pub arch: Option<String>,
        /// Checkpoint directory (best/last safetensors, metrics.jsonl). Default: runs/<timestamp>-<arch>.
        /// An existing one with a last.state.safetensors is resumed.
        #[arg(long, value_name = "DIR")]
        pub out: Option<PathBuf>,
        /// Also write best.f16.safetensors.
        #[arg(long)]
        pub half: bool,
        #[command(flatten)]
        pub data: DataOpts,
        #[command(flatten)]
        pub hyper: HyperOpts,
    }
}

options! {
    #[derive(Args, Debug, Default)]
    pub struct DistillArgs {
        /// The teacher checkpoint; repeat it to distil an ensemble (distill checkpoints or PyTorch
        /// state_dicts, in any mix).
        #[arg(long, value_name = "CKPT")]
        pub teacher: Vec<PathBuf>,
        #[arg(long, value_name = "probabilities|logits", help = with_default(
            "How an ensemble's outputs combine: probabilities (the mean of the tempered \
             probabilities) or logits (the mean of the logits).",
            distill_defaults().ensemble,
        ))]
        pub ensemble: Option<String>,
        #[arg(long, alias = "student-arch", value_name = "ARCH", help = with_default(
            "The student's architecture: student, teacher, or a compact spec such as \
             c16-c32-f128 (conv widths, then the hidden width).",
            pipeline::DEFAULT_STUDENT_ARCH,
        ))]
        pub arch: Option<String>,
        #[arg(long, value_name = "F", help = with_default(
            "Fraction of the labelled training images to use, in (0, 1].",
            distill_defaults().label_fraction,
        ))]
        pub label_fraction: Option<f64>,
        #[arg(long, value_name = "labelled|all|DIR", help = with_default(
            "The transfer set: labelled, all (soft targets on every training image, CE on the \
             labelled fraction), or a folder of unlabelled images added to the labelled ones.",
            distill_defaults().transfer,
        ))]
        pub transfer: Option<String>,
        /// Checkpoint directory. Default: runs/<timestamp>-kd. An existing one is resumed.
        #[arg(long, value_name = "DIR")]
        pub out: Option<PathBuf>,
        /// Also write best.f16.safetensors.
        #[arg(long)]
        pub half: bool,
        #[command(flatten)]
        pub data: DataOpts,
        #[command(flatten)]
        pub hyper: HyperOpts,
        #[command(flatten)]
        pub kd: KdOpts,
        #[arg(long, value_name = "W", help_heading = "Distillation", help = with_default(
            "Weight of the feature hint term (FitNets): the MSE between the student's feature \
             map, through a learned 1x1 conv, and the teacher's.",
            distill_hint_weight(),
        ))]
        pub hint_weight: Option<f32>,
        // The layers a hint given by its weight alone takes.
        #[arg(long, value_name = "S:T", help_heading = "Distillation", help = with_default(
            "The hint's feature layers, STUDENT:TEACHER: conv1, conv2 (a conv's output after its \
             ReLU, before the pool) or pool1, pool2.",
            HintConfig::DEFAULT_LAYERS,
        ))]
        pub hint_layers: Option<String>,
    }
}

options! {
    #[derive(Args, Debug, Default)]
    pub struct EvalArgs {
        /// A checkpoint written by distill, or a PyTorch state_dict of modules of the same layout
        /// (conv1…convK, fc1, fc2).
        cli checkpoint: PathBuf,
        /// Dataset folder whose test split to use (default: the shipped Fashion-MNIST).
        #[arg(long, value_name = "PATH")]
        pub data: Option<PathBuf>,
        /// Use only the first N test images.
        #[arg(long, value_name = "N")]
        pub max_test: Option<usize>,
        #[arg(long, value_name = "N")]
        pub batch_size: Option<usize>,
        /// Also print the confusion matrix and per-class accuracy.
        #[arg(long)]
        pub confusion: bool,
        /// Also draw the confusion matrix into this PNG.
        #[arg(long, value_name = "FILE.png")]
        pub confusion_png: Option<PathBuf>,
    }
}

options! {
    #[derive(Args, Debug, Default)]
    pub struct PredictArgs {
        cli checkpoint: PathBuf,
        /// Image files (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM, TGA); converted to the checkpoint's
        /// channels and size.
        #[arg(required = true, value_name = "IMAGE")]
        cli images: Vec<PathBuf>,
        #[arg(
            long,
            value_name = "K",
            help = with_default("How many classes to print per image.", pipeline::DEFAULT_TOP_K)
        )]
        pub top_k: Option<usize>,
        /// For a checkpoint without distill metadata (a bare PyTorch state_dict): the dataset it
        /// was trained on, which gives its input size, normalisation and class names (default:
        /// the shipped Fashion-MNIST).
        #[arg(long, value_name = "PATH")]
        pub data: Option<PathBuf>,
    }
}

/// The `--config` file: a TOML table whose keys are the long flags of the option structs
/// above (snake_case or kebab-case). Each option struct takes its own keys from it
/// ([`FromFile`]); a key that no struct declares is an error.
#[derive(Debug, Default, Clone)]
pub struct FileConfig {
    path: PathBuf,
    table: toml::Table,
}

impl FileConfig {
    /// Reads a TOML file; keys may be kebab-case or snake_case. Every key must be a setting
    /// of some subcommand, of the type that setting takes.
    pub fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config file {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("{}: not valid TOML", path.display()))?;
        let mut normalised = toml::Table::new();
        for (key, value) in table {
            let snake = key.replace('-', "_");
            if normalised.contains_key(&snake) {
                bail!(
                    "{}: the key '{key}' is given twice (snake_case and kebab-case)",
                    path.display()
                );
            }
            normalised.insert(snake, value);
        }
        let file = FileConfig {
            path: path.to_path_buf(),
            table: normalised,
        };
        file.check()?;
        Ok(file)
    }

    /// Every key known, and of its setting's type, whichever subcommand runs.
    fn check(&self) -> Result<()> {
        let mut known = Vec::new();
        Global::keys("", &mut known);
        StudyArgs::keys("", &mut known);
        TrainArgs::keys("", &mut known);
        DistillArgs::keys("", &mut known);
        EvalArgs::keys("", &mut known);
        PredictArgs::keys("", &mut known);
        if let Some(key) = self.table.keys().find(|k| !known.contains(&k.as_str())) {
            bail!("{}: unknown field `{key}`", self.path.display());
        }
        Global::default().fill_from("", self)?;
        StudyArgs::default().fill_from("", self)?;
        TrainArgs::default().fill_from("", self)?;
        DistillArgs::default().fill_from("", self)?;
        EvalArgs::default().fill_from("", self)?;
        PredictArgs::default().fill_from("", self)
    }

    /// The value of `key` as a `T`, when the file has the key.
    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.table.get(key) {
            None => Ok(None),
            Some(v) => T::deserialize(v.clone()).map(Some).map_err(|e| {
                anyhow::anyhow!("{}: {key}: {}", self.path.display(), e.message().trim())
            }),
        }
    }
}

/// A setting (or a group of them) that the `--config` file can give: a flag wins, the file
/// fills what the flags left unset.
pub trait FromFile {
    /// Takes `key` (a group: each of its own keys) from `file` where the flag left it unset.
    fn fill_from(&mut self, key: &str, file: &FileConfig) -> Result<()>;
    /// The file keys this setting answers to.
    fn keys(key: &'static str, out: &mut Vec<&'static str>) {
        out.push(key);
    }
}

impl<T: DeserializeOwned> FromFile for Option<T> {
    fn fill_from(&mut self, key: &str, file: &FileConfig) -> Result<()> {
        let value = file.get(key)?;
        if self.is_none() {
            *self = value;
        }
        Ok(())
    }
}

/// A switch: on when the flag or the file turns it on.
impl FromFile for bool {
    fn fill_from(&mut self, key: &str, file: &FileConfig) -> Result<()> {
        *self |= file.get(key)?.unwrap_or(false);
        Ok(())
    }
}

/// A repeatable flag: the file gives one value, used when the flag is absent.
impl<T: DeserializeOwned> FromFile for Vec<T> {
    fn fill_from(&mut self, key: &str, file: &FileConfig) -> Result<()> {
        let value = file.get(key)?;
        if self.is_empty() {
            self.extend(value);
        }
        Ok(())
    }
}

/// The help names the library's defaults and this file writes none (the help of each flag is
/// checked against the library in tests/cli/options.rs).
#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// This file without its tests.
    fn code() -> &'static str {
        let all = include_str!("args.rs");
        &all[..all.find("#[cfg(test)]").expect("the tests are marked")]
    }

    /// Whether `line` states a default as a number: `default` (any case), then spaces, colons
    /// or an opening parenthesis, then a digit.
    fn states_a_number_as_default(line: &str) -> bool {
        let lower = line.to_ascii_lowercase();
        lower.match_indices("default").any(|(i, word)| {
            lower[i + word.len()..]
                .trim_start_matches([' ', ':', '('])
                .starts_with(|c: char| c.is_ascii_digit())
        })
    }

    /// The arguments, as written, of every call `name(…)` in `src` (not its definition).
    fn calls<'a>(src: &'a str, name: &str) -> Vec<Vec<&'a str>> {
        let open = format!("{name}(");
        let mut out = Vec::new();
        for (at, _) in src.match_indices(&open) {
            if src[..at].ends_with("fn ") {
                continue;
            }
            let start = at + open.len();
            let (mut depth, mut in_str, mut escaped) = (1, false, false);
            let mut args = Vec::new();
            let mut from = start;
            for (i, c) in src[start..].char_indices() {
                let i = start + i;
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_str => escaped = true,
                    '"' => in_str = !in_str,
                    _ if in_str => {}
                    '(' | '[' | '{' => depth += 1,
                    ',' if depth == 1 => {
                        args.push(src[from..i].trim());
                        from = i + 1;
                    }
                    ')' | ']' | '}' => {
                        depth -= 1;
                        if depth == 0 {
                            args.push(src[from..i].trim());
                            break;
                        }
                    }
                    _ => {}
                }
            }
            args.retain(|a| !a.is_empty());
            out.push(args);
        }
        out
    }

    #[test]
    fn no_default_is_written_by_hand() {
        let written: Vec<&str> = code()
            .lines()
            .filter(|l| states_a_number_as_default(l))
            .collect();
        assert!(
            written.is_empty(),
            "src/cli/args.rs states defaults by hand; take them from the library with \
             with_default:\n{}",
            written.join("\n")
        );
        assert!(
            !code().contains("default_value"),
            "a clap default_value in src/cli/args.rs: the default belongs to the library"
        );
        let uses = calls(code(), "with_default");
        assert!(uses.len() >= 15, "with_default calls found: {uses:?}");
        for args in uses {
            let value = args.last().copied().unwrap_or_default();
            let literal = value.starts_with(|c: char| c.is_ascii_digit() || c == '"' || c == '-');
            assert!(
                args.len() == 2 && !literal,
                "with_default({}): the default must be the library's value, not a literal",
                args.join(", ")
            );
        }
    }

    #[test]
    fn the_scan_finds_what_it_looks_for() {
        for hand in [
            "/// Teacher epochs (default 5).",
            "/// Softmax temperature T (> 0). Default 4.",
            "/// Step schedule: decay factor (default: 0.1)",
            "help = \"Fraction. Default: 0.1\"",
            "/// Seeds per method, default 3.",
        ] {
            assert!(states_a_number_as_default(hand), "{hand}");
        }
        for fine in [
            "/// Default: runs/<YYYYmmdd-HHMMSS> (UTC).",
            "/// Default: $DISTILL_DEVICE, else auto.",
            "/// by default the teacher's (--teacher-epochs)",
        ] {
            assert!(!states_a_number_as_default(fine), "{fine}");
        }
        let src = "help = with_default(\"A (b, c) \\\"d\\\".\", X::default().e(1, 2),)";
        assert_eq!(
            calls(src, "with_default"),
            [["\"A (b, c) \\\"d\\\".\"", "X::default().e(1, 2)"]]
        );
        assert_eq!(
            calls("with_default(\"T.\", 5)", "with_default"),
            [["\"T.\"", "5"]]
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

/// Structured mutation test of [`FileConfig::load`] (the other parsers' are in `tests/fuzz`;
/// see `docs/fuzzing.md`): valid TOML files with every key, mutated thousands of times with a
/// fixed seed. Every case must give a config or an error naming the file, without a panic
/// or an allocation over 64 MiB + 64 × the file's size.
#[cfg(test)]
mod fuzz {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use distill::rng::Rng;

    use super::*;

    thread_local! {
        /// The largest single allocation of this thread since the last reset. Per thread: the
        /// TOML parser runs on the caller's thread, and other tests of this binary run beside.
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    struct Counting;

    fn note(size: usize) {
        let _ = PEAK.try_with(|p| p.set(p.get().max(size)));
    }

    // SAFETY: every call is forwarded to `System` unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    const SEEDS: [&str; 3] = [
        "device = \"cpu\"\njson = true\nquiet = false\nprofile = false\ndata = \"datasets/x\"\n\
         max-train = 6000\nmax_test = 2000\nepochs = 3\nteacher_epochs = 1\nbatch-size = 128\n\
         lr = 0.001\noptimizer = \"sgd\"\nmomentum = 0.9\nweight_decay = 0.0005\n\
         schedule = \"step\"\nstep_size = 10\ngamma = 0.1\nseed = 42\naugment = true\n",
        "temperature = 4.0\nalpha = 0.9\nhint-weight = 0.5\nhint_layers = \"conv2:conv2\"\nout = \"runs/a\"\nresume = \"runs/b\"\nquick = true\n\
         record = \"r.json\"\nseeds = 3\nlabel-fraction = 0.1\nteacher = \"t.safetensors\"\nhalf = true\n\
         arch = \"student\"\nconfusion = true\nconfusion_png = \"c.png\"\ntop_k = 5\n",
        "# comment\nschedule = 'cosine'\noptimizer = \"adamw\"\nlr = 1e-3\nseed = 0\n\
         transfer = \"all\"\ntransfer_epochs = 3\nstudent-arch = \"c8-f16\"\nteachers = 2\n\
         ensemble = \"logits\"\nmethods = \"ce,kd\"\n",
    ];

    const NUMBERS: [&str; 12] = [
        "0",
        "-1",
        "1",
        "4294967296",
        "9223372036854775807",
        "18446744073709551616",
        "1e308",
        "1e999",
        "nan",
        "-inf",
        "0x7FFFFFFF",
        "1979-05-27",
    ];

    /// One mutation of TOML text.
    fn mutate(rng: &mut Rng, t: &mut Vec<u8>) {
        let len = t.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                t[i] ^= 1 << rng.below(8);
            }
            1 => t.truncate(rng.below(len + 1)),
            2 => {
                // A number (or what follows a `=`) set to an extreme.
                let eqs: Vec<usize> = (0..len).filter(|&i| t[i] == b'=').collect();
                if let Some(&at) = eqs.get(rng.below(eqs.len().max(1))) {
                    let end = (at..len).find(|&i| t[i] == b'\n').unwrap_or(len);
                    let v = format!("= {}", NUMBERS[rng.below(NUMBERS.len())]);
                    t.splice(at..end, v.into_bytes());
                }
            }
            3 if len > 0 => {
                // A line repeated (a key given twice) or deleted.
                let lines: Vec<Vec<u8>> = t.split(|&b| b == b'\n').map(|l| l.to_vec()).collect();
                let k = rng.below(lines.len());
                let mut out = lines.clone();
                if rng.below(2) == 0 {
                    out.insert(k, lines[k].replace_underscores());
                } else {
                    out.remove(k);
                }
                *t = out.join(&b'\n');
            }
            4 => {
                let at = rng.below(len + 1);
                let junk: &[&[u8]] = &[b"[", b"]]", b"\"", b"[t]\n", b"{a=1}", b"'''", b"\\u"];
                t.splice(at..at, junk[rng.below(junk.len())].iter().copied());
            }
            5 => {
                // Deep nesting: the parser must not overflow its stack.
                let n = 1 + rng.below(2000);
                let v = format!("\nx = {}{}\n", "[".repeat(n), "]".repeat(n));
                t.extend_from_slice(v.as_bytes());
            }
            _ => {
                let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                let (a, b) = (rng.below(len + 1), rng.below(other.len() + 1));
                t.truncate(a);
                t.extend_from_slice(&other[b..]);
            }
        }
    }

    trait Kebab {
        fn replace_underscores(&self) -> Vec<u8>;
    }
    impl Kebab for Vec<u8> {
        fn replace_underscores(&self) -> Vec<u8> {
            self.iter()
                .map(|&b| if b == b'_' { b'-' } else { b })
                .collect()
        }
    }

    #[test]
    fn config_toml_files() {
        // In memory where possible: rewriting a file thousands of times on a busy disk waits
        // on the file system.
        let shm = Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let path = dir.path().join("config.toml");
        for s in SEEDS {
            std::fs::write(&path, s).unwrap();
            FileConfig::load(&path).unwrap_or_else(|e| panic!("{e:#}: {s}"));
        }
        let seed = 0x70_4D1;
        let mut rng = Rng::new(seed);
        let mut failures = Vec::new();
        for i in 0..3000 {
            let mut t = SEEDS[rng.below(SEEDS.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(3) {
                mutate(&mut rng, &mut t);
            }
            std::fs::write(&path, &t).unwrap();
            PEAK.with(|p| p.set(0));
            let outcome = catch_unwind(AssertUnwindSafe(|| match FileConfig::load(&path) {
                // `load` has filled every subcommand's options from it.
                Ok(_) => Ok(()),
                Err(e) if format!("{e:#}").contains(&*path.to_string_lossy()) => Ok(()),
                Err(e) => Err(format!("the error does not name the file: {e:#}")),
            }));
            let peak = PEAK.with(|p| p.get());
            let bound = (64 << 20) + 64 * t.len();
            let problem = match outcome {
                Err(_) => Some("panicked".to_string()),
                Ok(Err(e)) => Some(e),
                Ok(Ok(())) if peak > bound => Some(format!("allocated {peak} bytes at once")),
                Ok(Ok(())) => None,
            };
            if let Some(p) = problem {
                failures.push(format!(
                    "case {i} (seed {seed}): {p}\n{}",
                    String::from_utf8_lossy(&t)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n---\n"));
    }
}
