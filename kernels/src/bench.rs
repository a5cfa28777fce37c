//! The CPU's own peaks, the twin of shaders/bench.wgsl: an FMA-chain loop at each SIMD level
//! (f32 FLOP/s) and a streaming copy (memory bandwidth). `distill bench` reads every kernel's
//! figure as a % of these; no op of the engine calls them.
//!
//! They live here, not in the bench module, because they are CPU kernels like the others:
//! `std::arch` code chosen by [`SimdLevel`], next to the code whose peak they measure, with
//! the same file name as their WGSL twin.
//!
//! - [`fma_chain`]: `acc = acc·x + y` on independent register chains for `iters` steps, no
//!   memory traffic: bound by FP32 throughput only. Enough chains to cover FMA latency ×
//!   pipes (4 cycles × 2 on current x86 cores): 12 ymm chains at AVX2+FMA, 12 zmm chains at
//!   AVX-512 (inline assembly keeps them in fixed registers), 16 q-register chains at NEON
//!   (ARM cores have up to four 128-bit FMA pipes), and at the scalar level the portable
//!   loop the scalar kernels are (32 chains of `mul` + `add`, which the compiler vectorises
//!   to the baseline target's vectors, SSE2 on x86-64, without fusing).
//! - [`copy`]: `dst = src`, one contiguous chunk per rayon thread, as the kernels split their
//!   work; bound by DRAM bandwidth when the buffers are far larger than the last-level cache.

use std::hint::black_box;

use rayon::prelude::*;

use crate::SimdLevel;

/// Register chains of the AVX2 and AVX-512 loops.
pub const SIMD_CHAINS: usize = 12;
/// Register chains of the NEON loop (4 cycles × up to 4 pipes; 32 q registers).
pub const NEON_CHAINS: usize = 16;
/// Accumulators of the portable (scalar-level) loop.
pub const PORTABLE_CHAINS: usize = 32;

/// Runs `iters` steps of the FMA-chain loop at `level` on this thread. Returns the flops done
/// (2 per lane per step), or `None` where this CPU cannot run `level`.
pub fn fma_chain(level: SimdLevel, iters: u64) -> Option<f64> {
    if !level.is_supported() {
        return None;
    }
    let steps = iters.max(1) as f64;
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma => {
            // SAFETY: AVX2 and FMA are supported (checked above).
            black_box(unsafe { fma_chain_avx2(black_box(iters.max(1))) });
            Some(steps * (SIMD_CHAINS * 8 * 2) as f64)
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => {
            // SAFETY: AVX-512F is supported (checked above).
            unsafe { fma_chain_avx512(black_box(iters.max(1))) };
            Some(steps * (SIMD_CHAINS * 16 * 2) as f64)
        }
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => {
            // SAFETY: NEON is supported (checked above).
            black_box(unsafe { fma_chain_neon(black_box(iters.max(1))) });
            Some(steps * (NEON_CHAINS * 4 * 2) as f64)
        }
        _ => {
            black_box(fma_chain_portable(black_box(iters.max(1))));
            Some(steps * (PORTABLE_CHAINS * 2) as f64)
        }
    }
}

/// The scalar level's loop: plain f32 `mul` + `add` (no fusing), auto-vectorised.
fn fma_chain_portable(iters: u64) -> f32 {
    let x = black_box(0.999_9f32);
    let y = black_box(1.0e-6f32);
    let mut acc = [0.0f32; PORTABLE_CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = black_box(i as f32);
    }
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * x + y;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chain_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(black_box(0.999_9));
    let y = _mm256_set1_ps(black_box(1.0e-6));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); SIMD_CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

/// [`NEON_CHAINS`] chains of `fmla` on q registers (4 lanes): current ARM cores have two to
/// four 128-bit FMA pipes of 4 cycles' latency, which 16 independent chains keep busy.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn fma_chain_neon(iters: u64) -> f32 {
    use std::arch::aarch64::*;
    let x = vdupq_n_f32(black_box(0.999_9));
    let y = vdupq_n_f32(black_box(1.0e-6));
    let mut acc = [vdupq_n_f32(black_box(1.0)); NEON_CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            // v·x + y, fused.
            *v = vfmaq_f32(y, *v, x);
        }
    }
    let mut s = vdupq_n_f32(0.0);
    for v in acc {
        s = vaddq_f32(s, v);
    }
    vaddvq_f32(s)
}

