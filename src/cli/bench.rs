//! `distill bench`: turns the flags into a [`BenchConfig`], calls [`distill::bench::run`] (or
//! [`compare_files`]) and prints the table, the JSON report or the comparison. Progress on
//! stderr in the style of progress.rs: a bar per device where stderr is a terminal, a line
//! per row otherwise.

use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use distill::bench::table::fmt_value;
use distill::bench::{
    compare_files, render_table, run_ladder, BenchConfig, DeviceChoice, Observer, Row, Sections,
};
use distill::bench::{record, reference};
use distill::ladder::LadderOp;

use super::args::BenchArgs;
use super::progress::Mode;
use super::Ctx;

/// `distill bench`.
pub fn bench(ctx: &Ctx, a: BenchArgs) -> Result<()> {
    if !a.compare.is_empty() {
        let cmp = compare_files(&a.compare)?;
        if let Some(png) = &a.chart {
            cmp.chart(png)
                .with_context(|| format!("cannot write the chart {}", png.display()))?;
            ctx.note(&format!("wrote {}", png.display()));
        }
        print!("{}", cmp.markdown());
        return Ok(());
    }
    if let Some(op) = &a.ladder {
        let op = LadderOp::parse(op)?;
        let devices = DeviceChoice::parse(ctx.global.device.as_deref().unwrap_or("cpu"))?;
        let mut progress = BenchProgress::new(ctx.mode);
        let options = ctx.device_options();
        let report = run_ladder(op, devices, a.quick, a.check_only, &options, &mut progress)?;
        progress.finish();
        println!("{}", report.to_markdown());
        let failures = report.failures();
        if !failures.is_empty() {
            anyhow::bail!(
                "{} rung(s) gave wrong results (see the table)",
                failures.len()
            );
        }
        return Ok(());
    }
    let devices = DeviceChoice::parse(ctx.global.device.as_deref().unwrap_or("all"))?;
    let cfg = BenchConfig {
        quick: a.quick,
        devices,
        software: a.software,
        sections: Sections {
            peaks: true,
            kernels: true,
            train: true,
        },
        tiles: ctx.device_options().tiles,
    };
    let mut progress = BenchProgress::new(ctx.mode);
    let report = distill::bench::run(&cfg, &mut progress)?;
    progress.finish();
    keep_reference(ctx, &report);
    if let Some(path) = &a.record {
        write_record(&report, path)?;
        ctx.note(&format!("wrote {}", path.display()));
    }
    if let Some(out) = &a.out {
        report
            .save(out)
            .with_context(|| format!("cannot write the report {}", out.display()))?;
        ctx.note(&format!("wrote {}", out.display()));
    }
    if ctx.global.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", render_table(&report));
    }
    Ok(())
}

/// Keeps the report as this machine's reference peaks when the machine was quiet (runs read
/// their floor against them), and says where or why not.
fn keep_reference(ctx: &Ctx, report: &distill::bench::Report) {
    let Some(dir) = reference::default_dir() else {
        ctx.note("no cache directory (set DISTILL_CACHE_DIR or HOME): the peaks are not kept for runs' floors");
        return;
    };
    match reference::keep_if_quiet(report, &dir) {
        Ok(Ok(files)) => {
            for f in files {
                ctx.note(&format!(
                    "kept as this machine's reference peaks: {}",
                    f.display()
                ));
            }
        }
        Ok(Err(why)) => ctx.note(&why),
        Err(e) => ctx.note(&format!("warning: the reference peaks were not kept: {e}")),
    }
}

/// `--record FILE`: every figure of the report, with the machine, this command and the load.
fn write_record(report: &distill::bench::Report, path: &std::path::Path) -> Result<()> {
    let devices: Vec<&str> = report
        .devices
        .iter()
        .filter(|d| d.status == distill::bench::Status::Ok)
        .map(|d| d.name.as_str())
        .collect();
    let adapter = report.devices.iter().find_map(|d| d.adapter.as_ref());
    let what = format!(
        "`distill bench`{} on {}",
        if report.quick { " --quick" } else { "" },
        devices.join(", ")
    );
    let rec = record::Record::measured(
        &what,
        record::bench_figures(report),
        record::MachineRecord::of(&report.machine, &devices.join(", "), adapter),
        record::command_line(),
        report
            .load
            .clone()
            .unwrap_or_else(distill::bench::load::LoadWindow::start_here),
    );
    rec.save(path)
        .with_context(|| format!("cannot write the record {}", path.display()))
}

/// Progress of a bench run on stderr.
struct BenchProgress {
    mode: Mode,
    bar: Option<ProgressBar>,
    device: String,
    errors: usize,
}

impl BenchProgress {
    fn new(mode: Mode) -> BenchProgress {
        BenchProgress {
            mode,
            bar: None,
            device: String::new(),
            errors: 0,
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        if self.mode == Mode::Lines && !self.device.is_empty() {
            eprintln!("{}: done ({} rows with errors)", self.device, self.errors);
        }
    }
}

impl Observer for BenchProgress {
    fn device(&mut self, id: &str, name: &str, steps: usize) {
        self.finish();
        self.device = id.to_string();
        self.errors = 0;
        match self.mode {
            Mode::Quiet => {}
            Mode::Lines => eprintln!("{id}: {name}: measuring {steps} rows"),
            Mode::Bars => {
                let bar =
                    ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
                bar.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>8} [{bar:24}] {pos}/{len}  {msg}  {elapsed_precise}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar.set_prefix(id.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                self.bar = Some(bar);
            }
        }
    }

    fn row(&mut self, row: &Row) {
        if row.error.is_some() {
            self.errors += 1;
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("{} {}", row.kernel, row.shape));
        } else if self.mode == Mode::Lines {
            let what = match (row.value, &row.error) {
                (Some(v), _) => format!("{} {}", fmt_value(v), row.unit.name()),
                (None, Some(e)) => e.clone(),
                (None, None) => "-".into(),
            };
            eprintln!("  {} {} {}: {what}", row.device, row.kernel, row.shape);
        }
    }

    fn message(&mut self, text: &str) {
        match (&self.bar, self.mode) {
            (_, Mode::Quiet) => {}
            (Some(bar), _) => bar.println(text),
            (None, _) => eprintln!("{text}"),
        }
    }
}
