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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::Backend;

    /// The best adapter (lavapipe in CI), or `None` to skip (a failure under
    /// `DISTILL_REQUIRE_GPU=1`).
    fn gpu() -> Option<Arc<GpuBackend>> {
        match GpuBackend::open_best() {
            Ok(g) => Some(g),
            Err(e) if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("DISTILL_REQUIRE_GPU=1 but no GPU device could be opened: {e}")
            }
            Err(_) => None,
        }
    }

    #[test]
    fn copy_copies_every_word_of_an_odd_length() {
        let Some(g) = gpu() else { return };
        // Past one dispatch's grid-stride on a small grid, and an odd number of vec4s.
        let len = 4 * 70_001;
        let src: Vec<f32> = (0..len).map(|i| i as f32 * 0.5 - 3.0).collect();
        let s = g.upload_f32(&src).unwrap();
        let d = g.upload_f32(&vec![-1.0; len + 4]).unwrap();
        assert_eq!(g.bench_copy(&s, &d, len).unwrap(), 8.0 * len as f64);
        let out = g.download_f32(&d).unwrap();
        assert_eq!(out[..len], src[..]);
        assert_eq!(out[len..], [-1.0; 4], "nothing past len is written");
        assert!(g.bench_copy(&s, &d, 6).is_err(), "not a multiple of 4");
    }

    #[test]
    fn fma_chain_matches_its_host_model() {
        let Some(g) = gpu() else { return };
        let src = g.upload_f32(&[0.0; 4]).unwrap();
        let slots = 4 * 1024;
        let dst = g.zeros(slots).unwrap();
        let (groups, iters) = (4u32, 100u32);
        let flops = g.bench_fma_chain(&src, &dst, groups, iters).unwrap();
        assert_eq!(flops, 4.0 * 256.0 * 100.0 * 8.0 * 4.0 * 2.0);
        let out = g.download_f32(&dst).unwrap();
        // Invocation i stores into slot i (the grid is as long as dst): its 8 chains start at
        // (i & 7) + c and run `iters` steps of a·x + y, then sum pairwise.
        for (i, lanes) in out.chunks(4).enumerate() {
            let mut acc = [0.0f32; 8];
            for (c, a) in acc.iter_mut().enumerate() {
                *a = (i & 7) as f32 + c as f32;
                for _ in 0..iters {
                    *a = a.mul_add(0.999_9, 1.0e-6);
                }
            }
            let want =
                (acc[0] + acc[1]) + (acc[2] + acc[3]) + (acc[4] + acc[5]) + (acc[6] + acc[7]);
            for &v in lanes {
                assert!(
                    (v - want).abs() <= 1e-4 * want.abs(),
                    "slot {i}: {v} vs {want}"
                );
            }
        }
    }
}
