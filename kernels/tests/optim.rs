//! SGD / Adam / AdamW against a straightforward f64 re-implementation of PyTorch's update
//! rules, over several steps; plus hand-checked special cases.

use distill_kernels::optim::{
    adam_step, adam_step_at, sgd_step, sgd_step_at, AdamConfig, SgdConfig,
};
use distill_kernels::simd::{self, SimdLevel};

mod common;
use common::{Rng, TestRng};

const SIZES: &[usize] = &[1, 3, 7, 13, 127, 1000, 100_003];
const STEPS: u32 = 6;

fn assert_close(got: &[f32], want: &[f64], rel: f64, abs: f64, what: &str) {
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w).abs();
        assert!(
            err <= abs + rel * w.abs(),
            "{what}[{i}]: got {g}, want {w} (err {err:e})"
        );
    }
}

/// torch.optim.SGD, one element, f64.
fn ref_sgd(c: &SgdConfig, first: bool, p: &mut f64, g: f64, buf: &mut f64) {
    let (lr, mu, damp, wd) = (
        c.lr as f64,
        c.momentum as f64,
        c.dampening as f64,
        c.weight_decay as f64,
    );
    let mut d = g + wd * *p;
    if mu != 0.0 {
        *buf = if first {
            d
        } else {
            mu * *buf + (1.0 - damp) * d
        };
        d = if c.nesterov { d + mu * *buf } else { *buf };
    }
    *p -= lr * d;
}

/// torch.optim.Adam / AdamW, one element, f64.
fn ref_adam(c: &AdamConfig, step: u32, p: &mut f64, g: f64, m: &mut f64, v: &mut f64) {
    let (lr, b1, b2, eps, wd) = (
        c.lr as f64,
        c.beta1 as f64,
        c.beta2 as f64,
        c.eps as f64,
        c.weight_decay as f64,
    );
    let mut g = g;
    if c.decoupled_weight_decay {
        *p *= 1.0 - lr * wd;
    } else {
        g += wd * *p;
    }
    *m = b1 * *m + (1.0 - b1) * g;
    *v = b2 * *v + (1.0 - b2) * g * g;
    let bc1 = 1.0 - b1.powi(step as i32);
    let bc2 = 1.0 - b2.powi(step as i32);
    *p -= (lr / bc1) * *m / (v.sqrt() / bc2.sqrt() + eps);
}

#[test]
fn sgd_matches_pytorch_reference() {
    let sgd = |lr, momentum, dampening, weight_decay, nesterov| SgdConfig {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    };
    let configs = [
        sgd(0.1, 0.0, 0.0, 0.0, false),
        sgd(0.05, 0.0, 0.0, 1e-2, false),
        sgd(0.1, 0.9, 0.0, 0.0, false),
        sgd(0.03, 0.9, 0.1, 5e-4, false),
        sgd(0.1, 0.5, 0.5, 0.0, false),
        sgd(0.02, 0.9, 0.0, 1e-3, true),
        sgd(0.1, 0.99, 0.0, 0.0, true),
    ];
    let mut rng = Rng::new(20);
    for c in &configs {
        for &n in SIZES {
            let mut p = rng.vec(n, 1.0);
            let mut buf = if c.momentum != 0.0 {
                vec![f32::NAN; n] // must be overwritten on the first step
            } else {
                Vec::new() // unused without momentum, may be empty
            };
            let mut rp: Vec<f64> = p.iter().map(|&v| v as f64).collect();
            let mut rb = vec![0.0f64; n];
            for step in 1..=STEPS {
                let g = rng.vec(n, 1.0);
                sgd_step(c, step == 1, &mut p, &g, &mut buf);
                for i in 0..n {
                    ref_sgd(c, step == 1, &mut rp[i], g[i] as f64, &mut rb[i]);
                }
            }
            let what = format!("sgd {c:?} n={n}");
            assert_close(&p, &rp, 1e-5, 1e-6, &what);
            if c.momentum != 0.0 {
                assert_close(&buf, &rb, 1e-5, 1e-6, &format!("{what} buf"));
            }
        }
    }
}

