//! NEON rows for the forward maps and the log-softmax backward: the AVX2 rows (`avx2.rs`) at
//! four lanes. The row max, `exp` and the sum run 4 lanes at a time (the sum in four f64
//! lanes, two `float64x2_t`, added up in lane order at the end), the ragged end of a row in
//! scalar code.
//!
//! `exp` is the AVX2 one in NEON instructions (same reduction, same Taylor polynomial, same
//! exponent-field scaling; `FRINTN` rounds to nearest even as `_mm256_round_ps` does), so
//! every element's `e^s` has the bits it has on x86-64; only the order of the row sum differs.
//! The row max uses `FMAXNM`, which ignores a NaN operand as `maxps` does for its second.
//!
//! Bound: memory on long rows (16 bytes per element over two passes), as on x86-64; the
//! scalar rows are bound by their serial `expf` calls instead.

use std::arch::aarch64::*;

/// `e^x` in 4 lanes, for `x ≤ 88`: [`super`]'s AVX2 `exp` in NEON (see `avx2.rs` for the
/// algorithm and its error, within one f32 epsilon). Results below f32's smallest normal
/// (`x < −87.33`) are 0; NaN stays NaN (`FMIN` propagates it).
#[inline(always)]
pub(super) unsafe fn exp(x: float32x4_t) -> float32x4_t {
    const LN2_HI: f32 = 0.693_359_4; // 355/512: 9 significant bits
    const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
    let x = vminq_f32(vdupq_n_f32(88.0), x);
    let n = vrndnq_f32(vmulq_n_f32(x, std::f32::consts::LOG2_E));
    // r = x − n·ln 2 in two steps (FMLS: a − b·c).
    let r = vfmsq_f32(x, n, vdupq_n_f32(LN2_HI));
    let r = vfmsq_f32(r, n, vdupq_n_f32(LN2_LO));
    // 1/k! for k = 7 down to 0.
    let mut p = vdupq_n_f32(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    let two_n = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(
        vcvtnq_s32_f32(n),
        vdupq_n_s32(127),
    )));
    let under = vcltq_f32(x, vdupq_n_f32(-87.33));
    vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(vmulq_f32(p, two_n)), under))
}

/// A sum of f32 vectors kept in 4 f64 lanes, added up in lane order at the end.
#[derive(Clone, Copy)]
struct LaneSum(float64x2_t, float64x2_t);

impl LaneSum {
    #[inline(always)]
    unsafe fn new() -> LaneSum {
        LaneSum(vdupq_n_f64(0.0), vdupq_n_f64(0.0))
    }

    #[inline(always)]
    unsafe fn add(self, v: float32x4_t) -> LaneSum {
        LaneSum(
            vaddq_f64(self.0, vcvt_f64_f32(vget_low_f32(v))),
            vaddq_f64(self.1, vcvt_high_f64_f32(v)),
        )
    }

    #[inline(always)]
    unsafe fn total(self) -> f64 {
        ((vgetq_lane_f64::<0>(self.0) + vgetq_lane_f64::<1>(self.0)) + vgetq_lane_f64::<0>(self.1))
            + vgetq_lane_f64::<1>(self.1)
    }
}

/// NaN-ignoring maximum of a row of at least 4.
#[inline(always)]
unsafe fn row_max(x: &[f32]) -> f32 {
    let (full, tail) = x.split_at(x.len() / 4 * 4);
    let mut m = vdupq_n_f32(f32::NEG_INFINITY);
    for v in full.chunks_exact(4) {
        // FMAXNM returns the other operand where one is NaN.
        m = vmaxnmq_f32(vld1q_f32(v.as_ptr()), m);
    }
    tail.iter().copied().fold(vmaxnmvq_f32(m), f32::max)
}

/// `y = s = (x − max)·inv_t` (`store_exp` false) or `y = e^s` (true), returning `Σ e^s`
/// in f64: a [`LaneSum`] over the full vectors, then the tail.
#[inline(always)]
unsafe fn shifted_exp_sum(x: &[f32], m: f32, inv_t: f32, y: &mut [f32], store_exp: bool) -> f64 {
    let n = x.len() / 4 * 4;
    let (mv, tv) = (vdupq_n_f32(m), vdupq_n_f32(inv_t));
    let mut sum = LaneSum::new();
    for i in (0..n).step_by(4) {
        let s = vmulq_f32(vsubq_f32(vld1q_f32(x.as_ptr().add(i)), mv), tv);
        let e = exp(s);
        vst1q_f32(y.as_mut_ptr().add(i), if store_exp { e } else { s });
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
    let n = y.len() / 4 * 4;
    let av = vdupq_n_f32(a);
    for i in (0..n).step_by(4) {
        let p = y.as_mut_ptr().add(i);
        let v = vld1q_f32(p);
        vst1q_f32(
            p,
            if add {
                vaddq_f32(v, av)
            } else {
                vmulq_f32(v, av)
            },
        );
    }
    for v in &mut y[n..] {
        *v = if add { *v + a } else { *v * a };
    }
}

/// One row of `softmax(x·inv_t)`, `x.len() ≥ 4`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    debug_assert!(x.len() >= 4 && y.len() == x.len());
    let m = row_max(x);
    let z = shifted_exp_sum(x, m, inv_t, y, true);
    apply(y, (1.0 / z) as f32, false);
}

