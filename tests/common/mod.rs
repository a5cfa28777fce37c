//! Helpers shared by the integration tests.
#![allow(dead_code)]

use distill::data::{Dataset, Split};
use distill::rng::Rng;
use distill::{no_grad, Device, Result, Tensor};

/// Finite-difference gradient check of `f` at random inputs of the given shapes.
pub fn gradcheck(
    device: &Device,
    rng: &mut Rng,
    shapes: &[&[usize]],
    eps: f32,
    tol: f64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let inputs: Vec<(&[usize], Vec<f32>)> = shapes
        .iter()
        .map(|s| {
            (
                *s,
                (0..s.iter().product::<usize>())
                    .map(|_| rng.normal())
                    .collect(),
            )
        })
        .collect();
    gradcheck_at(device, rng, &inputs, eps, tol, f)
}

/// Finite-difference gradient check of `f` at the given inputs. Compares at most 24
/// coordinates per input; fails with the op's name, input and coordinate.
pub fn gradcheck_at(
    device: &Device,
    rng: &mut Rng,
    inputs: &[(&[usize], Vec<f32>)],
    eps: f32,
    tol: f64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let params: Vec<Tensor> = inputs
        .iter()
        .map(|(s, v)| Tensor::from_f32(v, s, device).unwrap().into_param())
        .collect();
    let y = f(&params).expect("forward");
    let r: Vec<f32> = (0..y.numel()).map(|_| rng.normal()).collect();
    y.backward_with(Tensor::from_f32(&r, y.shape(), device).unwrap())
        .expect("backward");

    let loss = |vals: &[Vec<f32>]| -> f64 {
        no_grad(|| {
            let ts: Vec<Tensor> = inputs
                .iter()
                .zip(vals)
                .map(|((s, _), v)| Tensor::from_f32(v, s, device).unwrap())
                .collect();
            let y = f(&ts).unwrap().to_vec().unwrap();
            y.iter().zip(&r).map(|(&a, &b)| a as f64 * b as f64).sum()
        })
    };
    let base: Vec<Vec<f32>> = inputs.iter().map(|(_, v)| v.clone()).collect();
    for (i, p) in params.iter().enumerate() {
        let analytic = p
            .grad()
            .unwrap_or_else(|| panic!("input {i} got no gradient"))
            .to_vec()
            .unwrap();
        let n = analytic.len();
        let coords: Vec<usize> = if n <= 24 {
            (0..n).collect()
        } else {
            (0..24).map(|_| rng.below(n)).collect()
        };
        for j in coords {
            let mut plus = base.clone();
            plus[i][j] += eps;
            let mut minus = base.clone();
            minus[i][j] -= eps;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * eps as f64);
            let a = analytic[j] as f64;
            let scale = 1.0f64.max(a.abs()).max(numeric.abs());
            assert!(
                (a - numeric).abs() <= tol * scale,
                "input {i} coord {j}: analytic {a} vs numeric {numeric} (shape {:?})",
                inputs[i].0
            );
        }
    }
}

/// Call before opening or listing any GPU adapter: Mesa's Vulkan drivers print "error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment" (several times per test binary)
/// while enumerating adapters when it is unset, as on servers and in CI. No test opens a
/// window, so, as the `distill` binary does in its `main`, point it at the temp directory when
/// it is unset. Once per process: every caller waits until it is set, so no adapter is opened
/// while the environment changes.
pub fn quiet_vulkan() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir());
        }
    });
}

/// The best GPU adapter, opened now, or `None` (after one printed line) when there is none.
/// Panics instead under `DISTILL_REQUIRE_GPU=1`.
pub fn gpu_backend_or_skip() -> Option<std::sync::Arc<distill::backend::gpu::GpuBackend>> {
    quiet_vulkan();
    match distill::backend::gpu::GpuBackend::open_best() {
        Ok(g) => Some(g),
        Err(e) if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("DISTILL_REQUIRE_GPU=1 but no GPU device could be opened: {e}")
        }
        Err(_) => {
            eprintln!(
                "skipping GPU test: no GPU adapter (set DISTILL_REQUIRE_GPU=1 to fail instead)"
            );
            None
        }
    }
}

