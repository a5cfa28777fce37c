//! `cargo bench --bench kernels`: each device's measured peaks and every kernel of the
//! `Backend` trait, on the CPU and every GPU adapter. A thin caller of `distill::bench` (the
//! same code as `distill bench`; see docs/bench.md): it prints the table and writes the JSON
//! report to `$CARGO_TARGET_DIR/bench-kernels.json` (or `target/bench-kernels.json`).
//!
//! No flags (cargo passes `--bench`): `DISTILL_BENCH_QUICK=1`, `DISTILL_BENCH_DEVICE=all|cpu|
//! gpu|gpu:N`, `DISTILL_BENCH_SOFTWARE=1` (lavapipe too).

use std::path::Path;
use std::process::ExitCode;

use distill::bench::{self, BenchConfig, Sections};

fn main() -> ExitCode {
    let sections = Sections {
        peaks: true,
        kernels: true,
        train: false,
    };
    let report =
        match BenchConfig::from_env(sections).and_then(|c| bench::run(&c, &mut bench::Lines)) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("kernel bench: {e}");
                return ExitCode::FAILURE;
            }
        };
    print!("{}", bench::render_table(&report));
    let dir = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = Path::new(&dir).join("bench-kernels.json");
    match report.save(&path) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("\ncould not write {}: {e}", path.display()),
    }
    ExitCode::SUCCESS
}