/// One row of `log_softmax(x·inv_t)`, `x.len() ≥ 4`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn log_softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    debug_assert!(x.len() >= 4 && y.len() == x.len());
    let m = row_max(x);
    let z = shifted_exp_sum(x, m, inv_t, y, false);
    apply(y, -(z.ln() as f32), true);
}

/// One row of the log-softmax backward, `dx = (dy − e^y·Σdy)·inv_t`, `y.len() ≥ 4`: `Σdy`
/// in a [`LaneSum`], then one pass with the vector `exp`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn log_softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    debug_assert!(y.len() >= 4 && dy.len() == y.len() && dx.len() == y.len());
    let n = y.len() / 4 * 4;
    let mut sum = LaneSum::new();
    for i in (0..n).step_by(4) {
        sum = sum.add(vld1q_f32(dy.as_ptr().add(i)));
    }
    let mut s = sum.total();
    for &d in &dy[n..] {
        s += d as f64;
    }
    let s = s as f32;
    let (sv, tv) = (vdupq_n_f32(s), vdupq_n_f32(inv_t));
    for i in (0..n).step_by(4) {
        let e = exp(vld1q_f32(y.as_ptr().add(i)));
        let d = vld1q_f32(dy.as_ptr().add(i));
        vst1q_f32(dx.as_mut_ptr().add(i), vmulq_f32(vfmsq_f32(d, e, sv), tv));
    }
    for ((dx, &y), &dy) in dx[n..].iter_mut().zip(&y[n..]).zip(&dy[n..]) {
        *dx = (dy - y.exp() * s) * inv_t;
    }
}

/// One row of the softmax backward, `dx = y·(dy − Σ y·dy)·inv_t`, `y.len() ≥ 4`: the
/// products `y·dy` are exact in f64, so the FMLAs into four f64 lanes round only their adds;
/// then one f32 pass in the scalar row's order of operations.
#[target_feature(enable = "neon")]
pub(super) unsafe fn softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    debug_assert!(y.len() >= 4 && dy.len() == y.len() && dx.len() == y.len());
    let n = y.len() / 4 * 4;
    let (mut lo, mut hi) = (vdupq_n_f64(0.0), vdupq_n_f64(0.0));
    for i in (0..n).step_by(4) {
        let (vy, vd) = (vld1q_f32(y.as_ptr().add(i)), vld1q_f32(dy.as_ptr().add(i)));
        lo = vfmaq_f64(
            lo,
            vcvt_f64_f32(vget_low_f32(vy)),
            vcvt_f64_f32(vget_low_f32(vd)),
        );
        hi = vfmaq_f64(hi, vcvt_high_f64_f32(vy), vcvt_high_f64_f32(vd));
    }
    let mut dot = LaneSum(lo, hi).total();
    for (&y, &dy) in y[n..].iter().zip(&dy[n..]) {
        dot += y as f64 * dy as f64;
    }
    let dot = dot as f32;
    let dv = vdupq_n_f32(dot);
    for i in (0..n).step_by(4) {
        let (vy, vd) = (vld1q_f32(y.as_ptr().add(i)), vld1q_f32(dy.as_ptr().add(i)));
        let v = vmulq_n_f32(vmulq_f32(vy, vsubq_f32(vd, dv)), inv_t);
        vst1q_f32(dx.as_mut_ptr().add(i), v);
    }
    for ((dx, &y), &dy) in dx[n..].iter_mut().zip(&y[n..]).zip(&dy[n..]) {
        *dx = y * (dy - dot) * inv_t;
    }
}

#[cfg(test)]
mod tests {
    use std::arch::aarch64::*;

    /// `exp` of 4 values.
    fn exp4(x: &[f32]) -> [f32; 4] {
        let mut out = [0.0f32; 4];
        // SAFETY: NEON is part of every aarch64 target.
        unsafe { vst1q_f32(out.as_mut_ptr(), super::exp(vld1q_f32(x.as_ptr()))) };
        out
    }

    /// The vector exp against f64 over [−87, 0] and a few points beyond: within one f32
    /// epsilon of relative error; 0 below the normal range; NaN through.
    #[test]
    fn exp_is_within_one_epsilon() {
        let mut worst = 0.0f64;
        let mut xs: Vec<f32> = (0..200_000)
            .map(|i| -87.0 + 87.0 * i as f32 / 200_000.0)
            .collect();
        xs.extend([0.0, -0.0, 1.0, 10.0, 88.0, -1e-7, -0.346_573_6, 0.346_573_6]);
        for c in xs.chunks_exact(4) {
            for (&x, e) in c.iter().zip(exp4(c)) {
                let want = (x as f64).exp();
                worst = worst.max((e as f64 - want).abs() / want);
            }
        }
        assert!(
            worst <= f32::EPSILON as f64,
            "worst relative error {worst:e}"
        );
        let out = exp4(&[f32::NAN, -88.0, -1e4, f32::NEG_INFINITY]);
        assert!(out[0].is_nan());
        assert_eq!(&out[1..], &[0.0, 0.0, 0.0]);
        assert_eq!(exp4(&[-87.4, 0.0, 0.0, 0.0]), [0.0, 1.0, 1.0, 1.0]);
    }
}