/// The best GPU adapter as a device, opened once per test binary, or `None` (after one printed
/// line) when there is none. Panics instead under `DISTILL_REQUIRE_GPU=1`.
pub fn gpu_or_skip() -> Option<Device> {
    use std::sync::OnceLock;
    static GPU: OnceLock<Option<Device>> = OnceLock::new();
    quiet_vulkan();
    let dev = GPU.get_or_init(|| match distill::backend::gpu::open_best() {
        Ok(d) => Some(d),
        Err(e) => {
            if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("DISTILL_REQUIRE_GPU=1 but no GPU device could be opened: {e}");
            }
            None
        }
    });
    if dev.is_none() {
        eprintln!("skipping GPU test: no GPU adapter (set DISTILL_REQUIRE_GPU=1 to fail instead)");
    }
    dev.clone()
}

/// Runs `f` with grad on both devices at the same inputs, back-propagates the same random
/// cotangent, and compares outputs and every input's gradient (∞-norm-relative, `tol`).
pub fn grad_parity(
    a: &Device,
    b: &Device,
    rng: &mut Rng,
    inputs: &[(&[usize], Vec<f32>)],
    tol: f32,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let run = |dev: &Device, r: &[f32]| -> (Vec<f32>, Vec<Vec<f32>>) {
        let params: Vec<Tensor> = inputs
            .iter()
            .map(|(s, v)| Tensor::from_f32(v, s, dev).unwrap().into_param())
            .collect();
        let y = f(&params).expect("forward");
        y.backward_with(Tensor::from_f32(r, y.shape(), dev).unwrap())
            .expect("backward");
        let grads = params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.grad()
                    .unwrap_or_else(|| panic!("input {i} got no gradient on {}", dev.name()))
                    .to_vec()
                    .unwrap()
            })
            .collect();
        (y.to_vec().unwrap(), grads)
    };
    let n_out = no_grad(|| {
        f(&inputs
            .iter()
            .map(|(s, v)| Tensor::from_f32(v, s, a).unwrap())
            .collect::<Vec<_>>())
        .unwrap()
        .numel()
    });
    let r: Vec<f32> = (0..n_out).map(|_| rng.normal()).collect();
    let (ya, ga) = run(a, &r);
    let (yb, gb) = run(b, &r);
    assert_close_rel("output", &yb, &ya, tol);
    for (i, (x, y)) in gb.iter().zip(&ga).enumerate() {
        assert_close_rel(&format!("gradient of input {i}"), x, y, tol);
    }
}

/// `max |got − want| ≤ tol · max(1, max |want|)`.
pub fn assert_close_rel(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let (mut worst, mut at) = (0.0f32, 0);
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        if d > worst || d.is_nan() {
            worst = d;
            at = j;
        }
    }
    assert!(
        worst <= tol * scale,
        "{what}: element {at}: {} vs {} (max |diff| {worst}, scale {scale}, tol {tol})",
        got[at],
        want[at]
    );
}

/// `n` 8×8 one-channel images of two classes a model learns in a few steps: class 0 bright on
/// the left half, class 1 on the right (the same images are the test split).
pub fn tiny_dataset(n: usize) -> Dataset {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let label = (i % 2) as u32;
        for _r in 0..8 {
            for c in 0..8 {
                let bright = (c < 4) == (label == 0);
                images.push(if bright {
                    200 + (i % 50) as u8
                } else {
                    (i * 7 % 40) as u8
                });
            }
        }
        labels.push(label);
    }
    let train = Split::new(images.clone(), labels.clone()).unwrap();
    let test = Split::new(images, labels).unwrap();
    Dataset::from_splits(
        "tiny",
        (1, 8, 8),
        vec!["left".into(), "right".into()],
        train,
        test,
    )
    .unwrap()
}
