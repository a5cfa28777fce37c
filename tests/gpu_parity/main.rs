//! GPU-vs-CPU parity: every `Backend` method on the GPU against the CPU backend, on shapes
//! that are not tile multiples, plus the GPU backend's own contracts (limits give errors,
//! the buffer pool makes a steady-state loop allocate nothing).
//!
//! Without an adapter these tests print one line and pass; with `DISTILL_REQUIRE_GPU=1`
//! (CI, on lavapipe) a missing adapter fails them instead.

#[path = "../common/mod.rs"]
mod common;

mod buffers;
mod conv_pool;
mod devices;
mod elementwise;
mod gemm;
mod mse;
mod optimisers;
mod softmax_losses;
mod tiles;

use std::sync::{Arc, OnceLock};

use distill::backend::gpu::GpuBackend;
use distill::backend::{Device, Storage};
use distill::rng::Rng;

/// f32 tolerance, relative to the largest magnitude of the reference (an ∞-norm-relative
/// error, so sums of many terms are judged against their scale, not against cancellation).
const TOL: f32 = 1e-4;

fn shared_gpu() -> &'static Option<Arc<GpuBackend>> {
    static GPU: OnceLock<Option<Arc<GpuBackend>>> = OnceLock::new();
    common::quiet_vulkan();
    GPU.get_or_init(|| match GpuBackend::open_best() {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("DISTILL_REQUIRE_GPU=1 but no GPU device could be opened: {e}");
            }
            None
        }
    })
}

/// The GPU device shared by these tests, or `None` (after one printed line) when there is
/// none. Panics instead under `DISTILL_REQUIRE_GPU=1`.
fn gpu_or_skip() -> Option<Device> {
    match shared_gpu() {
        Some(g) => Some(g.device()),
        None => {
            eprintln!(
                "skipping GPU test: no GPU adapter (set DISTILL_REQUIRE_GPU=1 to fail instead)"
            );
            None
        }
    }
}

/// Test data from the engine's seeded generator.
trait TestData {
    /// `n` values uniform in [-1, 1).
    fn vec(&mut self, n: usize) -> Vec<f32>;
    /// `n` labels below `classes`.
    fn labels(&mut self, n: usize, classes: usize) -> Vec<u32>;
}

impl TestData for Rng {
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-1.0, 1.0)).collect()
    }
    fn labels(&mut self, n: usize, classes: usize) -> Vec<u32> {
        (0..n).map(|_| self.below(classes) as u32).collect()
    }
}

/// The same data on both devices.
struct Pair {
    cpu: Storage,
    gpu: Storage,
}

impl Pair {
    fn on(&self, side: usize) -> &Storage {
        if side == 0 {
            &self.cpu
        } else {
            &self.gpu
        }
    }
}

struct Both {
    cpu: Device,
    gpu: Device,
}

impl Both {
    fn new() -> Option<Both> {
        Some(Both {
            cpu: Device::cpu(),
            gpu: gpu_or_skip()?,
        })
    }
    fn f32(&self, data: &[f32]) -> Pair {
        Pair {
            cpu: self.cpu.backend().upload_f32(data).unwrap(),
            gpu: self.gpu.backend().upload_f32(data).unwrap(),
        }
    }
    fn u32(&self, data: &[u32]) -> Pair {
        Pair {
            cpu: self.cpu.backend().upload_u32(data).unwrap(),
            gpu: self.gpu.backend().upload_u32(data).unwrap(),
        }
    }
    /// Output buffers start as garbage on both sides (overwrite semantics are tested).
    fn out(&self, n: usize) -> Pair {
        self.f32(&vec![f32::NAN; n])
    }
    fn check(&self, what: &str, p: &Pair) {
        let c = self.cpu.backend().download_f32(&p.cpu).unwrap();
        let g = self.gpu.backend().download_f32(&p.gpu).unwrap();
        assert_close(what, &g, &c);
    }
    fn check_u32(&self, what: &str, p: &Pair) {
        let c = self.cpu.backend().download_u32(&p.cpu).unwrap();
        let g = self.gpu.backend().download_u32(&p.gpu).unwrap();
        assert_eq!(g, c, "{what}: GPU and CPU differ");
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / scale;
        assert!(
            err <= TOL && g.is_finite() == w.is_finite(),
            "{what}: element {i}: GPU {g} vs CPU {w} (relative error {err:e}, scale {scale})"
        );
    }
}
