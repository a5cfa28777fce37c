//! The `distill` command line: parsing (`args`), progress (`progress`), the subcommands
//! (`commands`), and the shared pieces here (devices, errors, output).

mod args;
mod bench;
mod commands;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use distill::{Device, DeviceOptions, Error, TilePolicy};

use args::{Cli, Command, FileConfig, FromFile, Global};

/// Exit code of a run whose loss became NaN or infinite.
const EXIT_DIVERGED: u8 = 3;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

/// Ctrl-C: a training in progress stops at the end of its batch and keeps its finished epochs;
/// anything else (or a second Ctrl-C) ends the process at once, which loses nothing, as every
/// file is written atomically.
fn handle_ctrl_c() {
    let installed = ctrlc::set_handler(|| {
        if distill::train::interrupt::request_stop() {
            eprintln!("\nstopping at the end of this batch (Ctrl-C again to quit now)");
        } else {
            eprintln!("\ninterrupted");
            std::process::exit(EXIT_INTERRUPTED.into());
        }
    });
    if let Err(e) = installed {
        eprintln!("warning: no Ctrl-C handler ({e}); Ctrl-C ends the process at once");
    }
}

/// With this variable set (to anything), `distill ARGS` only parses ARGS with the command
/// line's definitions and exits: 0 when they parse, 2 with clap's message when not. Nothing
/// runs and nothing is written: `tests/doc_figures.rs` uses it to check that every command a
/// record names still parses.
pub const PARSE_ONLY_VAR: &str = "DISTILL_PARSE_ONLY";

