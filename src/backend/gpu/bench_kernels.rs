//! The launchers of shaders/bench.wgsl (the FMA-chain peak and the streaming copy) and what
//! `distill bench` reports about the open device. Crate-internal: `src/bench` calls them; they
//! are not kernels of the engine, so they stay out of the `Backend` trait.

use super::launch::{bind, u};
use super::params::BenchParams;
use super::table::k;
use super::GpuBackend;
use crate::backend::Storage;
use crate::{Error, Result};

/// Independent vec4 chains per invocation in `fma_chain` (bench.wgsl's CHAINS).
const FMA_CHAINS: f64 = 8.0;
/// Invocations per workgroup of both kernels.
const WORKGROUP: u32 = 256;
/// Most workgroups of a 1-D dispatch the kernels are given (within every adapter's limit).
const MAX_GROUPS: u32 = 65_535;

impl GpuBackend {
    /// Records one `fma_chain` dispatch of `groups` workgroups, each invocation running
    /// `iters` steps, storing into `dst`. Returns the flops it performs.
    pub(crate) fn bench_fma_chain(
        &self,
        src: &Storage,
        dst: &Storage,
        groups: u32,
        iters: u32,
    ) -> Result<f64> {
        if groups == 0 || groups > MAX_GROUPS {
            return Err(Error::InvalidArgument(format!(
                "bench_fma_chain: {groups} workgroups (1..={MAX_GROUPS})"
            )));
        }
        let src = self.g(src, 4, "bench_fma_chain")?;
        let dst = self.g(dst, 4, "bench_fma_chain")?;
        let params = BenchParams {
            len: 0,
            iters,
            x: 0.999_9,
            y: 1.0e-6,
        };
        self.run(
            &k::BENCH_FMA,
            &params,
            &[bind(src), bind(dst)],
            (groups, 1, 1),
        )?;
        Ok(groups as f64 * WORKGROUP as f64 * iters as f64 * FMA_CHAINS * 4.0 * 2.0)
    }

    /// Records one `copy` dispatch: `dst = src` over the first `len` words (a multiple of
    /// 4). Returns the bytes moved (read + written).
    pub(crate) fn bench_copy(&self, src: &Storage, dst: &Storage, len: usize) -> Result<f64> {
        if len == 0 || !len.is_multiple_of(4) {
            return Err(Error::InvalidArgument(format!(
                "bench_copy: {len} words (a positive multiple of 4)"
            )));
        }
        let src = self.g(src, len, "bench_copy")?;
        let dst = self.g(dst, len, "bench_copy")?;
        let vec4s = len / 4;
        let groups = (vec4s.div_ceil(WORKGROUP as usize) as u32).clamp(1, MAX_GROUPS);
        let params = BenchParams {
            len: u(vec4s)?,
            ..Default::default()
        };
        self.run(
            &k::BENCH_COPY,
            &params,
            &[bind(src), bind(dst)],
            (groups, 1, 1),
        )?;
        Ok(8.0 * len as f64)
    }

    /// The adapter's identity as wgpu reports it (name, vendor and device ids, driver).
    pub(crate) fn adapter_info(&self) -> wgpu::AdapterInfo {
        self.exec.ctx.info.clone()
    }

    /// The optional features the device was opened with.
    pub(crate) fn features(&self) -> wgpu::Features {
        self.exec.ctx.features
    }
}
