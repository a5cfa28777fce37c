//! AVX-512F rows for the forward maps and the log-softmax backward: the AVX2 rows (`avx2.rs`)
//! at twice the width. The row max, `exp` and the sum run 16 lanes at a time (the sum in
//! sixteen f64 lanes, two `__m512d`, added up in lane order at the end); the ragged end of a
//! row is read and written with a lane mask instead of scalar code, so a row of any length
//! from 16 on stays in vector code.
//!
//! `exp` is the AVX2 one lane for lane (same reduction, same Taylor polynomial, same
//! exponent-field scaling), so every element's `e^s` has the same bits as on AVX2; only the
//! order of the row sum differs.
//!
//! Bound: memory on long rows (read x, write y, read and write y again: 16 bytes per element),
//! as on AVX2; the wider vectors halve the instructions, not the bytes.

use std::arch::x86_64::*;

/// `e^x` in 16 lanes, for `x ≤ 88`: [`super::avx2::exp`] widened (see there for the
/// algorithm and its error, within one f32 epsilon). Results below f32's smallest normal
/// (`x < −87.33`) are 0; NaN stays NaN.
#[inline(always)]
pub(super) unsafe fn exp(x: __m512) -> __m512 {
    const LN2_HI: f32 = 0.693_359_4; // 355/512: 9 significant bits
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
                                         // min(88, x) with x second: a NaN x comes through.
    let x = _mm512_min_ps(_mm512_set1_ps(88.0), x);
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    // 1/k! for k = 7 down to 0.
    let mut p = _mm512_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(c));
    }
    let two_n = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(n),
        _mm512_set1_epi32(127),
    )));
    let normal = _mm512_cmp_ps_mask::<_CMP_NLT_UQ>(x, _mm512_set1_ps(-87.33));
    _mm512_maskz_mov_ps(normal, _mm512_mul_ps(p, two_n))
}

/// The lanes `0..n` of sixteen (all of them from `n = 16` on).
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// A sum of f32 vectors kept in 16 f64 lanes (two 8-lane halves), added up in lane order at
/// the end.
#[derive(Clone, Copy)]
struct LaneSum(__m512d, __m512d);

impl LaneSum {
    #[inline(always)]
    unsafe fn new() -> LaneSum {
        LaneSum(_mm512_setzero_pd(), _mm512_setzero_pd())
    }

    #[inline(always)]
    unsafe fn add(self, v: __m512) -> LaneSum {
        let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        LaneSum(
            _mm512_add_pd(self.0, _mm512_cvtps_pd(_mm512_castps512_ps256(v))),
            _mm512_add_pd(self.1, _mm512_cvtps_pd(hi)),
        )
    }

    #[inline(always)]
    unsafe fn total(self) -> f64 {
        let mut lanes = [0.0f64; 16];
        _mm512_storeu_pd(lanes.as_mut_ptr(), self.0);
        _mm512_storeu_pd(lanes.as_mut_ptr().add(8), self.1);
        lanes.iter().sum()
    }
}

/// NaN-ignoring maximum of a row; lanes past the end read −∞.
#[inline(always)]
unsafe fn row_max(x: &[f32]) -> f32 {
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut m = ninf;
    for i in (0..x.len()).step_by(16) {
        let v = _mm512_mask_loadu_ps(ninf, first(x.len() - i), x.as_ptr().add(i));
        // max(v, m) returns m where v is NaN.
        m = _mm512_max_ps(v, m);
    }
    let mut lanes = [0.0f32; 16];
    _mm512_storeu_ps(lanes.as_mut_ptr(), m);
    lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `y = s = (x − max)·inv_t` (`store_exp` false) or `y = e^s` (true), returning `Σ e^s` in
/// f64; the ragged end's missing lanes add 0.
#[inline(always)]
unsafe fn shifted_exp_sum(x: &[f32], m: f32, inv_t: f32, y: &mut [f32], store_exp: bool) -> f64 {
    let (mv, tv) = (_mm512_set1_ps(m), _mm512_set1_ps(inv_t));
    let mut sum = LaneSum::new();
    for i in (0..x.len()).step_by(16) {
        let k = first(x.len() - i);
        let s = _mm512_mul_ps(
            _mm512_sub_ps(_mm512_maskz_loadu_ps(k, x.as_ptr().add(i)), mv),
            tv,
        );
        let e = _mm512_maskz_mov_ps(k, exp(s));
        _mm512_mask_storeu_ps(y.as_mut_ptr().add(i), k, if store_exp { e } else { s });
        sum = sum.add(e);
    }
    sum.total()
}

/// `y *= a` (`add` false) or `y += a` (true) over a row.
#[inline(always)]
unsafe fn apply(y: &mut [f32], a: f32, add: bool) {
    let av = _mm512_set1_ps(a);
    for i in (0..y.len()).step_by(16) {
        let k = first(y.len() - i);
        let p = y.as_mut_ptr().add(i);
        let v = _mm512_maskz_loadu_ps(k, p);
        let v = if add {
            _mm512_add_ps(v, av)
        } else {
            _mm512_mul_ps(v, av)
        };
        _mm512_mask_storeu_ps(p, k, v);
    }
}

/// One row of `softmax(x·inv_t)`, `x.len() ≥ 16`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    debug_assert!(x.len() >= 16 && y.len() == x.len());
    let m = row_max(x);
    let z = shifted_exp_sum(x, m, inv_t, y, true);
    apply(y, (1.0 / z) as f32, false);
}

