//! AVX-512F optimiser steps: the portable loops of [`super`] 16 lanes at a time, the ragged
//! end of a chunk read and written with a lane mask. Each lane does the portable loop's f32
//! operations in the same order (no FMA; IEEE `sqrt` and division), so the parameters and the
//! state come out bitwise as on every other level. Bound by memory: SGD moves 12 to 20 bytes
//! per element, Adam 28, against a handful of arithmetic operations (Adam's division and
//! square root are the most expensive, still below the loads).

use super::{AdamScalars, SgdConfig};
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

/// `g + wd·p` when `WD`, else `g`.
#[inline(always)]
unsafe fn decayed<const WD: bool>(g: __m512, p: __m512, wd: __m512) -> __m512 {
    if WD {
        _mm512_add_ps(g, _mm512_mul_ps(wd, p))
    } else {
        g
    }
}

/// SGD without momentum: `p −= lr·(grad + wd·p)`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgd_plain<const WD: bool>(c: &SgdConfig, p: &mut [f32], g: &[f32]) {
    let (lr, wd) = (_mm512_set1_ps(c.lr), _mm512_set1_ps(c.weight_decay));
    for i in (0..p.len()).step_by(16) {
        let k = first(p.len() - i);
        let pp = p.as_mut_ptr().add(i);
        let vp = _mm512_maskz_loadu_ps(k, pp);
        let vg = decayed::<WD>(_mm512_maskz_loadu_ps(k, g.as_ptr().add(i)), vp, wd);
        _mm512_mask_storeu_ps(pp, k, _mm512_sub_ps(vp, _mm512_mul_ps(lr, vg)));
    }
}

/// SGD with momentum (see [`super::sgd_step`] for the update).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn sgd_momentum<const WD: bool, const FIRST: bool, const NESTEROV: bool>(
    c: &SgdConfig,
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
) {
    let (lr, wd) = (_mm512_set1_ps(c.lr), _mm512_set1_ps(c.weight_decay));
    let (mu, one_minus_damp) = (
        _mm512_set1_ps(c.momentum),
        _mm512_set1_ps(1.0 - c.dampening),
    );
    for i in (0..p.len()).step_by(16) {
        let k = first(p.len() - i);
        let (pp, pb) = (p.as_mut_ptr().add(i), buf.as_mut_ptr().add(i));
        let vp = _mm512_maskz_loadu_ps(k, pp);
        let vg = decayed::<WD>(_mm512_maskz_loadu_ps(k, g.as_ptr().add(i)), vp, wd);
        let nb = if FIRST {
            vg
        } else {
            let b = _mm512_maskz_loadu_ps(k, pb);
            _mm512_add_ps(_mm512_mul_ps(mu, b), _mm512_mul_ps(one_minus_damp, vg))
        };
        _mm512_mask_storeu_ps(pb, k, nb);
        let d = if NESTEROV {
            _mm512_add_ps(vg, _mm512_mul_ps(mu, nb))
        } else {
            nb
        };
        _mm512_mask_storeu_ps(pp, k, _mm512_sub_ps(vp, _mm512_mul_ps(lr, d)));
    }
}

/// One Adam/AdamW step (see [`super::adam_step`]); `DECAY`: AdamW's parameter decay, `L2`:
/// Adam's gradient weight decay.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn adam<const DECAY: bool, const L2: bool>(
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let splat = |x: f32| _mm512_set1_ps(x);
    let (beta1, one_minus_beta1) = (splat(s.beta1), splat(s.one_minus_beta1));
    let (beta2, one_minus_beta2) = (splat(s.beta2), splat(s.one_minus_beta2));
    let (eps, wd, decay) = (splat(s.eps), splat(s.wd), splat(s.decay));
    let (step_size, bc2_sqrt) = (splat(s.step_size), splat(s.bc2_sqrt));
    for i in (0..p.len()).step_by(16) {
        let k = first(p.len() - i);
        let (pp, pm, pv) = (
            p.as_mut_ptr().add(i),
            m.as_mut_ptr().add(i),
            v.as_mut_ptr().add(i),
        );
        let mut x = _mm512_maskz_loadu_ps(k, pp);
        if DECAY {
            x = _mm512_mul_ps(x, decay);
        }
        let mut vg = _mm512_maskz_loadu_ps(k, g.as_ptr().add(i));
        if L2 {
            vg = _mm512_add_ps(vg, _mm512_mul_ps(wd, x));
        }
        let nm = _mm512_add_ps(
            _mm512_mul_ps(beta1, _mm512_maskz_loadu_ps(k, pm)),
            _mm512_mul_ps(one_minus_beta1, vg),
        );
        let nv = _mm512_add_ps(
            _mm512_mul_ps(beta2, _mm512_maskz_loadu_ps(k, pv)),
            _mm512_mul_ps(_mm512_mul_ps(one_minus_beta2, vg), vg),
        );
        _mm512_mask_storeu_ps(pm, k, nm);
        _mm512_mask_storeu_ps(pv, k, nv);
        let denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(nv), bc2_sqrt), eps);
        let step = _mm512_div_ps(_mm512_mul_ps(step_size, nm), denom);
        _mm512_mask_storeu_ps(pp, k, _mm512_sub_ps(x, step));
    }
}
