//! GEMM rung 6 — AVX-512: a 14×32 tile in zmm registers (the production microkernel).
//!
//! Change against rung 5: vectors twice as wide and twice as many registers. AVX-512 has 32
//! zmm registers of 16 floats, so the tile grows to 14×32: 28 accumulators, 2 vectors of B,
//! 1 broadcast of A. Each depth step is 28 FMAs against 2 loads and 14 broadcasts: twice
//! the flops per instruction, on CPUs that run 512-bit FMAs at full width. Partial tiles are
//! stored through lane masks instead of a padded copy. This rung calls the production
//! single-threaded path at the AVX-512 level (`gemm::gemm_serial_at`), which packs for the
//! 14×32 tile with blocking derived from the caches; it runs only where the CPU has AVX-512F.

use crate::gemm::{gemm_serial_at, GemmShape};
use crate::simd::SimdLevel;
use crate::{Epilogue, Trans};

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten. Panics where the CPU lacks AVX-512F
/// (the production path would fall back to scalar, which is not this rung).
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    assert!(
        SimdLevel::Avx512.is_supported(),
        "gemm_06_avx512 needs AVX-512F"
    );
    let shape = GemmShape {
        ta: Trans::N,
        tb: Trans::N,
        m,
        n,
        k,
    };
    gemm_serial_at(SimdLevel::Avx512, shape, a, b, c, Epilogue::default());
}
