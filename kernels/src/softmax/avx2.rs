//! AVX2+FMA rows for the forward maps: the row max, `exp` and the sum run 8 lanes at a time
//! (the sum in four f64 lanes per half, added up in a fixed order at the end), the ragged end
//! of a row in scalar code. The scalar rows are a serial chain of `expf` calls and f64 adds;
//! these are bound by memory instead.

use std::arch::x86_64::*;

/// `e^x` in 8 lanes, for `x ≤ 88` (the callers pass `(x − max)/T ≤ 0`): `x = n·ln 2 + r`
/// with `n` the nearest integer to `x·log2 e` and `|r| ≤ ln2/2`, `e^r` from its Taylor
/// series to `r⁷` (truncation < 1e-8 relative) by FMA Horner steps, scaled by `2^n`
/// written straight into the exponent field; measured worst error 7.6e-8 relative (0.64
/// of f32's epsilon) over [−87, 0]. `ln 2` is split
/// into a short high part (`n·LN2_HI` is exact) and a low correction. Results below
/// f32's smallest normal (`x < −87.33`) are flushed to 0; NaN stays NaN.
#[inline(always)]
pub(super) unsafe fn exp(x: __m256) -> __m256 {
    const LN2_HI: f32 = 0.693_359_4; // 355/512: 9 significant bits
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
                                         // min(88, x) with x second: a NaN x comes through.
    let x = _mm256_min_ps(_mm256_set1_ps(88.0), x);
    let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        x,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
    let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
    // 1/k! for k = 7 down to 0.
    let mut p = _mm256_set1_ps(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(n),
        _mm256_set1_epi32(127),
    )));
    let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.33));
    _mm256_andnot_ps(under, _mm256_mul_ps(p, two_n))
}

/// A sum of f32 vectors kept in 8 f64 lanes (two 4-lane halves), added up in lane order
/// at the end: exact enough for a row sum, and the same order on every run.
#[derive(Clone, Copy)]
struct LaneSum(__m256d, __m256d);

impl LaneSum {
    #[inline(always)]
    unsafe fn new() -> LaneSum {
        LaneSum(_mm256_setzero_pd(), _mm256_setzero_pd())
    }

    #[inline(always)]
    unsafe fn add(self, v: __m256) -> LaneSum {
        LaneSum(
            _mm256_add_pd(self.0, _mm256_cvtps_pd(_mm256_castps256_ps128(v))),
            _mm256_add_pd(self.1, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v))),
        )
    }

    #[inline(always)]
    unsafe fn total(self) -> f64 {
        let mut lanes = [0.0f64; 8];
        _mm256_storeu_pd(lanes.as_mut_ptr(), self.0);
        _mm256_storeu_pd(lanes.as_mut_ptr().add(4), self.1);
        lanes.iter().sum()
    }
}

/// NaN-ignoring maximum of a row of at least 8.
#[inline(always)]
unsafe fn row_max(x: &[f32]) -> f32 {
    let (full, tail) = x.split_at(x.len() / 8 * 8);
    let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
    for v in full.chunks_exact(8) {
        // max(v, m) returns m where v is NaN.
        m = _mm256_max_ps(_mm256_loadu_ps(v.as_ptr()), m);
    }
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), m);
    lanes
        .iter()
        .chain(tail)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `y = s = (x − max)·inv_t` (`store_exp` false) or `y = e^s` (true), returning `Σ e^s`
/// in f64: a [`LaneSum`] over the full vectors, then the tail.
#[inline(always)]
unsafe fn shifted_exp_sum(x: &[f32], m: f32, inv_t: f32, y: &mut [f32], store_exp: bool) -> f64 {
    let n = x.len() / 8 * 8;
    let (mv, tv) = (_mm256_set1_ps(m), _mm256_set1_ps(inv_t));
    let mut sum = LaneSum::new();
    for i in (0..n).step_by(8) {
        let s = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), mv), tv);
        let e = exp(s);
        _mm256_storeu_ps(y.as_mut_ptr().add(i), if store_exp { e } else { s });
        sum = sum.add(e);
    }
    let mut z = sum.total();
    for (y, &x) in y[n..].iter_mut().zip(&x[n..]) {
        let s = (x - m) * inv_t;
        let e = s.exp();
        *y = if store_exp { e } else { s };
        z += e as f64;
    }
    z
}

