//! Every op's backward against central finite differences, on random shapes (CPU backend;
//! `gpu_engine.rs` repeats the gradient checks through the GPU backend).
//!
//! For an op y = f(x₁, …), we back-propagate a random cotangent r and compare each input's
//! gradient with (L(x + εe) − L(x − εe)) / 2ε where L = Σ y·r, at random coordinates.

use distill::ops::{self, Conv2dParams};
use distill::rng::Rng;
use distill::{no_grad, Device, Result, Tensor};

mod common;
use common::gradcheck;

fn dev() -> Device {
    Device::cpu()
}

#[test]
fn matmul_and_linear() {
    let mut rng = Rng::new(1);
    for &(m, k, n) in &[(1, 1, 1), (3, 7, 5), (13, 4, 9)] {
        gradcheck(&dev(), &mut rng, &[&[m, k], &[k, n]], 0.5, 2e-3, |t| {
            ops::matmul(&t[0], &t[1])
        });
        for relu in [false, true] {
            gradcheck(
                &dev(),
                &mut rng,
                &[&[m, k], &[n, k], &[n]],
                if relu { 1e-3 } else { 0.5 },
                5e-3,
                |t| ops::linear(&t[0], &t[1], Some(&t[2]), relu),
            );
        }
    }
}

#[test]
fn conv2d_all_inputs() {
    let mut rng = Rng::new(2);
    let cases = [
        // (n, c, h, w, o, kh, kw, stride, pad)
        (1, 1, 5, 5, 2, 3, 3, (1, 1), (1, 1)),
        (2, 3, 7, 6, 4, 3, 2, (2, 1), (0, 1)),
        (1, 2, 4, 4, 3, 1, 1, (1, 1), (0, 0)),
        (2, 2, 6, 5, 2, 2, 3, (2, 3), (2, 0)),
    ];
    for (n, c, h, w, o, kh, kw, stride, padding) in cases {
        let p = Conv2dParams { stride, padding };
        gradcheck(
            &dev(),
            &mut rng,
            &[&[n, c, h, w], &[o, c, kh, kw], &[o]],
            0.5,
            2e-3,
            |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), p),
        );
    }
}

/// The conv + 2×2 pool op, with and without its ReLU: all inputs (the kernels one after the
/// other through a full-size gradient), and the weight and bias alone with a constant input
/// (the CPU's fused path for thin convs, K ≤ 12), on odd and even conv outputs (an odd one
/// drops its last row and column).
#[test]
fn conv2d_max_pool2() {
    let mut rng = Rng::new(12);
    let cases = [
        // (n, c, h, w, o, kh, kw, stride, pad)
        (3, 1, 8, 8, 4, 3, 3, (1, 1), (1, 1)),
        (2, 1, 7, 9, 3, 3, 3, (1, 1), (1, 1)),
        (2, 3, 9, 8, 2, 2, 2, (1, 2), (0, 0)),
        (1, 5, 6, 6, 3, 3, 3, (1, 1), (1, 1)),
    ];
    for relu in [false, true] {
        for (n, c, h, w, o, kh, kw, stride, padding) in cases {
            let p = Conv2dParams { stride, padding };
            let (xs, ws) = ([n, c, h, w], [o, c, kh, kw]);
            gradcheck(&dev(), &mut rng, &[&xs, &ws, &[o]], 1e-3, 5e-3, |t| {
                ops::conv2d_max_pool2(&t[0], &t[1], Some(&t[2]), p, relu)
            });
            let x: Vec<f32> = (0..n * c * h * w).map(|_| rng.normal()).collect();
            let x = Tensor::from_f32(&x, &xs, &dev()).unwrap();
            gradcheck(&dev(), &mut rng, &[&ws, &[o]], 1e-3, 5e-3, |t| {
                ops::conv2d_max_pool2(&x, &t[0], Some(&t[1]), p, relu)
            });
        }
    }
}

#[test]
fn max_pool2d() {
    let mut rng = Rng::new(3);
    for &(shape, kernel, stride) in &[
        ([1, 1, 4, 4], (2, 2), (2, 2)),
        ([2, 3, 7, 5], (3, 2), (2, 1)),
        ([1, 2, 5, 5], (3, 3), (2, 2)),
    ] {
        // Distinct, well-separated values so ±ε never changes which element wins.
        gradcheck_spread(&mut rng, &shape, |t| ops::max_pool2d(&t[0], kernel, stride));
    }
}

