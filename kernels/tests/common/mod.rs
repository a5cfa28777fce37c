//! Helpers shared by the kernel tests: test data drawn from the crate's own generator.
#![allow(dead_code)]

pub use distill_kernels::rng::Rng;

/// Test-data draws on top of [`Rng`].
pub trait TestRng {
    /// `n` values uniform in `[-scale, scale)`.
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32>;
    /// `n` labels below `cols`.
    fn labels(&mut self, n: usize, cols: usize) -> Vec<u32>;
    /// A small integer in `0..levels`, as f32: many ties.
    fn level(&mut self, levels: u64) -> f32;
}

impl TestRng for Rng {
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(-1.0, 1.0) * scale).collect()
    }
    fn labels(&mut self, n: usize, cols: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next_u64() % cols as u64) as u32)
            .collect()
    }
    fn level(&mut self, levels: u64) -> f32 {
        (self.next_u64() % levels) as f32
    }
}
