//! `cargo bench --bench train`: training and inference throughput of the teacher and student
//! presets on the CPU and every GPU adapter, and the PyTorch yardstick beside the CPU's
//! figures. A thin
//! caller of `distill::bench` (the same code as `distill bench`; see docs/bench.md): it
//! prints the table, then distill and PyTorch side by side with the ratio, from the same run
//! (`benches/pytorch_yardstick.py` run by `$DISTILL_PYTHON`, else `python3`; one line says
//! it was skipped where torch is not importable), and writes the JSON report to
//! `$CARGO_TARGET_DIR/bench-train.json` (or `target/bench-train.json`).
//!
//! No flags (cargo passes `--bench`): `DISTILL_BENCH_QUICK=1`, `DISTILL_BENCH_DEVICE=all|cpu|
//! gpu|gpu:N`, `DISTILL_BENCH_SOFTWARE=1` (lavapipe too).

use std::path::Path;
use std::process::ExitCode;

use distill::bench::yardstick::{self, Outcome};
use distill::bench::{self, BenchConfig, Row, Sections};

fn main() -> ExitCode {
    let sections = Sections {
        peaks: false,
        kernels: false,
        train: true,
    };
    let cfg = match BenchConfig::from_env(sections) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("train bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match bench::run(&cfg, &mut bench::Lines) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("train bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", bench::render_table(&report));

    let cpu_rows: Vec<Row> = report
        .rows
        .iter()
        .filter(|r| r.device == "cpu")
        .cloned()
        .collect();
    if !cpu_rows.is_empty() {
        let threads = report.machine.threads;
        let seconds = if cfg.quick { 0.5 } else { 2.0 };
        let script = yardstick::default_script();
        println!();
        match yardstick::run(&yardstick::python(), &script, threads, seconds) {
            Ok(Outcome::Ran(y)) => println!("{}", yardstick::side_by_side(&cpu_rows, &y)),
            Ok(Outcome::Skipped(why)) => println!("PyTorch yardstick skipped: {why}"),
            Err(e) => println!("PyTorch yardstick failed: {e}"),
        }
    }

    let dir = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = Path::new(&dir).join("bench-train.json");
    match report.save(&path) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("\ncould not write {}: {e}", path.display()),
    }
    ExitCode::SUCCESS
}
