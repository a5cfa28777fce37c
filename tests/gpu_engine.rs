//! The engine on the GPU backend, above the kernel level that `gpu_parity/` covers: every
//! op's gradient through autograd against finite differences and against the CPU, a student
//! training a few steps on both devices from one seed, and teacher inference under `no_grad`.
//!
//! Without an adapter these tests print one line and pass; with `DISTILL_REQUIRE_GPU=1`
//! (CI, on lavapipe) a missing adapter fails them instead. Shapes are small: lavapipe is slow.

use distill::nn::{ArchSpec, Sequential};
use distill::ops::{self, Conv2dParams};
use distill::optim::{OptimConfig, Optimizer};
use distill::rng::Rng;
use distill::{no_grad, Device, Result, Tensor};

mod common;
use common::{assert_close_rel, gpu_or_skip, grad_parity, gradcheck, gradcheck_at};

/// GPU gradients against the CPU's, ∞-norm-relative.
const PARITY_TOL: f32 = 1e-4;

fn random_inputs<'a>(rng: &mut Rng, shapes: &[&'a [usize]]) -> Vec<(&'a [usize], Vec<f32>)> {
    shapes
        .iter()
        .map(|s| {
            (
                *s,
                (0..s.iter().product::<usize>())
                    .map(|_| rng.normal())
                    .collect(),
            )
        })
        .collect()
}

/// Finite differences on the GPU, then the same op's gradients against the CPU backend.
fn check(
    gpu: &Device,
    rng: &mut Rng,
    shapes: &[&[usize]],
    eps: f32,
    tol: f64,
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    gradcheck(gpu, rng, shapes, eps, tol, &f);
    let inputs = random_inputs(rng, shapes);
    grad_parity(&Device::cpu(), gpu, rng, &inputs, PARITY_TOL, &f);
}

/// As [`check`], at distinct well-separated values (max-pool winners and ReLU signs must not
/// change under ±ε).
fn check_spread(
    gpu: &Device,
    rng: &mut Rng,
    shape: &[usize],
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
) {
    let n: usize = shape.iter().product();
    let mut values: Vec<f32> = (0..n)
        .map(|i| (i as f32 - n as f32 / 2.0 + 0.5) * 0.37)
        .collect();
    rng.shuffle(&mut values);
    let inputs = [(shape, values)];
    gradcheck_at(gpu, rng, &inputs, 1e-2, 2e-3, &f);
    grad_parity(&Device::cpu(), gpu, rng, &inputs, PARITY_TOL, &f);
}

#[test]
fn gradcheck_matmul_and_linear() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(1);
    for &(m, k, n) in &[(1, 1, 1), (3, 7, 5), (9, 4, 6)] {
        check(&gpu, &mut rng, &[&[m, k], &[k, n]], 0.5, 2e-3, |t| {
            ops::matmul(&t[0], &t[1])
        });
        for relu in [false, true] {
            check(
                &gpu,
                &mut rng,
                &[&[m, k], &[n, k], &[n]],
                if relu { 1e-3 } else { 0.5 },
                5e-3,
                |t| ops::linear(&t[0], &t[1], Some(&t[2]), relu),
            );
        }
        check(&gpu, &mut rng, &[&[m, k], &[n, k]], 0.5, 2e-3, |t| {
            ops::linear(&t[0], &t[1], None, false)
        });
    }
}

#[test]
fn gradcheck_conv2d() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(2);
    let cases = [
        // (n, c, h, w, o, kh, kw, stride, pad)
        (1, 1, 5, 5, 2, 3, 3, (1, 1), (1, 1)),
        (2, 3, 7, 6, 4, 3, 2, (2, 1), (0, 1)),
        (2, 2, 6, 5, 2, 2, 3, (2, 3), (2, 0)),
    ];
    for (n, c, h, w, o, kh, kw, stride, padding) in cases {
        let p = Conv2dParams { stride, padding };
        check(
            &gpu,
            &mut rng,
            &[&[n, c, h, w], &[o, c, kh, kw], &[o]],
            0.5,
            2e-3,
            |t| ops::conv2d(&t[0], &t[1], Some(&t[2]), p),
        );
    }
    // Without bias.
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
    };
    check(
        &gpu,
        &mut rng,
        &[&[1, 2, 4, 4], &[3, 2, 3, 3]],
        0.5,
        2e-3,
        |t| ops::conv2d(&t[0], &t[1], None, p),
    );
}

#[test]
fn gradcheck_max_pool_and_relu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(3);
    for &(shape, kernel, stride) in &[
        ([1, 1, 4, 4], (2, 2), (2, 2)),
        ([2, 3, 7, 5], (3, 2), (2, 1)),
        ([1, 2, 5, 5], (3, 3), (2, 2)),
    ] {
        check_spread(&gpu, &mut rng, &shape, |t| {
            ops::max_pool2d(&t[0], kernel, stride)
        });
    }
    check_spread(&gpu, &mut rng, &[3, 4], |t| ops::relu(&t[0]));
    check_spread(&gpu, &mut rng, &[2, 3, 2, 2], |t| ops::relu(&t[0]));
}