#[test]
fn sgd_hand_checked() {
    // Constant gradient 1, momentum 0.9, no dampening: buf = 1, 1.9, 2.71; p = 1 − 0.1·Σ buf.
    let c = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let (mut p, mut b) = ([1.0f32], [0.0f32]);
    for step in 0..3 {
        sgd_step(&c, step == 0, &mut p, &[1.0], &mut b);
    }
    assert!((b[0] - 2.71).abs() < 1e-6, "{b:?}");
    assert!(
        (p[0] - (1.0 - 0.1 * (1.0 + 1.9 + 2.71))).abs() < 1e-6,
        "{p:?}"
    );
    // Nesterov first step: buf = g, update g + 0.9·buf = 1.9·g.
    let c = SgdConfig {
        nesterov: true,
        ..c
    };
    let (mut p, mut b) = ([0.0f32], [0.0f32]);
    sgd_step(&c, true, &mut p, &[2.0], &mut b);
    assert!(
        (p[0] + 0.1 * 3.8).abs() < 1e-6 && b[0] == 2.0,
        "{p:?} {b:?}"
    );
    // Dampening does not apply on the first step (PyTorch clones g into the buffer).
    let c = SgdConfig {
        nesterov: false,
        dampening: 0.5,
        ..c
    };
    let (mut p, mut b) = ([0.0f32], [0.0f32]);
    sgd_step(&c, true, &mut p, &[2.0], &mut b);
    assert_eq!(b[0], 2.0);
    sgd_step(&c, false, &mut p, &[2.0], &mut b);
    assert!((b[0] - (0.9 * 2.0 + 0.5 * 2.0)).abs() < 1e-6, "{b:?}");
}

#[test]
fn adam_and_adamw_match_pytorch_reference() {
    let adam = |lr, beta1, beta2, eps, weight_decay, decoupled_weight_decay| AdamConfig {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled_weight_decay,
    };
    let configs = [
        adam(1e-3, 0.9, 0.999, 1e-8, 0.0, false),
        adam(1e-2, 0.9, 0.999, 1e-8, 1e-2, false),
        adam(1e-2, 0.9, 0.999, 1e-8, 1e-2, true),
        adam(3e-3, 0.5, 0.9, 1e-6, 0.1, true),
        adam(1e-1, 0.0, 0.99, 1e-8, 5e-4, false),
    ];
    let mut rng = Rng::new(21);
    for c in &configs {
        for &n in SIZES {
            let mut p = rng.vec(n, 1.0);
            let mut m = vec![0.0f32; n];
            let mut v = vec![0.0f32; n];
            let mut rp: Vec<f64> = p.iter().map(|&x| x as f64).collect();
            let mut rm = vec![0.0f64; n];
            let mut rv = vec![0.0f64; n];
            for step in 1..=STEPS {
                let g = rng.vec(n, 1.0);
                adam_step(c, step, &mut p, &g, &mut m, &mut v);
                for i in 0..n {
                    ref_adam(c, step, &mut rp[i], g[i] as f64, &mut rm[i], &mut rv[i]);
                }
            }
            let what = format!("adam {c:?} n={n}");
            assert_close(&p, &rp, 1e-5, 1e-6, &what);
            assert_close(&m, &rm, 1e-5, 1e-7, &format!("{what} m"));
            assert_close(&v, &rv, 1e-5, 1e-8, &format!("{what} v"));
        }
    }
}

