//! Helpers shared by the integration tests.
#![allow(dead_code)]

use distill::rng::Rng;
use distill::{no_grad, Device, Result, Tensor};

/// Finite-difference gradient check of `f` at random inputs of the given shapes.
pub fn gradcheck(device: &Device, rng: &mut Rng, shapes: &[&[usize]], eps: f32, tol: f64, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let inputs: Vec<(&[usize], Vec<f32>)> = shapes.iter().map(|s| (*s, (0..s.iter().product::<usize>()).map(|_| rng.normal()).collect())).collect();
    gradcheck_at(device, rng, &inputs, eps, tol, f)
}

/// Finite-difference gradient check of `f` at the given inputs. Compares at most 24
/// coordinates per input; fails with the op's name, input and coordinate.
pub fn gradcheck_at(device: &Device, rng: &mut Rng, inputs: &[(&[usize], Vec<f32>)], eps: f32, tol: f64, f: impl Fn(&[Tensor]) -> Result<Tensor>) {
    let params: Vec<Tensor> = inputs.iter().map(|(s, v)| Tensor::from_f32(v, s, device).unwrap().into_param()).collect();
    let y = f(&params).expect("forward");
    let r: Vec<f32> = (0..y.numel()).map(|_| rng.normal()).collect();
    y.backward_with(Tensor::from_f32(&r, y.shape(), device).unwrap()).expect("backward");

    let loss = |vals: &[Vec<f32>]| -> f64 {
        no_grad(|| {
            let ts: Vec<Tensor> = inputs.iter().zip(vals).map(|((s, _), v)| Tensor::from_f32(v, s, device).unwrap()).collect();
            let y = f(&ts).unwrap().to_vec().unwrap();
            y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum()
        })
    };
    let base: Vec<Vec<f32>> = inputs.iter().map(|(_, v)| v.clone()).collect();
    for (i, p) in params.iter().enumerate() {
        let analytic = p.grad().unwrap_or_else(|| panic!("input {i} got no gradient")).to_vec().unwrap();
        let n = analytic.len();
        let coords: Vec<usize> = if n <= 24 { (0..n).collect() } else { (0..24).map(|_| rng.below(n)).collect() };
        for j in coords {
            let mut plus = base.clone();
            plus[i][j] += eps;
            let mut minus = base.clone();
            minus[i][j] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            let a = analytic[j] as f64;
            let scale = 1.0f64.max(a.abs()).max(numeric.abs());
            assert!((a - numeric).abs() <= tol * scale, "input {i} coord {j}: analytic {a} vs numeric {numeric} (shape {:?})", inputs[i].0);
        }
    }
}