#[test]
fn relu_reshape_flatten_add_scale_sum_mean() {
    let mut rng = Rng::new(4);
    gradcheck_spread(&mut rng, &[3, 4], |t| ops::relu(&t[0]));
    gradcheck(&dev(), &mut rng, &[&[2, 3, 2, 2]], 0.5, 1e-3, |t| {
        ops::flatten(&t[0])
    });
    gradcheck(&dev(), &mut rng, &[&[6, 4]], 0.5, 1e-3, |t| {
        ops::reshape(&t[0], &[3, 8])
    });
    gradcheck(&dev(), &mut rng, &[&[5, 3], &[5, 3]], 0.5, 1e-3, |t| {
        ops::add(&t[0], &t[1])
    });
    gradcheck(&dev(), &mut rng, &[&[7]], 0.5, 1e-3, |t| {
        ops::scale(&t[0], -2.5)
    });
    gradcheck(&dev(), &mut rng, &[&[4, 5]], 0.5, 1e-3, |t| ops::sum(&t[0]));
    gradcheck(&dev(), &mut rng, &[&[4, 5]], 0.5, 1e-3, |t| {
        ops::mean(&t[0])
    });
    // The same tensor used twice: gradients that meet must add.
    gradcheck(&dev(), &mut rng, &[&[3, 3]], 0.5, 1e-3, |t| {
        ops::add(&t[0], &ops::scale(&t[0], 3.0)?)
    });
}

#[test]
fn softmax_family_and_losses() {
    let mut rng = Rng::new(5);
    for &(rows, cols) in &[(1, 2), (3, 10), (7, 13)] {
        for t in [1.0f32, 4.0] {
            gradcheck(&dev(), &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::softmax_t(&x[0], t)
            });
            gradcheck(&dev(), &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::log_softmax(&x[0], t)
            });
        }
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(cols) as u32).collect();
        let l = Tensor::from_u32(&labels, &[rows], &dev()).unwrap();
        gradcheck(&dev(), &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
            ops::cross_entropy(&x[0], &l)
        });
        let teacher: Vec<f32> = (0..rows * cols).map(|_| 3.0 * rng.normal()).collect();
        let teacher = Tensor::from_f32(&teacher, &[rows, cols], &dev()).unwrap();
        for (t, alpha) in [(4.0, 0.9), (1.0, 0.0), (2.0, 1.0)] {
            gradcheck(&dev(), &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::kd_loss(&x[0], &teacher, &l, t, alpha)
            });
        }
        // A transfer set: every other row has soft targets only.
        let masked: Vec<u32> = labels
            .iter()
            .enumerate()
            .map(|(r, &y)| if r % 2 == 1 { ops::NO_LABEL } else { y })
            .collect();
        let masked = Tensor::from_u32(&masked, &[rows], &dev()).unwrap();
        for (t, alpha) in [(4.0, 0.9), (1.0, 0.0)] {
            gradcheck(&dev(), &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::kd_loss(&x[0], &teacher, &masked, t, alpha)
            });
        }
    }
}

/// A whole student-shaped network: conv, relu, pool, flatten, fused linear+relu, loss.
#[test]
fn small_network_end_to_end() {
    let mut rng = Rng::new(6);
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
    };
    let labels = Tensor::from_u32(&[1, 0], &[2], &dev()).unwrap();
    gradcheck(
        &dev(),
        &mut rng,
        &[&[2, 1, 6, 6], &[3, 1, 3, 3], &[3], &[4, 27], &[4]],
        1e-2,
        1e-2,
        |t| {
            let h = ops::conv2d(&t[0], &t[1], Some(&t[2]), p)?;
            let h = ops::relu(&h)?;
            let h = ops::max_pool2d(&h, (2, 2), (2, 2))?;
            let h = ops::flatten(&h)?;
            let h = ops::linear(&h, &t[3], Some(&t[4]), false)?;
            ops::cross_entropy(&h, &labels)
        },
    );
}

#[test]
fn no_grad_records_nothing_and_backward_refuses() {
    let w = Tensor::from_f32(&[1.0, 2.0], &[1, 2], &dev())
        .unwrap()
        .into_param();
    let x = Tensor::from_f32(&[3.0, 4.0], &[1, 2], &dev()).unwrap();
    let y = no_grad(|| ops::linear(&x, &w, None, false)).unwrap();
    assert!(!y.requires_grad());
    assert!(ops::sum(&y).unwrap().backward().is_err());
    let y = ops::linear(&x, &w, None, false).unwrap();
    assert!(y.requires_grad());
    ops::sum(&y).unwrap().backward().unwrap();
    assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![3.0, 4.0]);
    // A second backward accumulates; zero_grad clears.
    ops::sum(&ops::linear(&x, &w, None, false).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(w.grad().unwrap().to_vec().unwrap(), vec![6.0, 8.0]);
    w.zero_grad();
    assert!(w.grad().is_none());
}

fn gradcheck_spread(rng: &mut Rng, shape: &[usize], f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let n: usize = shape.iter().product();
    // Half-integer offsets keep every value away from 0 (the ReLU kink).
    let mut values: Vec<f32> = (0..n)
        .map(|i| (i as f32 - n as f32 / 2.0 + 0.5) * 0.37)
        .collect();
    rng.shuffle(&mut values);
    common::gradcheck_at(&dev(), rng, &[(shape, values)], 1e-2, 2e-3, f);
}
