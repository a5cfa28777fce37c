//! NEON maps: 4 lanes per step, the ragged end of a chunk by the portable loop. Each lane
//! does the portable loop's arithmetic in the same order (no FMA in `axpy`), so the results
//! are bitwise those of [`super`]'s scalar maps. Bound by memory: 8 to 12 bytes per element
//! against one or two vector operations.

use std::arch::aarch64::*;

/// `y = f(x)` over 4 lanes at a time, then `tail(x_rest, y_rest)`.
#[inline(always)]
unsafe fn map1(
    x: &[f32],
    y: &mut [f32],
    f: impl Fn(float32x4_t) -> float32x4_t,
    tail: impl Fn(&[f32], &mut [f32]),
) {
    debug_assert_eq!(x.len(), y.len());
    let n = y.len() / 4 * 4;
    for i in (0..n).step_by(4) {
        vst1q_f32(y.as_mut_ptr().add(i), f(vld1q_f32(x.as_ptr().add(i))));
    }
    tail(&x[n..], &mut y[n..]);
}

/// `y = f(a, b)` over 4 lanes at a time, then `tail(a_rest, b_rest, y_rest)`.
#[inline(always)]
unsafe fn map2(
    a: &[f32],
    b: &[f32],
    y: &mut [f32],
    f: impl Fn(float32x4_t, float32x4_t) -> float32x4_t,
    tail: impl Fn(&[f32], &[f32], &mut [f32]),
) {
    debug_assert!(a.len() == y.len() && b.len() == y.len());
    let n = y.len() / 4 * 4;
    for i in (0..n).step_by(4) {
        let v = f(vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i)));
        vst1q_f32(y.as_mut_ptr().add(i), v);
    }
    tail(&a[n..], &b[n..], &mut y[n..]);
}

/// `y = x < 0 ? 0 : x`: lanes below 0 are cleared (a NaN compares false and is kept).
#[target_feature(enable = "neon")]
pub(super) unsafe fn relu(x: &[f32], y: &mut [f32]) {
    map1(
        x,
        y,
        |v| vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), vcltzq_f32(v))),
        super::relu_scalar,
    );
}

/// `dx = x > 0 ? dy : 0`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    map2(
        x,
        dy,
        dx,
        |x, dy| vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(dy), vcgtzq_f32(x))),
        super::relu_backward_scalar,
    );
}

/// `y = a + b`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    map2(a, b, y, |a, b| vaddq_f32(a, b), super::add_scalar);
}

/// `y = s · x`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn scale(x: &[f32], s: f32, y: &mut [f32]) {
    map1(
        x,
        y,
        |x| vmulq_n_f32(x, s),
        |x, y| super::scale_scalar(x, s, y),
    );
}

/// `y += alpha · x`, the product rounded before the add as in the portable loop.
#[target_feature(enable = "neon")]
pub(super) unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = y.len() / 4 * 4;
    for i in (0..n).step_by(4) {
        let p = y.as_mut_ptr().add(i);
        let v = vaddq_f32(
            vld1q_f32(p),
            vmulq_n_f32(vld1q_f32(x.as_ptr().add(i)), alpha),
        );
        vst1q_f32(p, v);
    }
    super::axpy_scalar(alpha, &x[n..], &mut y[n..]);
}