pub fn main() -> ExitCode {
    if std::env::var_os(PARSE_ONLY_VAR).is_some() {
        return match Cli::try_parse() {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) if !e.use_stderr() => ExitCode::SUCCESS, // --help, --version
            Err(e) => {
                let _ = e.print();
                ExitCode::from(2)
            }
        };
    }
    let cli = Cli::parse();
    handle_ctrl_c();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            for (i, cause) in e.chain().enumerate() {
                let lead = if i == 0 { "error:" } else { "  caused by:" };
                eprintln!("{lead} {}", in_flags(cause));
            }
            let cause = |f: fn(&Error) -> bool| e.chain().any(|c| c.downcast_ref().is_some_and(f));
            if cause(|e| matches!(e, Error::Diverged(_))) {
                eprintln!("  (try a lower --lr)");
                ExitCode::from(EXIT_DIVERGED)
            } else if cause(|e| matches!(e, Error::Interrupted(_))) {
                ExitCode::from(EXIT_INTERRUPTED)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A cause as the user should read it: a library setting by the flag that sets it.
fn in_flags(cause: &(dyn std::error::Error + 'static)) -> String {
    match cause.downcast_ref::<Error>() {
        Some(Error::InvalidSetting { key, reason }) => {
            format!("--{} {reason}", key.replace('_', "-"))
        }
        _ => cause.to_string(),
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    // A SIMD level the CPU cannot run is refused here, before any kernel falls back silently.
    distill::check_simd_request()?;
    let mut global = cli.global;
    let file = match &global.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    global.fill(&file)?;
    let ctx = Ctx::new(global);
    match cli.command {
        Command::Run(mut a) => {
            a.fill_from("", &file)?;
            commands::run(&ctx, a)
        }
        Command::Train(mut a) => {
            a.fill_from("", &file)?;
            commands::train(&ctx, a)
        }
        Command::Distill(mut a) => {
            a.fill_from("", &file)?;
            commands::distill(&ctx, a)
        }
        Command::Eval(mut a) => {
            a.fill_from("", &file)?;
            commands::eval(&ctx, a)
        }
        Command::Predict(mut a) => {
            a.fill_from("", &file)?;
            commands::predict(&ctx, a)
        }
        Command::Study(mut a) => {
            a.fill_from("", &file)?;
            commands::study(&ctx, a)
        }
        Command::Devices => devices(&ctx),
        Command::Bench(a) => bench::bench(&ctx, a),
    }
}

/// What every subcommand knows: output mode and the device choice.
pub struct Ctx {
    pub global: Global,
    pub mode: progress::Mode,
}

impl Ctx {
    fn new(global: Global) -> Ctx {
        let mode = progress::Mode::choose(global.quiet, global.json);
        Ctx { global, mode }
    }

    fn device_spec(&self) -> String {
        self.global.device.clone().unwrap_or_else(|| "auto".into())
    }

    /// How devices open: `--no-autotune` (or `DISTILL_AUTOTUNE=0`) builds a GPU with the
    /// default tiles.
    pub fn device_options(&self) -> DeviceOptions {
        let tiles = if self.global.no_autotune {
            TilePolicy::Defaults
        } else {
            TilePolicy::unless_off(std::env::var("DISTILL_AUTOTUNE").ok().as_deref())
        };
        // The CPU's SIMD level: DISTILL_CPU, checked at start-up, is the process's level.
        DeviceOptions { tiles, simd: None }
    }

    /// Opens the device (`--device`, `$DISTILL_DEVICE`, the config file, else `auto`) with
    /// [`Ctx::device_options`] and, with `--profile`, turns on kernel timing where the device
    /// has it.
    pub fn open_device(&self) -> Result<Device> {
        self.open_spec(&self.device_spec())
    }

    /// Opens the device `spec` as [`Ctx::open_device`] does.
    pub fn open_spec(&self, spec: &str) -> Result<Device> {
        let device = Device::open(spec, &self.device_options())?;
        if self.global.profile && !device.set_profiling(true)? {
            self.note(&format!(
                "--profile: {} cannot time its kernels (no timestamp queries); ignored",
                device.name()
            ));
        }
        Ok(device)
    }

    /// With `--profile`: the time per kernel, slowest first, on stderr.
    pub fn print_profile(&self, device: &Device) -> Result<()> {
        if !self.global.profile {
            return Ok(());
        }
        let rows = device.kernel_times()?;
        if rows.is_empty() {
            return Ok(());
        }
        let total: f64 = rows.iter().map(|r| r.total_ms).sum();
        eprintln!(
            "GPU time per kernel on {} (total {total:.1} ms):",
            device.name()
        );
        eprintln!(
            "{:<32} {:>10} {:>12} {:>10} {:>7}",
            "kernel", "calls", "total ms", "µs/call", "share"
        );
        for r in rows {
            eprintln!(
                "{:<32} {:>10} {:>12.2} {:>10.1} {:>6.1}%",
                r.name,
                r.calls,
                r.total_ms,
                1e3 * r.total_ms / r.calls.max(1) as f64,
                100.0 * r.total_ms / total.max(1e-12)
            );
        }
        Ok(())
    }

    /// A remark on stderr (hidden by --quiet).
    pub fn note(&self, text: &str) {
        if self.mode != progress::Mode::Quiet {
            eprintln!("{text}");
        }
    }

    /// Prints `value` as pretty JSON on stdout.
    pub fn print_json(&self, value: &impl serde::Serialize) -> Result<()> {
        println!(
            "{}",
            serde_json::to_string_pretty(value).context("cannot serialise the output")?
        );
        Ok(())
    }
}

/// `distill devices`.
fn devices(ctx: &Ctx) -> Result<()> {
    let found = distill::devices(&ctx.device_options());
    if ctx.global.json {
        let list: Vec<serde_json::Value> = found
            .adapters
            .iter()
            .map(|a| {
                serde_json::json!({
                    "spec": format!("gpu:{}", a.index),
                    "index": a.index,
                    "name": a.name,
                    "backend": a.backend,
                    "device_type": a.device_type,
                    "driver": a.driver,
                    "driver_info": a.driver_info,
                    "max_storage_buffer_binding_size": a.max_storage_buffer_binding_size,
                    "max_buffer_size": a.max_buffer_size,
                    "max_compute_workgroup_size_x": a.max_compute_workgroup_size_x,
                    "max_compute_invocations_per_workgroup": a.max_compute_invocations_per_workgroup,
                    "max_compute_workgroup_storage_size": a.max_compute_workgroup_storage_size,
                    "shader_f16": a.shader_f16,
                    "subgroup": a.subgroup,
                    "timestamp_query": a.timestamp_query,
                    "gemm_tiles": a.tiles,
                })
            })
            .collect();
        return ctx.print_json(&serde_json::json!({
            "adapters": list,
            "cpu": found.cpu,
            "auto": found.auto.as_ref().ok(),
        }));
    }
    if found.adapters.is_empty() {
        println!("no GPU adapters (Vulkan, Metal, DX12) found");
    }
    for a in &found.adapters {
        println!("{a}");
    }
    let cpu = &found.cpu;
    // The name already says the SIMD level and the threads.
    println!("cpu  {} (rayon + SIMD kernels)", cpu.name);
    println!("     GEMM blocking: {}", cpu.gemm_blocking);
    match found.auto {
        Ok(name) => println!(
            "--device auto picks: {name}  (a hardware GPU when there is one, else the CPU backend; \
             software ones only with --device gpu or gpu:N)"
        ),
        Err(e) => println!("--device auto fails: {e}"),
    }
    Ok(())
}

/// `runs/<YYYYmmdd-HHMMSS><suffix>` (UTC), made unique with `-2`, `-3`, … when taken.
pub fn default_run_dir(suffix: &str) -> PathBuf {
    let (_, time) = distill::calendar::utc_now(); // YYYY-MM-DDTHH:MM:SSZ
    let stamp: String = time
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let base = Path::new("runs").join(format!("{stamp}{suffix}"));
    let mut dir = base.clone();
    let mut n = 2;
    while dir.exists() {
        dir = PathBuf::from(format!("{}-{n}", base.display()));
        n += 1;
    }
    dir
}
