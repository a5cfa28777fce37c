//! GEMM rung 5 — an AVX2+FMA microkernel on rung 4's packed panels.
//!
//! Change against rung 4: the 6×16 tile is written with `std::arch` intrinsics. The tile is
//! 12 ymm registers (6 rows × 2 vectors of 8); each depth step loads the 16 floats of B as
//! two vectors, broadcasts each of the 6 A values and issues 12 fused multiply-adds. That is
//! 12 FMAs against 2 loads and 6 broadcasts, so Zen 3's two FMA pipes can run every cycle,
//! and the 12 independent accumulators cover the FMA latency (4 cycles × 2 pipes = 8 chains
//! needed). Rung 4's compiled loop had 4-lane SSE, separate multiply and add, and the tile
//! partly in memory. Packing and blocking are unchanged, so the gain is the microkernel's
//! alone. Bound by the FMA pipes inside the kernel; outside it, by packing and the C update.

use super::gemm_04_packed_scalar::{packed_gemm, MR, NR};
use crate::simd::SimdLevel;

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten. Panics where the CPU lacks AVX2+FMA
/// (the ladder registry says so: check [`SimdLevel::is_supported`] first).
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    assert!(
        SimdLevel::Avx2Fma.is_supported(),
        "gemm_05_avx2 needs AVX2+FMA"
    );
    // SAFETY: AVX2+FMA checked above.
    unsafe { packed_gemm(kernel_avx2, m, k, n, a, b, c) }
}

/// The microkernel (rung 7 reuses it). Safety: the CPU has AVX2 and FMA.
pub(crate) unsafe fn kernel_avx2(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
    #[cfg(target_arch = "x86_64")]
    {
        assert!(a.len() >= kc * MR && b.len() >= kc * NR);
        tile_avx2(kc, a.as_ptr(), b.as_ptr(), tile.as_mut_ptr());
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kc, a, b, tile);
        unreachable!("AVX2 is x86-64 only");
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2(kc: usize, a: *const f32, b: *const f32, tile: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    for p in 0..kc {
        let b0 = _mm256_loadu_ps(b.add(p * NR));
        let b1 = _mm256_loadu_ps(b.add(p * NR + 8));
        for (r, row) in acc.iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(p * MR + r));
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
    }
    for (r, row) in acc.iter().enumerate() {
        _mm256_storeu_ps(tile.add(r * NR), row[0]);
        _mm256_storeu_ps(tile.add(r * NR + 8), row[1]);
    }
}