#[test]
fn gradcheck_reshape_add_scale_and_reductions() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(4);
    check(&gpu, &mut rng, &[&[2, 3, 2, 2]], 0.5, 1e-3, |t| {
        ops::flatten(&t[0])
    });
    check(&gpu, &mut rng, &[&[6, 4]], 0.5, 1e-3, |t| {
        ops::reshape(&t[0], &[3, 8])
    });
    check(&gpu, &mut rng, &[&[5, 3], &[5, 3]], 0.5, 1e-3, |t| {
        ops::add(&t[0], &t[1])
    });
    check(&gpu, &mut rng, &[&[7]], 0.5, 1e-3, |t| {
        ops::scale(&t[0], -2.5)
    });
    check(&gpu, &mut rng, &[&[4, 5]], 0.5, 1e-3, |t| ops::sum(&t[0]));
    check(&gpu, &mut rng, &[&[4, 5]], 0.5, 1e-3, |t| ops::mean(&t[0]));
    // Reductions longer than one workgroup.
    check(&gpu, &mut rng, &[&[1000]], 0.5, 1e-3, |t| ops::mean(&t[0]));
    // The same tensor used twice: gradients that meet must add (on the device).
    check(&gpu, &mut rng, &[&[3, 3]], 0.5, 1e-3, |t| {
        ops::add(&t[0], &ops::scale(&t[0], 3.0)?)
    });
    // A reshaped view feeding a matmul, then summed: views keep the autograd chain.
    check(&gpu, &mut rng, &[&[2, 6], &[4, 5]], 0.5, 2e-3, |t| {
        ops::sum(&ops::matmul(&ops::reshape(&t[0], &[3, 4])?, &t[1])?)
    });
}

#[test]
fn gradcheck_softmax_family_and_losses() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(5);
    for &(rows, cols) in &[(1, 2), (3, 10), (5, 13)] {
        for t in [1.0f32, 4.0] {
            check(&gpu, &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::softmax_t(&x[0], t)
            });
            check(&gpu, &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::log_softmax(&x[0], t)
            });
        }
        let labels: Vec<u32> = (0..rows).map(|_| rng.below(cols) as u32).collect();
        let (l_gpu, l_cpu) = (
            Tensor::from_u32(&labels, &[rows], &gpu).unwrap(),
            Tensor::from_u32(&labels, &[rows], &Device::cpu()).unwrap(),
        );
        let pick = |dev: &Device| if dev.is_cpu() { &l_cpu } else { &l_gpu };
        check(&gpu, &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
            ops::cross_entropy(&x[0], pick(x[0].device()))
        });
        let teacher: Vec<f32> = (0..rows * cols).map(|_| 3.0 * rng.normal()).collect();
        let (t_gpu, t_cpu) = (
            Tensor::from_f32(&teacher, &[rows, cols], &gpu).unwrap(),
            Tensor::from_f32(&teacher, &[rows, cols], &Device::cpu()).unwrap(),
        );
        let pick_t = |dev: &Device| if dev.is_cpu() { &t_cpu } else { &t_gpu };
        for (t, alpha) in [(4.0, 0.9), (1.0, 0.0), (2.0, 1.0)] {
            check(&gpu, &mut rng, &[&[rows, cols]], 1e-2, 5e-3, |x| {
                ops::kd_loss(&x[0], pick_t(x[0].device()), pick(x[0].device()), t, alpha)
            });
        }
    }
}

/// conv → relu → pool → flatten → fused linear+relu → linear → cross-entropy, all on the GPU.
#[test]
fn gradcheck_small_network_end_to_end() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(6);
    let p = Conv2dParams {
        stride: (1, 1),
        padding: (1, 1),
    };
    let (l_gpu, l_cpu) = (
        Tensor::from_u32(&[1, 0], &[2], &gpu).unwrap(),
        Tensor::from_u32(&[1, 0], &[2], &Device::cpu()).unwrap(),
    );
    let net = |t: &[Tensor]| {
        let labels = if t[0].device().is_cpu() {
            &l_cpu
        } else {
            &l_gpu
        };
        let h = ops::conv2d(&t[0], &t[1], Some(&t[2]), p)?;
        let h = ops::relu(&h)?;
        let h = ops::max_pool2d(&h, (2, 2), (2, 2))?;
        let h = ops::flatten(&h)?;
        let h = ops::linear(&h, &t[3], Some(&t[4]), true)?;
        let h = ops::linear(&h, &t[5], Some(&t[6]), false)?;
        ops::cross_entropy(&h, labels)
    };
    let shapes: [&[usize]; 7] = [
        &[2, 1, 6, 6],
        &[3, 1, 3, 3],
        &[3],
        &[5, 27],
        &[5],
        &[2, 5],
        &[2],
    ];
    // A small ε, so that a ReLU sign or max-pool winner flipping between x ± ε (which makes
    // the difference quotient meaningless) is unlikely; with this seed none does.
    gradcheck(&gpu, &mut rng, &shapes, 1e-3, 1e-2, net);
    let inputs = random_inputs(&mut rng, &shapes);
    grad_parity(&Device::cpu(), &gpu, &mut rng, &inputs, PARITY_TOL, net);
}

