//! Optimiser updates in place, with PyTorch's semantics (`torch.optim.SGD`, `Adam`, `AdamW`,
//! single-tensor path): the same order of operations, the same treatment of the first
//! momentum step, the bias corrections computed in f64 and applied as f32 scalars.
//!
//! Threads: parameters, gradients and state are cut into the same fixed chunks of `CHUNK`
//! (16K) elements and updated by rayon tasks; one chunk or less runs on the calling thread.
//! Each element's update is independent, so results never depend on the thread count. The
//! per-element branches (weight decay, momentum mode) are hoisted out of the loops, which are
//! plain zips that LLVM vectorises (Adam's `sqrt` and division included).
//!
//! Memory: nothing is allocated; the state (momentum buffer, Adam's `m` and `v`) is the
//! caller's.

use crate::elementwise::CHUNK;
use rayon::prelude::*;

/// `torch.optim.SGD` hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// `g = grad + wd·p` (PyTorch skips the add when `wd == 0`).
#[inline(always)]
fn decayed<const WD: bool>(g: f32, p: f32, wd: f32) -> f32 {
    if WD {
        g + wd * p
    } else {
        g
    }
}

/// SGD without momentum on one chunk: `p −= lr·(grad + wd·p)`.
fn sgd_plain<const WD: bool>(c: &SgdConfig, p: &mut [f32], g: &[f32]) {
    for (p, &g) in p.iter_mut().zip(g) {
        let g = decayed::<WD>(g, *p, c.weight_decay);
        *p -= c.lr * g;
    }
}

/// SGD with momentum on one chunk.
fn sgd_momentum<const WD: bool, const FIRST: bool, const NESTEROV: bool>(
    c: &SgdConfig,
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
) {
    let mu = c.momentum;
    let one_minus_damp = 1.0 - c.dampening;
    for ((p, &g), b) in p.iter_mut().zip(g).zip(buf.iter_mut()) {
        let g = decayed::<WD>(g, *p, c.weight_decay);
        let nb = if FIRST {
            g
        } else {
            mu * *b + one_minus_damp * g
        };
        *b = nb;
        let d = if NESTEROV { g + mu * nb } else { nb };
        *p -= c.lr * d;
    }
}

fn sgd_chunk(c: &SgdConfig, first: bool, p: &mut [f32], g: &[f32], buf: &mut [f32]) {
    let wd = c.weight_decay != 0.0;
    if c.momentum == 0.0 {
        return match wd {
            true => sgd_plain::<true>(c, p, g),
            false => sgd_plain::<false>(c, p, g),
        };
    }
    match (wd, first, c.nesterov) {
        (true, true, true) => sgd_momentum::<true, true, true>(c, p, g, buf),
        (true, true, false) => sgd_momentum::<true, true, false>(c, p, g, buf),
        (true, false, true) => sgd_momentum::<true, false, true>(c, p, g, buf),
        (true, false, false) => sgd_momentum::<true, false, false>(c, p, g, buf),
        (false, true, true) => sgd_momentum::<false, true, true>(c, p, g, buf),
        (false, true, false) => sgd_momentum::<false, true, false>(c, p, g, buf),
        (false, false, true) => sgd_momentum::<false, false, true>(c, p, g, buf),
        (false, false, false) => sgd_momentum::<false, false, false>(c, p, g, buf),
    }
}

/// One SGD step. `first_step` starts the momentum buffer as PyTorch does (`buf = g`).
///
/// `g = grad + wd·p`; with momentum `buf = g` on the first step, else
/// `buf = momentum·buf + (1 − dampening)·g`; `g = nesterov ? g + momentum·buf : buf`;
/// `p −= lr·g`. When `momentum == 0` the buffer is not touched (it may be empty).
pub fn sgd_step(
    cfg: &SgdConfig,
    first_step: bool,
    param: &mut [f32],
    grad: &[f32],
    momentum_buf: &mut [f32],
) {
    assert_eq!(
        grad.len(),
        param.len(),
        "sgd_step: grad and param lengths differ"
    );
    let c = *cfg;
    if c.momentum == 0.0 {
        if param.len() <= CHUNK {
            sgd_chunk(&c, first_step, param, grad, &mut []);
        } else {
            param
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .for_each(|(p, g)| sgd_chunk(&c, first_step, p, g, &mut []));
        }
        return;
    }
    assert_eq!(
        momentum_buf.len(),
        param.len(),
        "sgd_step: momentum buffer and param lengths differ"
    );
    if param.len() <= CHUNK {
        sgd_chunk(&c, first_step, param, grad, momentum_buf);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(momentum_buf.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| sgd_chunk(&c, first_step, p, g, b));
    }
}