#[test]
fn adam_hand_checked() {
    // First step, no weight decay: m̂ = g, v̂ = g², so p moves by lr·g/(|g| + eps) ≈ lr·sign(g).
    let c = AdamConfig {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled_weight_decay: false,
    };
    let mut p = [1.0f32, 1.0, 1.0];
    let (mut m, mut v) = ([0.0f32; 3], [0.0f32; 3]);
    adam_step(&c, 1, &mut p, &[0.5, -3.0, 1e-3], &mut m, &mut v);
    for (x, want) in p.iter().zip([0.99f32, 1.01, 0.99]) {
        assert!((x - want).abs() < 1e-5, "{p:?}");
    }
    // AdamW with a zero gradient only decays: p·(1 − lr·wd).
    let c = AdamConfig {
        weight_decay: 0.1,
        decoupled_weight_decay: true,
        ..c
    };
    let mut p = [2.0f32];
    let (mut m, mut v) = ([0.0f32], [0.0f32]);
    adam_step(&c, 1, &mut p, &[0.0], &mut m, &mut v);
    assert!((p[0] - 2.0 * (1.0 - 0.01 * 0.1)).abs() < 1e-7, "{p:?}");
    // Adam (coupled) with a zero gradient: g = wd·p = 0.2, first step moves by ≈ lr.
    let c = AdamConfig {
        decoupled_weight_decay: false,
        ..c
    };
    let mut p = [2.0f32];
    let (mut m, mut v) = ([0.0f32], [0.0f32]);
    adam_step(&c, 1, &mut p, &[0.0], &mut m, &mut v);
    assert!((p[0] - 1.99).abs() < 1e-6, "{p:?}");
}

#[test]
#[should_panic(expected = "step counts from 1")]
fn adam_step_zero_panics() {
    let c = AdamConfig {
        lr: 0.01,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled_weight_decay: false,
    };
    adam_step(&c, 0, &mut [0.0], &[0.0], &mut [0.0], &mut [0.0]);
}

/// Lengths around each vector width (4, 8, 16) and past one chunk.
const LEVEL_SIZES: &[usize] = &[1, 3, 4, 5, 15, 16, 17, 33, 16_391];

/// The bits of a slice.
fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|v| v.to_bits()).collect()
}

/// Every level's SGD (each mode: plain, momentum, dampening, Nesterov, with and without
/// weight decay, first and later steps) gives the scalar level's bits.
#[test]
fn sgd_at_every_level_is_the_scalar_step_bitwise() {
    let sgd = |momentum, dampening, weight_decay, nesterov| SgdConfig {
        lr: 0.05,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    };
    let configs = [
        sgd(0.0, 0.0, 0.0, false),
        sgd(0.0, 0.0, 1e-3, false),
        sgd(0.9, 0.0, 0.0, false),
        sgd(0.9, 0.1, 5e-4, false),
        sgd(0.9, 0.0, 5e-4, true),
        sgd(0.5, 0.0, 0.0, true),
    ];
    let mut rng = Rng::new(31);
    for c in &configs {
        for &n in LEVEL_SIZES {
            let p0 = rng.vec(n, 1.0);
            let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(n, 1.0)).collect();
            let run = |level: SimdLevel| {
                let (mut p, mut buf) = (p0.clone(), vec![0.0f32; n]);
                for (k, g) in grads.iter().enumerate() {
                    sgd_step_at(level, c, k == 0, &mut p, g, &mut buf);
                }
                (bits(&p), bits(&buf))
            };
            let want = run(SimdLevel::Scalar);
            for level in simd::available() {
                assert!(run(level) == want, "sgd {c:?} n={n} [{level}]");
            }
        }
    }
}

/// Every level's Adam and AdamW (with and without each weight decay) gives the scalar
/// level's bits over a few steps.
#[test]
fn adam_at_every_level_is_the_scalar_step_bitwise() {
    let adam = |weight_decay, decoupled_weight_decay| AdamConfig {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay,
        decoupled_weight_decay,
    };
    let configs = [adam(0.0, false), adam(1e-2, false), adam(1e-2, true)];
    let mut rng = Rng::new(32);
    for c in &configs {
        for &n in LEVEL_SIZES {
            let p0 = rng.vec(n, 1.0);
            let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(n, 1.0)).collect();
            let run = |level: SimdLevel| {
                let (mut p, mut m, mut v) = (p0.clone(), vec![0.0f32; n], vec![0.0f32; n]);
                for (k, g) in grads.iter().enumerate() {
                    adam_step_at(level, c, k as u32 + 1, &mut p, g, &mut m, &mut v);
                }
                (bits(&p), bits(&m), bits(&v))
            };
            let want = run(SimdLevel::Scalar);
            for level in simd::available() {
                assert!(run(level) == want, "adam {c:?} n={n} [{level}]");
            }
        }
    }
}
