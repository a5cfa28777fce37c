//! `distill bench --ladder matmul|conv`: the kernel-study ladder read against the device's
//! measured peak. Measures the peak first (the same FMA-chain rows `distill bench` reports),
//! then runs [`crate::ladder::run`] with it, so every rung's GFLOP/s also reads as a % of what
//! this device can do.

use super::{run, BenchConfig, DeviceChoice, Observer, Sections};
use crate::backend::DeviceOptions;
use crate::ladder::{self, LadderOp, LadderOptions, LadderReport, LadderTarget};
use crate::Result;

/// Checks and times the ladder `op` on `device` (`all`/`cpu`: the CPU rungs; `gpu`: the
/// best adapter; `gpu:N`), with the device's measured peak. `quick`: fewer, smaller shapes.
/// `options`: how a GPU's engine backend is built (its tiles).
pub fn run_ladder(
    op: LadderOp,
    device: DeviceChoice,
    quick: bool,
    check_only: bool,
    options: &DeviceOptions,
    obs: &mut dyn Observer,
) -> Result<LadderReport> {
    let target = match device {
        DeviceChoice::All | DeviceChoice::Cpu => LadderTarget::Cpu,
        DeviceChoice::Gpus => LadderTarget::Gpu(None),
        DeviceChoice::Gpu(n) => LadderTarget::Gpu(Some(n)),
    };
    let peak_gflops = if check_only {
        None
    } else {
        measured_peak(target, quick, obs)?
    };
    let opts = LadderOptions {
        op,
        target,
        quick,
        check_only,
        peak_gflops,
        tiles: options.tiles.clone(),
    };
    ladder::run(&opts, &mut |line| obs.message(line))
}

/// The reference f32 peak (GFLOP/s) of the ladder's device, measured now; `None` where it
/// could not be measured (the ladder then shows GFLOP/s without a %).
fn measured_peak(target: LadderTarget, quick: bool, obs: &mut dyn Observer) -> Result<Option<f64>> {
    let devices = match target {
        LadderTarget::Cpu => DeviceChoice::Cpu,
        LadderTarget::Gpu(Some(n)) => DeviceChoice::Gpu(n),
        // The ladder's best adapter may be a software one: measure whatever it will use.
        LadderTarget::Gpu(None) => DeviceChoice::Gpus,
    };
    let cfg = BenchConfig {
        quick,
        devices,
        software: true,
        sections: Sections {
            peaks: true,
            kernels: false,
            train: false,
        },
        tiles: Default::default(),
    };
    let report = run(&cfg, obs)?;
    // For the best adapter, a hardware one's peak before a software one's (as the ladder picks).
    let mut devices: Vec<_> = report.devices.iter().collect();
    devices.sort_by_key(|d| d.software);
    let peak = devices.iter().find_map(|d| d.peak_flops.as_ref()).map(|p| {
        obs.message(&format!(
            "reference peak: {} = {:.1} GFLOP/s",
            p.label, p.value
        ));
        p.value
    });
    Ok(peak)
}