// ---------------------------------------------------------------------------------------------
// Training and inference of the presets

const SIDE: usize = 8;
const CLASSES: usize = 3;
const BATCH: usize = 8;
const STEPS: usize = 6;

fn param_values(model: &Sequential) -> Vec<(String, Vec<f32>)> {
    model
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap()))
        .collect()
}

/// Trains the student preset for `STEPS` Adam steps on `batches`; returns per-step losses and
/// the initial and final parameters.
#[allow(clippy::type_complexity)]
fn train_student(
    dev: &Device,
    batches: &[(Vec<f32>, Vec<u32>)],
) -> (Vec<f32>, Vec<(String, Vec<f32>)>, Vec<(String, Vec<f32>)>) {
    let model = ArchSpec::preset("student", 1, SIDE, SIDE, CLASSES)
        .unwrap()
        .build(dev, 42)
        .unwrap();
    let init = param_values(&model);
    let mut opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), model.parameters()).unwrap();
    let mut losses = Vec::new();
    for (x, y) in batches {
        let x = Tensor::from_f32(x, &[BATCH, 1, SIDE, SIDE], dev).unwrap();
        let y = Tensor::from_u32(y, &[BATCH], dev).unwrap();
        let loss = ops::cross_entropy(&model.forward(&x).unwrap(), &y).unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
        opt.zero_grad();
        losses.push(loss.item().unwrap());
    }
    (losses, init, param_values(&model))
}

#[test]
fn student_trains_the_same_on_gpu_and_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(7);
    // Learnable batches: class c lights up a horizontal stripe of rows, plus noise, so the
    // loss moves and the gradients are far from zero.
    let batches: Vec<(Vec<f32>, Vec<u32>)> = (0..STEPS)
        .map(|_| {
            let y: Vec<u32> = (0..BATCH).map(|_| rng.below(CLASSES) as u32).collect();
            let x = y
                .iter()
                .flat_map(|&c| {
                    (0..SIDE * SIDE)
                        .map(|i| {
                            if (i / SIDE) / 3 == c as usize {
                                1.0
                            } else {
                                0.0
                            }
                        })
                        .collect::<Vec<f32>>()
                })
                .map(|v| v + 0.3 * rng.normal())
                .collect();
            (x, y)
        })
        .collect();
    let (loss_cpu, init_cpu, final_cpu) = train_student(&Device::cpu(), &batches);
    let (loss_gpu, init_gpu, final_gpu) = train_student(&gpu, &batches);
    eprintln!("losses cpu {loss_cpu:?}\n       gpu {loss_gpu:?}");

    // Same seed, same initial parameters, bit for bit (initialisation runs on the host).
    for ((name, a), (_, b)) in init_cpu.iter().zip(&init_gpu) {
        assert!(a == b, "{name}: initial values differ between devices");
    }
    for (step, (c, g)) in loss_cpu.iter().zip(&loss_gpu).enumerate() {
        assert!(
            (c - g).abs() <= 1e-3 * c.abs().max(1e-3),
            "step {step}: loss cpu {c} vs gpu {g}"
        );
    }
    assert!(
        loss_cpu.last() < loss_cpu.first(),
        "the student did not learn: {loss_cpu:?}"
    );

    // Parameters: the change each device made over the run agrees (an update-relative error,
    // since Adam's updates are ~lr per step whatever the gradient's size).
    for (((name, c0), (_, c1)), (_, g1)) in init_cpu.iter().zip(&final_cpu).zip(&final_gpu) {
        let d_cpu: Vec<f32> = c1.iter().zip(c0).map(|(a, b)| a - b).collect();
        let d_gpu: Vec<f32> = g1.iter().zip(c0).map(|(a, b)| a - b).collect();
        let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
        let diff: Vec<f32> = d_cpu.iter().zip(&d_gpu).map(|(a, b)| a - b).collect();
        let (nd, nc) = (norm(&diff), norm(&d_cpu));
        assert!(nc > 0.0, "{name} did not change");
        assert!(
            nd <= 1e-2 * nc,
            "{name}: ‖Δgpu − Δcpu‖ = {nd:.3e} vs ‖Δcpu‖ = {nc:.3e}"
        );
        // And element-wise the final values are close in absolute terms. Adam moves each
        // element by ~lr per step whatever its gradient's size, so an element whose gradient is
        // tiny (and so relatively less accurate) can differ by a fair share of lr: seen up to
        // 1.6e-5 (0.3% of lr·steps = 6e-3); a wrong kernel gives errors of order lr·steps.
        assert_close_rel(&format!("final {name}"), g1, c1, 2e-4);
    }
}

