//! Mean squared error between two equal-length slices, with its gradient: the loss of feature
//! (hint) distillation. `loss = Σ (a − b)² / n`; `grad = ∂loss/∂a = 2(a − b)/n` (the gradient
//! wrt `b` is its negative, which the engine takes from this one).
//!
//! One pass per element: the difference `d = a − b` in f32 (the gradient needs it), the
//! gradient `d · (2/n)` when asked, and `d²` added in f64. An f32 squared is exact in f64
//! (48 significant bits < 53), so only the additions round.
//!
//! Determinism: the slices are cut into fixed chunks of [`CHUNK`] (16K) elements; inside a
//! chunk, element `i` goes to lane `i mod 8` of eight f64 accumulators, which a fixed tree
//! combines; the chunk partials are added in chunk order on the calling thread. All of it
//! depends only on the length, so the loss is bit-identical for every thread count, and for
//! both paths: the AVX2+FMA path keeps the same eight lanes in two `__m256d` registers and
//! reads a chunk's ragged end with masked loads (masked lanes read `0 − 0`, adding nothing);
//! its FMA of an exact `d²` rounds exactly as the scalar path's multiply-then-add.
//!
//! Bound: memory. 8 bytes read per element, 4 more written with the gradient; the f64
//! accumulation (two 4-lane FMAs per 8 elements) is far below what the loads take.
//!
//! Threads: rayon over the chunks; an input of one chunk or less runs on the calling thread.
//! Memory: one f64 per chunk.

use rayon::prelude::*;

use crate::elementwise::CHUNK;
use crate::simd::{self, SimdLevel};

/// Accumulator lanes of a chunk sum (one AVX2 register of f32 differences).
const LANES: usize = 8;

/// `Σ (a − b)² / n` over equal-length slices; `grad`, when given, gets `2(a − b)/n`.
/// 0 for empty slices.
pub fn mse_loss(a: &[f32], b: &[f32], grad: Option<&mut [f32]>) -> f32 {
    mse_loss_at(simd::level(), a, b, grad)
}

/// [`mse_loss`] on a given SIMD level (AVX2+FMA and AVX-512 take the AVX2 path; NEON and
/// scalar the portable one, which LLVM vectorises). Every level gives the same bits.
pub fn mse_loss_at(level: SimdLevel, a: &[f32], b: &[f32], grad: Option<&mut [f32]>) -> f32 {
    assert_eq!(a.len(), b.len(), "mse_loss: a and b lengths differ");
    if let Some(g) = &grad {
        assert_eq!(g.len(), a.len(), "mse_loss: grad and a lengths differ");
    }
    let n = a.len();
    if n == 0 {
        return 0.0;
    }
    let scale = (2.0 / n as f64) as f32;
    let chunk = |a: &[f32], b: &[f32], g: Option<&mut [f32]>| chunk_sum(level, a, b, g, scale);
    let total = if n <= CHUNK {
        // One chunk: the same arithmetic as one task of the parallel path.
        chunk(a, b, grad)
    } else if let Some(g) = grad {
        in_order(
            a.par_chunks(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .zip(g.par_chunks_mut(CHUNK))
                .map(|((a, b), g)| chunk(a, b, Some(g)))
                .collect(),
        )
    } else {
        in_order(
            a.par_chunks(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .map(|(a, b)| chunk(a, b, None))
                .collect(),
        )
    };
    (total / n as f64) as f32
}

/// Σ of the chunk partials, in chunk order.
fn in_order(partials: Vec<f64>) -> f64 {
    let mut total = 0.0f64;
    for p in partials {
        total += p;
    }
    total
}

/// Σ (a − b)² of one chunk in f64 (and its gradient), on the path `level` allows.
fn chunk_sum(level: SimdLevel, a: &[f32], b: &[f32], grad: Option<&mut [f32]>, scale: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if level.at_least_avx2() {
        // SAFETY: AVX2+FMA is the level's promise; the lengths are checked by the caller.
        return unsafe {
            match grad {
                Some(g) => avx2::chunk::<true>(a, b, g, scale),
                None => avx2::chunk::<false>(a, b, &mut [], scale),
            }
        };
    }
    let _ = level;
    match grad {
        Some(g) => chunk_scalar::<true>(a, b, g, scale),
        None => chunk_scalar::<false>(a, b, &mut [], scale),
    }
}

/// The eight lanes added in a fixed tree.
#[inline(always)]
fn lane_tree(l: [f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// The portable chunk: element `i` into lane `i mod 8`.
fn chunk_scalar<const GRAD: bool>(a: &[f32], b: &[f32], g: &mut [f32], scale: f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    for (i, (&a, &b)) in a.iter().zip(b).enumerate() {
        let d = a - b;
        if GRAD {
            g[i] = d * scale;
        }
        let d = d as f64;
        acc[i % LANES] += d * d;
    }
    lane_tree(acc)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{lane_tree, LANES};
    use crate::simd::mask;
    use std::arch::x86_64::*;

    /// Eight differences `d = a − b` at a time; lanes 0–3 of `d²` go to `lo`, 4–7 to `hi`.
    /// The ragged end (fewer than 8 left) is read and written with a lane mask.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `b.len() == a.len()`, and `g.len() == a.len()` when `GRAD`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn chunk<const GRAD: bool>(
        a: &[f32],
        b: &[f32],
        g: &mut [f32],
        scale: f32,
    ) -> f64 {
        let n = a.len();
        let (pa, pb, pg) = (a.as_ptr(), b.as_ptr(), g.as_mut_ptr());
        let s = _mm256_set1_ps(scale);
        let mut lo = _mm256_setzero_pd();
        let mut hi = _mm256_setzero_pd();
        let mut i = 0;
        while i < n {
            let left = n - i;
            let d = if left >= LANES {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                if GRAD {
                    _mm256_storeu_ps(pg.add(i), _mm256_mul_ps(d, s));
                }
                d
            } else {
                let m = mask::first(left);
                let d = _mm256_sub_ps(
                    _mm256_maskload_ps(pa.add(i), m),
                    _mm256_maskload_ps(pb.add(i), m),
                );
                if GRAD {
                    _mm256_maskstore_ps(pg.add(i), m, _mm256_mul_ps(d, s));
                }
                d
            };
            let d_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(d));
            let d_hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(d));
            lo = _mm256_fmadd_pd(d_lo, d_lo, lo);
            hi = _mm256_fmadd_pd(d_hi, d_hi, hi);
            i += LANES;
        }
        let mut lanes = [0.0f64; LANES];
        _mm256_storeu_pd(lanes.as_mut_ptr(), lo);
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4), hi);
        lane_tree(lanes)
    }
}