/// One row of `log_softmax(x·inv_t)`, `x.len() ≥ 16`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn log_softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    debug_assert!(x.len() >= 16 && y.len() == x.len());
    let m = row_max(x);
    let z = shifted_exp_sum(x, m, inv_t, y, false);
    apply(y, -(z.ln() as f32), true);
}

/// One row of the log-softmax backward, `dx = (dy − e^y·Σdy)·inv_t`, `y.len() ≥ 16`: `Σdy`
/// in a [`LaneSum`], then one pass with the vector `exp`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn log_softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    debug_assert!(y.len() >= 16 && dy.len() == y.len() && dx.len() == y.len());
    let n = y.len();
    let mut sum = LaneSum::new();
    for i in (0..n).step_by(16) {
        sum = sum.add(_mm512_maskz_loadu_ps(first(n - i), dy.as_ptr().add(i)));
    }
    let s = sum.total() as f32;
    let (sv, tv) = (_mm512_set1_ps(s), _mm512_set1_ps(inv_t));
    for i in (0..n).step_by(16) {
        let k = first(n - i);
        let e = exp(_mm512_maskz_loadu_ps(k, y.as_ptr().add(i)));
        let d = _mm512_maskz_loadu_ps(k, dy.as_ptr().add(i));
        _mm512_mask_storeu_ps(
            dx.as_mut_ptr().add(i),
            k,
            _mm512_mul_ps(_mm512_fnmadd_ps(e, sv, d), tv),
        );
    }
}

/// One row of the softmax backward, `dx = y·(dy − Σ y·dy)·inv_t`, `y.len() ≥ 16`: the
/// products `y·dy` are exact in f64, so the FMAs into two 8-lane f64 accumulators (element
/// `i` into lane `i mod 16`) round only their adds; then one f32 pass in the scalar row's
/// order of operations.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    debug_assert!(y.len() >= 16 && dy.len() == y.len() && dx.len() == y.len());
    let n = y.len();
    let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    for i in (0..n).step_by(16) {
        let k = first(n - i);
        let vy = _mm512_maskz_loadu_ps(k, y.as_ptr().add(i));
        let vd = _mm512_maskz_loadu_ps(k, dy.as_ptr().add(i));
        let half = |v: __m512| _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        let (y_lo, d_lo) = (_mm512_castps512_ps256(vy), _mm512_castps512_ps256(vd));
        lo = _mm512_fmadd_pd(_mm512_cvtps_pd(y_lo), _mm512_cvtps_pd(d_lo), lo);
        hi = _mm512_fmadd_pd(_mm512_cvtps_pd(half(vy)), _mm512_cvtps_pd(half(vd)), hi);
    }
    let dot = LaneSum(lo, hi).total() as f32;
    let (dot, tv) = (_mm512_set1_ps(dot), _mm512_set1_ps(inv_t));
    for i in (0..n).step_by(16) {
        let k = first(n - i);
        let vy = _mm512_maskz_loadu_ps(k, y.as_ptr().add(i));
        let vd = _mm512_maskz_loadu_ps(k, dy.as_ptr().add(i));
        let v = _mm512_mul_ps(_mm512_mul_ps(vy, _mm512_sub_ps(vd, dot)), tv);
        _mm512_mask_storeu_ps(dx.as_mut_ptr().add(i), k, v);
    }
}

#[cfg(test)]
mod tests {
    use std::arch::x86_64::*;

    /// `exp` of 16 values on AVX-512 and, in two halves, on AVX2.
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn both_widths(x: &[f32]) -> ([f32; 16], [f32; 16]) {
        let (mut wide, mut narrow) = ([0.0f32; 16], [0.0f32; 16]);
        _mm512_storeu_ps(wide.as_mut_ptr(), super::exp(_mm512_loadu_ps(x.as_ptr())));
        for h in 0..2 {
            let v = _mm256_loadu_ps(x.as_ptr().add(8 * h));
            _mm256_storeu_ps(narrow.as_mut_ptr().add(8 * h), super::super::avx2::exp(v));
        }
        (wide, narrow)
    }

    /// The 16-lane exp gives the 8-lane exp's bits on every input, special values included.
    #[test]
    fn exp_is_the_avx2_exp_lane_for_lane() {
        if !crate::simd::SimdLevel::Avx512.is_supported() {
            return;
        }
        let mut xs: Vec<f32> = (0..=100_000)
            .map(|i| -90.0 + 100.0 * i as f32 / 100_000.0)
            .collect();
        xs.extend([
            f32::NAN,
            f32::NEG_INFINITY,
            f32::INFINITY,
            -1e4,
            -87.33,
            -87.4,
            88.0,
            -0.0,
        ]);
        xs.resize(xs.len().div_ceil(16) * 16, 0.0);
        for c in xs.chunks_exact(16) {
            // SAFETY: AVX-512F (and with it AVX2 and FMA) was detected above.
            let (wide, narrow) = unsafe { both_widths(c) };
            for ((x, w), n) in c.iter().zip(wide).zip(narrow) {
                let same = w.to_bits() == n.to_bits() || (w.is_nan() && n.is_nan());
                assert!(same, "exp({x}): {w} against {n}");
            }
        }
    }
}
