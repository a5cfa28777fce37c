//! The 2×2/stride-2 max-pool window on NEON: four outputs per step. `ld2` loads eight inputs
//! of a window row already split into even and odd columns, then four compare-and-select
//! steps (`fcmgt`, `fcmeq` for NaN, `bsl`) carry the maximum and its index, top-left,
//! top-right, bottom-left, bottom-right, the scalar rule's order. The ragged end of a row
//! (fewer than four outputs) runs the scalar loop. Bound by memory: 16 input floats in,
//! 4 floats and 4 indices out per step.

use std::arch::aarch64::*;

use super::pool_2x2_rows;

/// One plane: `y[r, c]`, `argmax[r, c]` over the window at `(2r, 2c)` of `xp` (rows `iw`
/// apart). The caller checks that `xp` holds `2·oh` rows reaching column `2·ow`, and `yp`,
/// `ap` hold `oh·ow`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn pool_2x2_neon(
    xp: &[f32],
    iw: usize,
    oh: usize,
    ow: usize,
    yp: &mut [f32],
    ap: &mut [u32],
) {
    let lanes = vld1q_u32([0u32, 2, 4, 6].as_ptr());
    let one = vdupq_n_u32(1);
    let full = ow / 4 * 4;
    for r in 0..oh {
        let (t0, b0) = (2 * r * iw, (2 * r + 1) * iw);
        for c in (0..full).step_by(4) {
            // Outputs c..c+4 read inputs 2c..2c+8 of the two rows.
            let top = vld2q_f32(xp.as_ptr().add(t0 + 2 * c));
            let bottom = vld2q_f32(xp.as_ptr().add(b0 + 2 * c));
            let base_t = vaddq_u32(vdupq_n_u32((t0 + 2 * c) as u32), lanes);
            let base_b = vaddq_u32(vdupq_n_u32((b0 + 2 * c) as u32), lanes);
            let mut best = vdupq_n_f32(f32::NEG_INFINITY);
            let mut at = base_t;
            for (v, idx) in [
                (top.0, base_t),
                (top.1, vaddq_u32(base_t, one)),
                (bottom.0, base_b),
                (bottom.1, vaddq_u32(base_b, one)),
            ] {
                // take = v > best || v is NaN (v ≠ v), exactly the scalar rule.
                let take = vorrq_u32(vcgtq_f32(v, best), vmvnq_u32(vceqq_f32(v, v)));
                best = vbslq_f32(take, v, best);
                at = vbslq_u32(take, idx, at);
            }
            vst1q_f32(yp.as_mut_ptr().add(r * ow + c), best);
            vst1q_u32(ap.as_mut_ptr().add(r * ow + c), at);
        }
    }
    if full < ow {
        pool_2x2_rows(xp, iw, 0..oh, full, ow, yp, ap);
    }
}
