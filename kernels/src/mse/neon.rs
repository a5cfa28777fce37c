//! NEON chunk of the MSE: eight differences `d = a − b` per step (two `float32x4_t`), `d²`
//! added in f64 into the eight lanes `i mod 8` (four `float64x2_t`, one FMLA each), the
//! ragged end (fewer than 8) in scalar code into the same lanes, so the bits are those of
//! every other path. Bound by memory: 8 bytes read and 4 written per element.

use super::{lane_tree, LANES};
use std::arch::aarch64::*;

/// Σ (a − b)² over the chunk in the lanes `i mod 8`, and `g = (a − b)·scale` when `GRAD`.
///
/// # Safety
/// `b.len() == a.len()`, and `g.len() == a.len()` when `GRAD` (NEON is part of every aarch64
/// target).
#[target_feature(enable = "neon")]
pub(super) unsafe fn chunk<const GRAD: bool>(
    a: &[f32],
    b: &[f32],
    g: &mut [f32],
    scale: f32,
) -> f64 {
    let n = a.len();
    let full = n / LANES * LANES;
    let (pa, pb, pg) = (a.as_ptr(), b.as_ptr(), g.as_mut_ptr());
    let mut acc = [vdupq_n_f64(0.0); 4];
    for i in (0..full).step_by(LANES) {
        for h in 0..2 {
            let j = i + 4 * h;
            let d = vsubq_f32(vld1q_f32(pa.add(j)), vld1q_f32(pb.add(j)));
            if GRAD {
                vst1q_f32(pg.add(j), vmulq_n_f32(d, scale));
            }
            let (lo, hi) = (vcvt_f64_f32(vget_low_f32(d)), vcvt_high_f64_f32(d));
            acc[2 * h] = vfmaq_f64(acc[2 * h], lo, lo);
            acc[2 * h + 1] = vfmaq_f64(acc[2 * h + 1], hi, hi);
        }
    }
    let mut lanes = [0.0f64; LANES];
    for (k, v) in acc.iter().enumerate() {
        vst1q_f64(lanes.as_mut_ptr().add(2 * k), *v);
    }
    for i in full..n {
        let d = a[i] - b[i];
        if GRAD {
            g[i] = d * scale;
        }
        let d = d as f64;
        lanes[i % LANES] += d * d;
    }
    lane_tree(lanes)
}
