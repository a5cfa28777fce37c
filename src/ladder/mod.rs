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

use std::sync::Arc;

use crate::backend::gpu::standalone::Standalone;
use crate::backend::gpu::{GpuBackend, TilePolicy};
use crate::{Error, Result};
use measure::Rig;
use reference::Problem;

pub use report::{CheckOutcome, CheckRow, LadderReport, TimingRow};

/// Which ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
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
    /// The GEMM tiles of the engine backend behind a GPU ladder's production rungs.
    pub tiles: TilePolicy,
}

impl Default for LadderOptions {
    fn default() -> Self {
        LadderOptions {
            op: LadderOp::Matmul,
            target: LadderTarget::Cpu,
            quick: false,
            check_only: false,
            peak_gflops: None,
            tiles: TilePolicy::default(),
        }
    }
}

/// A GPU opened for the ladder: a device for the rung shaders (with the study features the
/// adapter offers) and an engine backend on the same adapter for the production rungs.
pub struct LadderGpu {
    dev: Arc<Standalone>,
    engine: Arc<GpuBackend>,
}

impl LadderGpu {
    /// Adapter `index` as `distill devices` numbers them, or the best one; the production
    /// rungs' backend built with the tiles `tiles` chooses.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(index: Option<usize>, tiles: &TilePolicy) -> Result<LadderGpu> {
        let dev = Arc::new(Standalone::open(index)?);
        let engine = GpuBackend::open_index_with(dev.index(), tiles)?;
        Ok(LadderGpu { dev, engine })
    }

    /// Two adapters of the same GPU (a browser's adapter makes only one device): `study`
    /// for the rung shaders, `engine` for the production rungs, built with `tiles`. `index`
    /// names the GPU in the report.
    pub async fn open_async(
        study: wgpu::Adapter,
        engine: wgpu::Adapter,
        index: usize,
        tiles: &TilePolicy,
    ) -> Result<LadderGpu> {
        let dev = Arc::new(Standalone::open_async(study, index).await?);
        let engine = GpuBackend::open_async(engine, tiles).await?;
        Ok(LadderGpu { dev, engine })
    }
}

/// Checks every rung of the ladder `opts` names on odd shapes, then (unless `check_only`)
/// times the rungs that passed. `log` receives a line per step as it happens.
#[cfg(not(target_arch = "wasm32"))]
pub fn run(opts: &LadderOptions, log: &mut dyn FnMut(&str)) -> Result<LadderReport> {
    let gpu = match opts.target {
        LadderTarget::Gpu(index) => Some(LadderGpu::open(index, &opts.tiles)?),
        LadderTarget::Cpu => None,
    };
    pollster::block_on(run_async(opts, gpu, log))
}

/// [`run`] as a future, on `gpu` when `opts.target` is a GPU: the page's way (a browser
/// learns that GPU work is done only by yielding), which native code drives with `pollster`.
pub async fn run_async(
    opts: &LadderOptions,
    gpu: Option<LadderGpu>,
    log: &mut dyn FnMut(&str),
) -> Result<LadderReport> {
    if let Some(p) = opts.peak_gflops {
        if !(p.is_finite() && p > 0.0) {
            return Err(Error::InvalidArgument(format!(
                "ladder: the peak must be a positive number of GFLOP/s, got {p}"
            )));
        }
    }
    let gpu = match (opts.target, gpu) {
        (LadderTarget::Cpu, _) => None,
        (LadderTarget::Gpu(_), Some(g)) => Some(g),
        (LadderTarget::Gpu(_), None) => {
            return Err(Error::InvalidArgument(
                "ladder: a GPU ladder needs an opened GPU (LadderGpu)".into(),
            ))
        }
    };
    match (opts.op, gpu) {
        (LadderOp::Matmul, None) => drive(opts, matmul_cpu::rig(opts.quick), log).await,
        (LadderOp::Conv, None) => drive(opts, conv_cpu::rig(opts.quick), log).await,
        (LadderOp::Matmul, Some(g)) => {
            drive(opts, matmul_gpu::rig(g.dev, g.engine, opts.quick), log).await
        }
        (LadderOp::Conv, Some(g)) => {
            drive(opts, conv_gpu::rig(g.dev, g.engine, opts.quick), log).await
        }
    }
}

/// Checks, then times, the rungs of one rig.
async fn drive<P: Problem>(
    opts: &LadderOptions,
    mut rig: Rig<P>,
    log: &mut dyn FnMut(&str),
) -> Result<LadderReport> {
    log(&format!(
        "{} ladder on {}: checking {} rungs",
        opts.op.name(),
        rig.device,
        rig.rungs.len()
    ));
    let checks = measure::check_all(&mut rig, log).await;
    let timings = if opts.check_only {
        Vec::new()
    } else {
        measure::time_all(&mut rig, &checks, opts.peak_gflops, opts.quick, log).await
    };
    Ok(LadderReport {
        op: opts.op,
        device: rig.device,
        peak_gflops: opts.peak_gflops,
        checks,
        timings,
    })
}

/// How the CPU ladders name their device: the SIMD level and the threads the rungs may use.
fn cpu_device_label() -> String {
    let threads = rayon::current_num_threads();
    let plural = if threads == 1 { "" } else { "s" };
    format!(
        "CPU ({}, {threads} thread{plural})",
        distill_kernels::simd::level()
    )
}

/// [`LadderGpu::open`]'s parts, for the rung modules' tests.
#[cfg(test)]
pub(crate) fn open_gpu(index: Option<usize>) -> Result<(Arc<Standalone>, Arc<GpuBackend>)> {
    let g = LadderGpu::open(index, &TilePolicy::default())?;
    Ok((g.dev, g.engine))
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
