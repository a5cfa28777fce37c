//! The kernel-study ladders: check every rung, then time it, and print the table.
//!
//! `cargo bench --bench ladder -- [matmul|conv] [cpu|gpu|gpu:N] [--quick] [--peak GFLOPS]`
//! (default: matmul on the CPU). The work is `distill::ladder::run`; this only parses and
//! prints. `--peak` is the device's f32 peak in GFLOP/s, measured elsewhere (the kernels
//! bench prints the CPU's); rows then show the % of it. Exits 1 when a rung is wrong.

use distill::ladder::{self, LadderOp, LadderOptions, LadderTarget};

fn parse(args: &[String]) -> Result<LadderOptions, String> {
    let mut opts = LadderOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--bench" => {} // cargo passes it to harness = false targets
            "--quick" => opts.quick = true,
            "--check-only" => opts.check_only = true,
            "--peak" => {
                let v = it.next().ok_or("--peak needs a number of GFLOP/s")?;
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("--peak: not a number: {v}"))?;
                opts.peak_gflops = Some(p);
            }
            "cpu" => opts.target = LadderTarget::Cpu,
            "gpu" => opts.target = LadderTarget::Gpu(None),
            t if t.starts_with("gpu:") => {
                let i = t[4..]
                    .parse()
                    .map_err(|_| format!("bad device '{t}': expected gpu:N"))?;
                opts.target = LadderTarget::Gpu(Some(i));
            }
            other => opts.op = LadderOp::parse(other).map_err(|e| e.to_string())?,
        }
    }
    Ok(opts)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ladder bench: {e}");
            std::process::exit(2);
        }
    };
    match ladder::run(&opts, &mut |line| eprintln!("{line}")) {
        Ok(report) => {
            println!("{}", report.to_markdown());
            if !report.failures().is_empty() {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("ladder bench: {e}");
            std::process::exit(1);
        }
    }
}
