//! The kernel-study ladder driver: every rung of a ladder (matmul or conv, on the CPU or on a
//! GPU adapter) is first checked against an f64 reference on odd shapes, then timed at the
//! shapes that matter; a rung that fails its check is reported and not timed.
//!
//! The rungs themselves are kernels: `kernels/src/ladder/` (CPU) and `shaders/ladder/` (WGSL),
//! each file opening with what it changes against the previous rung. The production kernels
//! are the top rungs, called through their usual entry points. [`run`] is the one entry point;
//! [`LadderReport::to_markdown`] formats what it measured.
//!
//! - `reference`: random operands, the f64 reference, the error bound;
//! - `measure`: checking and timing any list of rungs (time budgets, speed-ups);
//! - `matmul_cpu`, `matmul_gpu`, `conv_cpu`, `conv_gpu`: the rungs of each ladder and the
//!   shapes each is checked and timed at;
//! - `report`: the rows and their markdown.

mod conv_cpu;
mod conv_gpu;
mod matmul_cpu;
mod matmul_gpu;
mod measure;
mod reference;
mod report;

use crate::{Error, Result};

pub use report::{CheckOutcome, CheckRow, LadderReport, TimingRow};

/// Which ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LadderOp {
    Matmul,
    Conv,
}

impl LadderOp {
    /// `matmul` or `conv`.
    pub fn parse(name: &str) -> Result<LadderOp> {
        match name.trim().to_ascii_lowercase().as_str() {
            "matmul" | "gemm" => Ok(LadderOp::Matmul),
            "conv" | "conv2d" => Ok(LadderOp::Conv),
            other => Err(Error::InvalidArgument(format!(
                "unknown ladder '{other}': expected matmul or conv"
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LadderOp::Matmul => "matmul",
            LadderOp::Conv => "conv",
        }
    }
}

/// Where the ladder runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LadderTarget {
    /// The CPU rungs (`kernels/src/ladder/`), each at the SIMD level it is written for.
    Cpu,
    /// The WGSL rungs on GPU adapter `N` as `distill devices` numbers them, or the best one.
    Gpu(Option<usize>),
}

/// What [`run`] does.
#[derive(Clone, Debug)]
pub struct LadderOptions {
    pub op: LadderOp,
    pub target: LadderTarget,
    /// Fewer and smaller timing shapes, shorter timing.
    pub quick: bool,
    /// Only check the rungs; time nothing.
    pub check_only: bool,
    /// The device's peak GFLOP/s, measured by the caller; rows then show the % of it.
    pub peak_gflops: Option<f64>,
}

impl Default for LadderOptions {
    fn default() -> Self {
        LadderOptions {
            op: LadderOp::Matmul,
            target: LadderTarget::Cpu,
            quick: false,
            check_only: false,
            peak_gflops: None,
        }
    }
}

/// Checks every rung of the ladder `opts` names on odd shapes, then (unless `check_only`)
/// times the rungs that passed. `log` receives a line per step as it happens.
pub fn run(opts: &LadderOptions, log: &mut dyn FnMut(&str)) -> Result<LadderReport> {
    if let Some(p) = opts.peak_gflops {
        if !(p.is_finite() && p > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "ladder: the peak must be a positive number of GFLOP/s, got {p}"
            )));
        }
    }
    let mut rig = match (opts.op, opts.target) {
        (LadderOp::Matmul, LadderTarget::Cpu) => matmul_cpu::rig(opts.quick),
        (LadderOp::Matmul, LadderTarget::Gpu(i)) => matmul_gpu::rig(i, opts.quick)?,
        (LadderOp::Conv, LadderTarget::Cpu) => conv_cpu::rig(opts.quick),
        (LadderOp::Conv, LadderTarget::Gpu(i)) => conv_gpu::rig(i, opts.quick)?,
    };
    log(&format!(
        "{} ladder on {}: checking {} rungs",
        opts.op.name(),
        rig.device,
        rig.rungs.len()
    ));
    let checks = measure::check_all(&mut rig, log);
    let timings = if opts.check_only {
        Vec::new()
    } else {
        measure::time_all(&mut rig, &checks, opts.peak_gflops, opts.quick, log)
    };
    Ok(LadderReport {
        op: opts.op,
        device: rig.device,
        peak_gflops: opts.peak_gflops,
        checks,
        timings,
    })
}

/// Unit tests that open a GPU adapter call this first. Mesa's Vulkan drivers print "error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment" while enumerating adapters when
/// it is unset (servers, CI); no test opens a window, so it points at the temp directory, as
/// the `distill` binary's `main` and `tests/common` do. Once per process, before any adapter
/// opens.
#[cfg(test)]
pub(crate) fn quiet_vulkan_in_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
    });
}
