//! The shapes that skip packing: one row of A against a row-major `[n, k]` B (a linear layer
//! at batch 1, a GEMV over contiguous rows), and an empty product (k = 0: the epilogue alone).
//!
//! The GEMV streams B once, one dot product per row of B, so it is bound by memory bandwidth;
//! packing B would copy all of it for a single use. The dot product has a path per SIMD level
//! (AVX2+FMA, AVX-512, NEON, portable), each with four vector accumulators.

use crate::simd::SimdLevel;
use crate::{Bias, Epilogue};

use super::PARALLEL_MIN_FLOPS;

/// `c[j] = epilogue(x · b[j, :])` for the `n` rows of a row-major `[n, k]` matrix; rows are
/// split across threads in fixed blocks, and each dot product is summed in a fixed order.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemv_rows(
    level: SimdLevel,
    n: usize,
    k: usize,
    x: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
    parallel: bool,
) {
    const ROWS_PER_TASK: usize = 64;
    let run = |j0: usize, out: &mut [f32]| {
        for (dj, v) in out.iter_mut().enumerate() {
            let j = j0 + dj;
            let mut acc = dot(level, x, &b[j * k..(j + 1) * k]);
            if ep.accumulate {
                acc += *v;
            }
            match ep.bias {
                Bias::None => {}
                Bias::PerRow(bias) => acc += bias[0],
                Bias::PerCol(bias) => acc += bias[j],
            }
            *v = if ep.relu && acc < 0.0 { 0.0 } else { acc };
        }
    };
    if parallel && 2.0 * (n * k) as f64 >= PARALLEL_MIN_FLOPS {
        use rayon::prelude::*;
        c.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(t, out)| run(t * ROWS_PER_TASK, out));
    } else {
        run(0, c);
    }
}

/// `x · y` on the SIMD path of `level` (a level the CPU cannot run, or without a path of its
/// own, takes the portable loop). Each level sums in its own fixed order.
fn dot(level: SimdLevel, x: &[f32], y: &[f32]) -> f32 {
    if !level.is_supported() {
        return dot_portable(x, y);
    }
    match level {
        // SAFETY (each arm): the CPU runs the level (checked above).
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma => unsafe { dot_avx2(x, y) },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { dot_avx512(x, y) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { dot_neon(x, y) },
        _ => dot_portable(x, y),
    }
}

/// The scalar level's dot product.
fn dot_portable(x: &[f32], y: &[f32]) -> f32 {
    // Four partial sums in a fixed order (so LLVM may keep them in registers).
    let mut acc = [0.0f32; 4];
    let chunks = x.len() / 4;
    for i in 0..chunks {
        for l in 0..4 {
            acc[l] += x[4 * i + l] * y[4 * i + l];
        }
    }
    let mut total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..x.len() {
        total += x[i] * y[i];
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    // Four independent accumulators hide the FMA latency.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, a) in acc.iter_mut().enumerate() {
            let o = i + 8 * l;
            *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(yp.add(o)), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(xp.add(i)),
            _mm256_loadu_ps(yp.add(i)),
            acc[0],
        );
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let mut total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    while i < n {
        total += x[i] * y[i];
        i += 1;
    }
    total
}

/// [`dot_avx2`] on 16-lane zmm vectors: four accumulators of 16 lanes, then single vectors,
/// then the ragged end as one masked vector; the lanes are summed by `_mm512_reduce_add_ps`
/// (a fixed tree).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for (l, a) in acc.iter_mut().enumerate() {
            let o = i + 16 * l;
            *a = _mm512_fmadd_ps(_mm512_loadu_ps(xp.add(o)), _mm512_loadu_ps(yp.add(o)), *a);
        }
        i += 64;
    }
    while i + 16 <= n {
        acc[0] = _mm512_fmadd_ps(
            _mm512_loadu_ps(xp.add(i)),
            _mm512_loadu_ps(yp.add(i)),
            acc[0],
        );
        i += 16;
    }
    if i < n {
        // Masked-off lanes load zero and are not read.
        let m = ((1u32 << (n - i)) - 1) as __mmask16;
        acc[1] = _mm512_fmadd_ps(
            _mm512_maskz_loadu_ps(m, xp.add(i)),
            _mm512_maskz_loadu_ps(m, yp.add(i)),
            acc[1],
        );
    }
    _mm512_reduce_add_ps(_mm512_add_ps(
        _mm512_add_ps(acc[0], acc[1]),
        _mm512_add_ps(acc[2], acc[3]),
    ))
}

/// [`dot_avx2`] on 4-lane q vectors: four accumulators, then single vectors, then the
/// lanes summed pairwise (`faddp`) and the scalar tail.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn dot_neon(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::aarch64::*;
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    let mut acc = [vdupq_n_f32(0.0); 4];
    let mut i = 0;
    while i + 16 <= n {
        for (l, a) in acc.iter_mut().enumerate() {
            let o = i + 4 * l;
            *a = vfmaq_f32(*a, vld1q_f32(xp.add(o)), vld1q_f32(yp.add(o)));
        }
        i += 16;
    }
    while i + 4 <= n {
        acc[0] = vfmaq_f32(acc[0], vld1q_f32(xp.add(i)), vld1q_f32(yp.add(i)));
        i += 4;
    }
    let sum = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let mut total = vaddvq_f32(sum);
    while i < n {
        total += x[i] * y[i];
        i += 1;
    }
    total
}

/// The epilogue alone, for k = 0.
pub(super) fn epilogue_only(m: usize, n: usize, c: &mut [f32], ep: Epilogue) {
    for (i, row) in c.chunks_exact_mut(n).enumerate().take(m) {
        for (j, v) in row.iter_mut().enumerate() {
            let mut x = if ep.accumulate { *v } else { 0.0 };
            match ep.bias {
                Bias::None => {}
                Bias::PerRow(bias) => x += bias[i],
                Bias::PerCol(bias) => x += bias[j],
            }
            if ep.relu && x < 0.0 {
                x = 0.0;
            }
            *v = x;
        }
    }
}
