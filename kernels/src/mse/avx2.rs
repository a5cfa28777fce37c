//! AVX2+FMA chunk of the MSE: eight differences `d = a − b` per step, `d²` added in f64 into
//! the eight lanes `i mod 8` (two `__m256d`); the ragged end of a chunk is read and written
//! with a lane mask (masked lanes read `0 − 0`, adding nothing). Bound by memory: 8 bytes
//! read and 4 written per element.

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