/// `y *= a` (`add` false) or `y += a` (true) over a row.
#[inline(always)]
unsafe fn apply(y: &mut [f32], a: f32, add: bool) {
    let n = y.len() / 8 * 8;
    let av = _mm256_set1_ps(a);
    for i in (0..n).step_by(8) {
        let p = y.as_mut_ptr().add(i);
        let v = _mm256_loadu_ps(p);
        _mm256_storeu_ps(
            p,
            if add {
                _mm256_add_ps(v, av)
            } else {
                _mm256_mul_ps(v, av)
            },
        );
    }
    for v in &mut y[n..] {
        *v = if add { *v + a } else { *v * a };
    }
}

/// One row of `softmax(x·inv_t)`, `x.len() ≥ 8`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    debug_assert!(x.len() >= 8 && y.len() == x.len());
    let m = row_max(x);
    let z = shifted_exp_sum(x, m, inv_t, y, true);
    apply(y, (1.0 / z) as f32, false);
}

/// One row of `log_softmax(x·inv_t)`, `x.len() ≥ 8`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn log_softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    debug_assert!(x.len() >= 8 && y.len() == x.len());
    let m = row_max(x);
    let z = shifted_exp_sum(x, m, inv_t, y, false);
    apply(y, -(z.ln() as f32), true);
}

/// One row of the log-softmax backward, `dx = (dy − e^y·Σdy)·inv_t`, `y.len() ≥ 8`:
/// `Σdy` in a [`LaneSum`], then one pass with the vector `exp`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn log_softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    debug_assert!(y.len() >= 8 && dy.len() == y.len() && dx.len() == y.len());
    let n = y.len() / 8 * 8;
    let mut sum = LaneSum::new();
    for i in (0..n).step_by(8) {
        sum = sum.add(_mm256_loadu_ps(dy.as_ptr().add(i)));
    }
    let mut s = sum.total();
    for &d in &dy[n..] {
        s += d as f64;
    }
    let s = s as f32;
    let (sv, tv) = (_mm256_set1_ps(s), _mm256_set1_ps(inv_t));
    for i in (0..n).step_by(8) {
        let e = exp(_mm256_loadu_ps(y.as_ptr().add(i)));
        let d = _mm256_loadu_ps(dy.as_ptr().add(i));
        _mm256_storeu_ps(
            dx.as_mut_ptr().add(i),
            _mm256_mul_ps(_mm256_fnmadd_ps(e, sv, d), tv),
        );
    }
    for ((dx, &y), &dy) in dx[n..].iter_mut().zip(&y[n..]).zip(&dy[n..]) {
        *dx = (dy - y.exp() * s) * inv_t;
    }
}

#[cfg(test)]
mod tests {
    /// The vector exp against f64 over [−87, 0] and a few points beyond: within one f32
    /// epsilon of relative error (measured worst: 7.6e-8); 0 below the normal range; NaN
    /// through.
    #[test]
    fn exp_is_within_one_epsilon() {
        if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
            return;
        }
        let mut worst = 0.0f64;
        let mut xs: Vec<f32> = (0..=200_000)
            .map(|i| -87.0 + 87.0 * i as f32 / 200_000.0)
            .collect();
        xs.extend([0.0, -0.0, 1.0, 10.0, 88.0, -1e-7, -0.346_573_6, 0.346_573_6]);
        for c in xs.chunks(8) {
            let mut v = [0.0f32; 8];
            v[..c.len()].copy_from_slice(c);
            let mut out = [0.0f32; 8];
            // SAFETY: AVX2 and FMA were detected above.
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(out.as_mut_ptr(), super::exp(_mm256_loadu_ps(v.as_ptr())));
            }
            for (&x, &e) in v.iter().zip(&out) {
                let want = (x as f64).exp();
                let rel = (e as f64 - want).abs() / want;
                worst = worst.max(rel);
            }
        }
        assert!(
            worst <= f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
        let special = [
            f32::NAN,
            -88.0,
            -1e4,
            f32::NEG_INFINITY,
            -87.4,
            0.0,
            0.0,
            0.0,
        ];
        let mut out = [0.0f32; 8];
        // SAFETY: as above.
        unsafe {
            use std::arch::x86_64::*;
            _mm256_storeu_ps(
                out.as_mut_ptr(),
                super::exp(_mm256_loadu_ps(special.as_ptr())),
            );
        }
        assert!(out[0].is_nan());
        assert_eq!(&out[1..6], &[0.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
