//! NEON optimiser steps: the portable loops of [`super`] 4 lanes at a time, the ragged end of
//! a chunk by the portable loop itself. Each lane does the portable loop's f32 operations in
//! the same order (no FMA; IEEE `FSQRT` and `FDIV`), so the parameters and the state come out
//! bitwise as on every other level. Bound by memory: SGD moves 12 to 20 bytes per element,
//! Adam 28, against a handful of arithmetic operations.

use super::{AdamScalars, SgdConfig};
use std::arch::aarch64::*;

/// `g + wd·p` when `WD`, else `g`.
#[inline(always)]
unsafe fn decayed<const WD: bool>(g: float32x4_t, p: float32x4_t, wd: f32) -> float32x4_t {
    if WD {
        vaddq_f32(g, vmulq_n_f32(p, wd))
    } else {
        g
    }
}

/// SGD without momentum: `p −= lr·(grad + wd·p)`.
#[target_feature(enable = "neon")]
pub(super) unsafe fn sgd_plain<const WD: bool>(c: &SgdConfig, p: &mut [f32], g: &[f32]) {
    let n = p.len() / 4 * 4;
    for i in (0..n).step_by(4) {
        let pp = p.as_mut_ptr().add(i);
        let vp = vld1q_f32(pp);
        let vg = decayed::<WD>(vld1q_f32(g.as_ptr().add(i)), vp, c.weight_decay);
        vst1q_f32(pp, vsubq_f32(vp, vmulq_n_f32(vg, c.lr)));
    }
    super::sgd_plain::<WD>(c, &mut p[n..], &g[n..]);
}

/// SGD with momentum (see [`super::sgd_step`] for the update).
#[target_feature(enable = "neon")]
pub(super) unsafe fn sgd_momentum<const WD: bool, const FIRST: bool, const NESTEROV: bool>(
    c: &SgdConfig,
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
) {
    let (mu, one_minus_damp) = (c.momentum, 1.0 - c.dampening);
    let n = p.len() / 4 * 4;
    for i in (0..n).step_by(4) {
        let (pp, pb) = (p.as_mut_ptr().add(i), buf.as_mut_ptr().add(i));
        let vp = vld1q_f32(pp);
        let vg = decayed::<WD>(vld1q_f32(g.as_ptr().add(i)), vp, c.weight_decay);
        let nb = if FIRST {
            vg
        } else {
            vaddq_f32(
                vmulq_n_f32(vld1q_f32(pb), mu),
                vmulq_n_f32(vg, one_minus_damp),
            )
        };
        vst1q_f32(pb, nb);
        let d = if NESTEROV {
            vaddq_f32(vg, vmulq_n_f32(nb, mu))
        } else {
            nb
        };
        vst1q_f32(pp, vsubq_f32(vp, vmulq_n_f32(d, c.lr)));
    }
    super::sgd_momentum::<WD, FIRST, NESTEROV>(c, &mut p[n..], &g[n..], &mut buf[n..]);
}

/// One Adam/AdamW step (see [`super::adam_step`]); `DECAY`: AdamW's parameter decay, `L2`:
/// Adam's gradient weight decay.
#[target_feature(enable = "neon")]
pub(super) unsafe fn adam<const DECAY: bool, const L2: bool>(
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let (eps, bc2_sqrt) = (vdupq_n_f32(s.eps), vdupq_n_f32(s.bc2_sqrt));
    let n = p.len() / 4 * 4;
    for i in (0..n).step_by(4) {
        let (pp, pm, pv) = (
            p.as_mut_ptr().add(i),
            m.as_mut_ptr().add(i),
            v.as_mut_ptr().add(i),
        );
        let mut x = vld1q_f32(pp);
        if DECAY {
            x = vmulq_n_f32(x, s.decay);
        }
        let mut vg = vld1q_f32(g.as_ptr().add(i));
        if L2 {
            vg = vaddq_f32(vg, vmulq_n_f32(x, s.wd));
        }
        let nm = vaddq_f32(
            vmulq_n_f32(vld1q_f32(pm), s.beta1),
            vmulq_n_f32(vg, s.one_minus_beta1),
        );
        let nv = vaddq_f32(
            vmulq_n_f32(vld1q_f32(pv), s.beta2),
            vmulq_f32(vmulq_n_f32(vg, s.one_minus_beta2), vg),
        );
        vst1q_f32(pm, nm);
        vst1q_f32(pv, nv);
        let denom = vaddq_f32(vdivq_f32(vsqrtq_f32(nv), bc2_sqrt), eps);
        let step = vdivq_f32(vmulq_n_f32(nm, s.step_size), denom);
        vst1q_f32(pp, vsubq_f32(x, step));
    }
    super::adam_chunk::<DECAY, L2>(s, &mut p[n..], &g[n..], &mut m[n..], &mut v[n..]);
}
