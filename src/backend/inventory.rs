//! The compute devices of this machine (`distill devices`): every GPU adapter, the CPU
//! backend, and which of them `auto` opens.

use serde::Serialize;

use super::gpu::{self, AdapterReport};
use super::{Device, DeviceOptions};
use crate::Result;

/// What [`devices`] finds.
pub struct Inventory {
    /// Every adapter, in the order `gpu:N` counts them, with the tiles the options give each.
    pub adapters: Vec<AdapterReport>,
    pub cpu: CpuReport,
    /// The name of the device `auto` opens, or why it failed.
    pub auto: Result<String>,
}

/// The CPU backend as this machine runs it.
#[derive(Clone, Debug, Serialize)]
pub struct CpuReport {
    pub spec: &'static str,
    pub name: String,
    /// The SIMD level the kernels run.
    pub simd: &'static str,
    pub threads: usize,
    /// The GEMM's cache blocking at that level.
    pub gemm_blocking: String,
}

/// Lists the devices, opening `auto` with `options` (which may autotune a hardware GPU, so
/// the list then shows the result).
pub fn devices(options: &DeviceOptions) -> Inventory {
    let auto = Device::open("auto", options).map(|d| d.name());
    let level = distill_kernels::simd::level();
    Inventory {
        adapters: gpu::list_adapters_with(&options.tiles),
        cpu: CpuReport {
            spec: "cpu",
            name: Device::cpu().name(),
            simd: level.name(),
            threads: rayon::current_num_threads(),
            gemm_blocking: distill_kernels::gemm::blocking(level).to_string(),
        },
        auto,
    }
}

/// Refuses a SIMD level (`DISTILL_CPU`) that this CPU cannot run, before any kernel falls back
/// to another one silently.
pub fn check_simd_request() -> Result<()> {
    distill_kernels::simd::requested_level()
        .map(|_| ())
        .map_err(crate::Error::Other)
}
