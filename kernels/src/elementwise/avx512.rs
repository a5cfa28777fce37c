//! AVX-512F maps: 16 lanes per step, the ragged end of a chunk read and written with a lane
//! mask. Each lane does the portable loop's arithmetic in the same order (no FMA in `axpy`),
//! so the results are bitwise those of [`super`]'s scalar maps. Bound by memory: 8 to 12
//! bytes per element against one or two vector operations.

use std::arch::x86_64::*;

/// The lanes `0..n` of sixteen (all of them from `n = 16` on).
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// `y = f(x)` over 16 lanes at a time.
#[inline(always)]
unsafe fn map1(x: &[f32], y: &mut [f32], f: impl Fn(__m512) -> __m512) {
    debug_assert_eq!(x.len(), y.len());
    for i in (0..y.len()).step_by(16) {
        let k = first(y.len() - i);
        let v = f(_mm512_maskz_loadu_ps(k, x.as_ptr().add(i)));
        _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), k, v);
    }
}

/// `y = f(a, b)` over 16 lanes at a time.
#[inline(always)]
unsafe fn map2(a: &[f32], b: &[f32], y: &mut [f32], f: impl Fn(__m512, __m512) -> __m512) {
    debug_assert!(a.len() == y.len() && b.len() == y.len());
    for i in (0..y.len()).step_by(16) {
        let k = first(y.len() - i);
        let va = _mm512_maskz_loadu_ps(k, a.as_ptr().add(i));
        let vb = _mm512_maskz_loadu_ps(k, b.as_ptr().add(i));
        _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), k, f(va, vb));
    }
}

/// `y = x < 0 ? 0 : x`: lanes that are not below 0 (NaN included) are kept.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn relu(x: &[f32], y: &mut [f32]) {
    map1(x, y, |v| {
        let keep = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(v, _mm512_setzero_ps());
        _mm512_maskz_mov_ps(keep, v)
    });
}

/// `dx = x > 0 ? dy : 0`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    map2(x, dy, dx, |x, dy| {
        _mm512_maskz_mov_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_setzero_ps()), dy)
    });
}

/// `y = a + b`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    map2(a, b, y, |a, b| _mm512_add_ps(a, b));
}

/// `y = s · x`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scale(x: &[f32], s: f32, y: &mut [f32]) {
    let s = _mm512_set1_ps(s);
    map1(x, y, |x| _mm512_mul_ps(s, x));
}

/// `y += alpha · x`, the product rounded before the add as in the portable loop.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let alpha = _mm512_set1_ps(alpha);
    for i in (0..y.len()).step_by(16) {
        let k = first(y.len() - i);
        let p = y.as_mut_ptr().add(i);
        let vx = _mm512_maskz_loadu_ps(k, x.as_ptr().add(i));
        let v = _mm512_add_ps(_mm512_maskz_loadu_ps(k, p), _mm512_mul_ps(alpha, vx));
        _mm512_mask_storeu_ps(p, k, v);
    }
}
