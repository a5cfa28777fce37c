//! Measure this machine from code: the CPU's peaks (FMA throughput, streaming and cache
//! bandwidths) and, with `kernels`, every kernel of the engine at small shapes, printed as
//! `distill bench` prints them. The report is the same JSON `distill bench --out` writes.
//!
//! ```sh
//! cargo run --release --example run_the_bench -- [kernels]
//! ```

use distill::bench::{self, BenchConfig, DeviceChoice, Sections};

fn main() -> distill::Result<()> {
    let kernels = std::env::args().nth(1).as_deref() == Some("kernels");
    let cfg = BenchConfig {
        quick: true,
        devices: DeviceChoice::Cpu, // or DeviceChoice::All: every GPU adapter too
        software: false,
        sections: Sections {
            peaks: true,
            kernels,
            train: false,
        },
        tiles: Default::default(),
    };
    let report = bench::run(&cfg, &mut bench::Silent)?;
    print!("{}", bench::render_table(&report));
    Ok(())
}