#[test]
fn teacher_inference_under_no_grad_records_nothing_and_matches_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let spec = ArchSpec::preset("teacher", 1, 12, 12, 10).unwrap();
    let (teacher_gpu, teacher_cpu) = (
        spec.build(&gpu, 3).unwrap(),
        spec.build(&Device::cpu(), 3).unwrap(),
    );
    let mut rng = Rng::new(8);
    let x: Vec<f32> = (0..4 * 12 * 12).map(|_| rng.normal()).collect();
    let (xg, xc) = (
        Tensor::from_f32(&x, &[4, 1, 12, 12], &gpu).unwrap(),
        Tensor::from_f32(&x, &[4, 1, 12, 12], &Device::cpu()).unwrap(),
    );

    let yg = no_grad(|| teacher_gpu.forward(&xg)).unwrap();
    let yc = no_grad(|| teacher_cpu.forward(&xc)).unwrap();
    assert_eq!(yg.shape(), [4, 10]);
    // Nothing recorded: no node on the output, so backward refuses and no parameter gets a gradient.
    assert!(!yg.requires_grad());
    assert!(ops::sum(&yg).unwrap().backward().is_err());
    assert!(teacher_gpu
        .parameters()
        .iter()
        .all(|(_, p)| p.grad().is_none()));
    let (vg, vc) = (yg.to_vec().unwrap(), yc.to_vec().unwrap());
    assert_close_rel("teacher logits", &vg, &vc, 1e-4);
    assert!(
        vc.iter().any(|v| v.abs() > 1e-3),
        "degenerate logits {vc:?}"
    );

    // The same forward with grad on does record (the no_grad result is not an accident).
    let yg2 = teacher_gpu.forward(&xg).unwrap();
    assert!(yg2.requires_grad());
    assert_close_rel("teacher logits with grad", &yg2.to_vec().unwrap(), &vg, 0.0);
    ops::sum(&yg2).unwrap().backward().unwrap();
    assert!(teacher_gpu
        .parameters()
        .iter()
        .all(|(_, p)| p.grad().is_some()));
}

/// Autotune on the real adapter: timed once into a fresh cache directory, the fastest
/// candidate chosen per family, then read back from the file by the next device.
#[test]
fn autotune_times_the_adapter_once_then_reads_its_cache() {
    use distill::backend::gpu::autotune::Family;
    use distill::backend::gpu::{GpuBackend, TilePolicy, TileSource};
    if gpu_or_skip().is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("distill-autotune-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let policy = TilePolicy::AutotuneIn(dir.clone());
    let first = GpuBackend::open_best_with(&policy).unwrap();
    let choice = first.tiles().clone();
    let TileSource::Tuned(Ok(path)) = &choice.source else {
        panic!("not timed and saved: {choice}");
    };
    assert!(
        path.starts_with(&dir) && path.is_file(),
        "{}",
        path.display()
    );
    for family in Family::ALL {
        let timed: Vec<_> = choice
            .timings
            .iter()
            .filter(|t| t.family == family)
            .collect();
        let fastest = timed
            .iter()
            .filter_map(|t| t.ms.map(|ms| (ms, t.tile)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .expect("at least one candidate timed");
        let chosen = match family {
            Family::Matmul => choice.tiles.matmul,
            Family::Conv => choice.tiles.conv,
        };
        assert_eq!(chosen, fastest.1, "{family:?}: {timed:?}");
        let w = timed[0].workload.expect("timed");
        assert!((8..=128).contains(&w.batch), "{w:?}");
        assert!(
            timed.iter().all(|t| t.workload == Some(w)),
            "one workload per family"
        );
    }
    let again = GpuBackend::open_best_with(&policy).unwrap();
    assert_eq!(again.tiles().source, TileSource::Cached(path.clone()));
    assert_eq!(again.tiles().tiles, choice.tiles);
    // The file keeps every timing (JSON floats to within rounding).
    assert_eq!(again.tiles().timings.len(), choice.timings.len());
    for (a, b) in again.tiles().timings.iter().zip(&choice.timings) {
        assert_eq!(
            (a.family, a.tile, a.workload),
            (b.family, b.tile, b.workload)
        );
        let (x, y) = (a.ms.unwrap(), b.ms.unwrap());
        assert!((x - y).abs() <= 1e-9 * y, "{x} vs {y}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
