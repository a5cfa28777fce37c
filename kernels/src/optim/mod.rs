//! Optimiser updates in place, with PyTorch's semantics (`torch.optim.SGD`, `Adam`, `AdamW`,
//! single-tensor path): the same order of operations, the same treatment of the first
//! momentum step, the bias corrections computed in f64 and applied as f32 scalars.
//!
//! Threads: parameters, gradients and state are cut into the same fixed chunks of `CHUNK`
//! (16K) elements and updated by rayon tasks; one chunk or less runs on the calling thread.
//! Each element's update is independent, so results never depend on the thread count. The
//! per-element branches (weight decay, momentum mode) are hoisted out of the loops.
//!
//! Paths: AVX-512 (`avx512.rs`, 16 lanes, masked ends) and NEON (`neon.rs`, 4 lanes) have
//! their own loops, chosen by the `*_at(level, …)` entry points; the other levels run the
//! portable loops below, plain zips that LLVM vectorises for the build's baseline (Adam's
//! `sqrt` and division included). Every path does the same f32 operations in the same order
//! (no FMA), so every level gives the same bits. Bound: memory (12 to 28 bytes per element).
//!
//! Memory: nothing is allocated; the state (momentum buffer, Adam's `m` and `v`) is the
//! caller's.

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use crate::elementwise::CHUNK;
use crate::simd::{self, SimdLevel};
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

/// SGD without momentum on one chunk: `p −= lr·(grad + wd·p)`; the reference of the vector
/// paths.
fn sgd_plain<const WD: bool>(c: &SgdConfig, p: &mut [f32], g: &[f32]) {
    for (p, &g) in p.iter_mut().zip(g) {
        let g = decayed::<WD>(g, *p, c.weight_decay);
        *p -= c.lr * g;
    }
}

/// SGD with momentum on one chunk; the reference of the vector paths.
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

/// [`sgd_plain`] on the path `level` has (the portable loop where it has none).
fn sgd_plain_at<const WD: bool>(level: SimdLevel, c: &SgdConfig, p: &mut [f32], g: &[f32]) {
    // SAFETY (each vector path): the level's promise that the CPU has its instructions; the
    // lengths are checked by `sgd_step_at`.
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::sgd_plain::<WD>(c, p, g) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::sgd_plain::<WD>(c, p, g) },
        _ => sgd_plain::<WD>(c, p, g),
    }
}

/// [`sgd_momentum`] on the path `level` has (the portable loop where it has none).
fn sgd_momentum_at<const WD: bool, const FIRST: bool, const NESTEROV: bool>(
    level: SimdLevel,
    c: &SgdConfig,
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
) {
    // SAFETY (each vector path): as in `sgd_plain_at`.
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::sgd_momentum::<WD, FIRST, NESTEROV>(c, p, g, buf) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::sgd_momentum::<WD, FIRST, NESTEROV>(c, p, g, buf) },
        _ => sgd_momentum::<WD, FIRST, NESTEROV>(c, p, g, buf),
    }
}

fn sgd_chunk(
    level: SimdLevel,
    c: &SgdConfig,
    first: bool,
    p: &mut [f32],
    g: &[f32],
    buf: &mut [f32],
) {
    let wd = c.weight_decay != 0.0;
    if c.momentum == 0.0 {
        return match wd {
            true => sgd_plain_at::<true>(level, c, p, g),
            false => sgd_plain_at::<false>(level, c, p, g),
        };
    }
    let l = level;
    match (wd, first, c.nesterov) {
        (true, true, true) => sgd_momentum_at::<true, true, true>(l, c, p, g, buf),
        (true, true, false) => sgd_momentum_at::<true, true, false>(l, c, p, g, buf),
        (true, false, true) => sgd_momentum_at::<true, false, true>(l, c, p, g, buf),
        (true, false, false) => sgd_momentum_at::<true, false, false>(l, c, p, g, buf),
        (false, true, true) => sgd_momentum_at::<false, true, true>(l, c, p, g, buf),
        (false, true, false) => sgd_momentum_at::<false, true, false>(l, c, p, g, buf),
        (false, false, true) => sgd_momentum_at::<false, false, true>(l, c, p, g, buf),
        (false, false, false) => sgd_momentum_at::<false, false, false>(l, c, p, g, buf),
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
    sgd_step_at(simd::level(), cfg, first_step, param, grad, momentum_buf)
}

/// [`sgd_step`] on a given SIMD level.
pub fn sgd_step_at(
    level: SimdLevel,
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
            sgd_chunk(level, &c, first_step, param, grad, &mut []);
        } else {
            param
                .par_chunks_mut(CHUNK)
                .zip(grad.par_chunks(CHUNK))
                .for_each(|(p, g)| sgd_chunk(level, &c, first_step, p, g, &mut []));
        }
        return;
    }
    assert_eq!(
        momentum_buf.len(),
        param.len(),
        "sgd_step: momentum buffer and param lengths differ"
    );
    if param.len() <= CHUNK {
        sgd_chunk(level, &c, first_step, param, grad, momentum_buf);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(momentum_buf.par_chunks_mut(CHUNK))
            .for_each(|((p, g), b)| sgd_chunk(level, &c, first_step, p, g, b));
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

/// `DECAY`: AdamW's parameter decay; `L2`: Adam's gradient weight decay. The reference of the
/// vector paths.
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

/// [`adam_chunk`] on the path `level` has (the portable loop where it has none).
fn adam_chunk_at<const DECAY: bool, const L2: bool>(
    level: SimdLevel,
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    // SAFETY (each vector path): the level's promise that the CPU has its instructions; the
    // lengths are checked by `adam_step_at`.
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::adam::<DECAY, L2>(s, p, g, m, v) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::adam::<DECAY, L2>(s, p, g, m, v) },
        _ => adam_chunk::<DECAY, L2>(s, p, g, m, v),
    }
}

fn adam_dispatch(
    level: SimdLevel,
    s: &AdamScalars,
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    match (s.decay != 1.0, s.wd != 0.0) {
        (true, true) => adam_chunk_at::<true, true>(level, s, p, g, m, v),
        (true, false) => adam_chunk_at::<true, false>(level, s, p, g, m, v),
        (false, true) => adam_chunk_at::<false, true>(level, s, p, g, m, v),
        (false, false) => adam_chunk_at::<false, false>(level, s, p, g, m, v),
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
    adam_step_at(simd::level(), cfg, step, param, grad, m, v)
}

/// [`adam_step`] on a given SIMD level.
pub fn adam_step_at(
    level: SimdLevel,
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
        adam_dispatch(level, &s, param, grad, m, v);
    } else {
        param
            .par_chunks_mut(CHUNK)
            .zip(grad.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| adam_dispatch(level, &s, p, g, m, v));
    }
}
