//! AVX-512F chunk of the MSE: sixteen differences `d = a − b` per step. To give the bits of
//! the other paths, `d²` goes into the same eight f64 lanes `i mod 8` (one `__m512d`): the
//! first half of the step, then the second, so each lane still adds its elements in index
//! order. The ragged end is read and written with a lane mask (masked lanes read `0 − 0`,
//! adding nothing). Bound by memory: 8 bytes read and 4 written per element.

use super::{lane_tree, LANES};
use std::arch::x86_64::*;

/// Σ (a − b)² over the chunk in the lanes `i mod 8`, and `g = (a − b)·scale` when `GRAD`.
///
/// # Safety
/// The CPU has AVX-512F; `b.len() == a.len()`, and `g.len() == a.len()` when `GRAD`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn chunk<const GRAD: bool>(
    a: &[f32],
    b: &[f32],
    g: &mut [f32],
    scale: f32,
) -> f64 {
    let n = a.len();
    let (pa, pb, pg) = (a.as_ptr(), b.as_ptr(), g.as_mut_ptr());
    let s = _mm512_set1_ps(scale);
    let mut acc = _mm512_setzero_pd();
    for i in (0..n).step_by(2 * LANES) {
        let k: __mmask16 = if n - i >= 16 {
            0xffff
        } else {
            (1u16 << (n - i)) - 1
        };
        let d = _mm512_sub_ps(
            _mm512_maskz_loadu_ps(k, pa.add(i)),
            _mm512_maskz_loadu_ps(k, pb.add(i)),
        );
        if GRAD {
            _mm512_mask_storeu_ps(pg.add(i), k, _mm512_mul_ps(d, s));
        }
        let d_lo = _mm512_cvtps_pd(_mm512_castps512_ps256(d));
        let d_hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(
            _mm512_castps_pd(d),
        )));
        acc = _mm512_fmadd_pd(d_lo, d_lo, acc);
        acc = _mm512_fmadd_pd(d_hi, d_hi, acc);
    }
    let mut lanes = [0.0f64; LANES];
    _mm512_storeu_pd(lanes.as_mut_ptr(), acc);
    lane_tree(lanes)
}