/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
unsafe fn fma_chain_avx512(iters: u64) {
    // 12 independent chains (zmm0–zmm11) on zeroed operands: no denormals, no dependence
    // between chains; only the FMA throughput counts.
    std::arch::asm!(
        "vpxord zmm0, zmm0, zmm0",
        "vmovaps zmm1, zmm0", "vmovaps zmm2, zmm0", "vmovaps zmm3, zmm0",
        "vmovaps zmm4, zmm0", "vmovaps zmm5, zmm0", "vmovaps zmm6, zmm0",
        "vmovaps zmm7, zmm0", "vmovaps zmm8, zmm0", "vmovaps zmm9, zmm0",
        "vmovaps zmm10, zmm0", "vmovaps zmm11, zmm0", "vmovaps zmm12, zmm0",
        "vmovaps zmm13, zmm0",
        "2:",
        "vfmadd213ps zmm0, zmm12, zmm13", "vfmadd213ps zmm1, zmm12, zmm13",
        "vfmadd213ps zmm2, zmm12, zmm13", "vfmadd213ps zmm3, zmm12, zmm13",
        "vfmadd213ps zmm4, zmm12, zmm13", "vfmadd213ps zmm5, zmm12, zmm13",
        "vfmadd213ps zmm6, zmm12, zmm13", "vfmadd213ps zmm7, zmm12, zmm13",
        "vfmadd213ps zmm8, zmm12, zmm13", "vfmadd213ps zmm9, zmm12, zmm13",
        "vfmadd213ps zmm10, zmm12, zmm13", "vfmadd213ps zmm11, zmm12, zmm13",
        "dec {n}",
        "jnz 2b",
        "vzeroupper",
        n = inout(reg) iters.max(1) => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _,
        out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _,
        out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _,
        options(nostack, nomem),
    );
}

/// `dst = src` on all rayon threads, one contiguous chunk each. Returns the bytes moved
/// (read + written).
pub fn copy(dst: &mut [f32], src: &[f32]) -> f64 {
    assert_eq!(dst.len(), src.len(), "copy: lengths differ");
    let chunk = src.len().div_ceil(rayon::current_num_threads()).max(1);
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
    8.0 * src.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd;

    #[test]
    fn every_supported_level_counts_its_flops() {
        for level in simd::available() {
            let a = fma_chain(level, 1000).expect("a supported level runs");
            let b = fma_chain(level, 2000).expect("a supported level runs");
            assert!(a > 0.0 && (b - 2.0 * a).abs() < 1e-9, "{level}: {a} {b}");
        }
        // Wider levels do more work per step.
        let per_step = |l| fma_chain(l, 1).unwrap_or(0.0);
        if SimdLevel::Avx2Fma.is_supported() {
            assert_eq!(per_step(SimdLevel::Avx2Fma), 192.0);
        }
        if SimdLevel::Avx512.is_supported() {
            assert_eq!(per_step(SimdLevel::Avx512), 384.0);
        }
        if SimdLevel::Neon.is_supported() {
            assert_eq!(per_step(SimdLevel::Neon), 128.0);
        }
    }

    #[test]
    fn unsupported_levels_say_so() {
        for level in [SimdLevel::Avx2Fma, SimdLevel::Avx512, SimdLevel::Neon] {
            if !level.is_supported() {
                assert_eq!(fma_chain(level, 10), None, "{level}");
            }
        }
    }

    #[test]
    fn copy_copies_every_element() {
        let src: Vec<f32> = (0..10_001).map(|i| i as f32).collect();
        let mut dst = vec![0.0; src.len()];
        assert_eq!(copy(&mut dst, &src), 8.0 * 10_001.0);
        assert_eq!(dst, src);
    }
}