/// `torch.optim.Adam` (`decoupled_weight_decay = false`) / `AdamW` (`true`) hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled_weight_decay: bool,
}

/// Scalars of one Adam step, computed once.
#[derive(Clone, Copy)]
struct AdamScalars {
    beta1: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    /// Adam's L2 term `wd` (added to the gradient).
    wd: f32,
    /// AdamW's factor `1 − lr·wd` (multiplies the parameter first).
    decay: f32,
    /// `lr / (1 − β1^t)`.
    step_size: f32,
    /// `sqrt(1 − β2^t)`.
    bc2_sqrt: f32,
}

/// `DECAY`: AdamW's parameter decay; `L2`: Adam's gradient weight decay.
fn adam_chunk<const DECAY: bool, const L2: bool>(
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mut x = *p;
        if DECAY {
            x *= s.decay;
        }
        let g = if L2 { g + s.wd * x } else { g };
        let nm = s.beta1 * *m + s.one_minus_beta1 * g;
        let nv = s.beta2 * *v + s.one_minus_beta2 * g * g;
        *m = nm;
        *v = nv;
        let denom = nv.sqrt() / s.bc2_sqrt + s.eps;
        *p = x - s.step_size * nm / denom;
    }
}

fn adam_dispatch(s: &AdamScalars, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    match (s.decay != 1.0, s.wd != 0.0) {
        (true, true) => adam_chunk::<true, true>(s, p, g, m, v),
        (true, false) => adam_chunk::<true, false>(s, p, g, m, v),
        (false, true) => adam_chunk::<false, true>(s, p, g, m, v),
        (false, false) => adam_chunk::<false, false>(s, p, g, m, v),
    }
}

/// One Adam/AdamW step; `step` counts from 1 (bias correction).
///
/// Adam: `g = grad + wd·p`; AdamW: `p *= 1 − lr·wd` first. Then `m = β1·m + (1−β1)·g`,
/// `v = β2·v + (1−β2)·g²`, `p −= (lr / (1−β1^t)) · m / (sqrt(v)/sqrt(1−β2^t) + eps)`.
pub fn adam_step(
    cfg: &AdamConfig,
    step: u32,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    assert!(step >= 1, "adam_step: step counts from 1");
    assert_eq!(
        grad.len(),
        param.len(),
        "adam_step: grad and param lengths differ"
    );
    assert_eq!(
        m.len(),
        param.len(),
        "adam_step: m and param lengths differ"
    );
    assert_eq!(
        v.len(),
        param.len(),
        "adam_step: v and param lengths differ"
    );
    // Scalars as PyTorch computes them: Python floats (f64), then used as f32.
    let t = step as f64;
    let bc1 = 1.0 - (cfg.beta1 as f64).powf(t);
    let bc2 = 1.0 - (cfg.beta2 as f64).powf(t);
    let decoupled = cfg.decoupled_weight_decay && cfg.weight_decay != 0.0;
    let s = AdamScalars {
        beta1: cfg.beta1,
        one_minus_beta1: 1.0 - cfg.beta1,
        beta2: cfg.beta2,
        one_minus_beta2: 1.0 - cfg.beta2,
        eps: cfg.eps,
        wd: if cfg.decoupled_weight_decay {
            0.0
        } else {
            cfg.weight_decay
        },
        decay: if decoupled {
            (1.0 - cfg.lr as f64 * cfg.weight_decay as f64) as f32
        } else {
            1.0
        },
        step_size: (cfg.lr as f64 / bc1) as f32,
        bc2_sqrt: bc2.sqrt() as f32,
    };
    if param.len() <= CHUNK {
        adam_dispatch(&s, param, grad, m, v);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adam_dispatch(&s, p, g, m, v));
    }
}
