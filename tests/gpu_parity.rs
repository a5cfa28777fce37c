//! GPU-vs-CPU parity: every `Backend` method on the GPU against the CPU backend, on shapes
//! that are not tile multiples, plus the GPU backend's own contracts (limits give errors,
//! the buffer pool makes a steady-state loop allocate nothing).
//!
//! Without an adapter these tests print one line and pass; with `DISTILL_REQUIRE_GPU=1`
//! (CI, on lavapipe) a missing adapter fails them instead.

use std::sync::{Arc, OnceLock};

use distill::backend::gpu::{self, GpuBackend};
use distill::backend::{
    AdamConfig, Conv2dShape, Device, DeviceKind, DeviceSpec, GemmBias, GemmShape, Pool2dShape,
    SgdConfig, Storage, Trans,
};

/// f32 tolerance, relative to the largest magnitude of the reference (an ∞-norm-relative
/// error, so sums of many terms are judged against their scale, not against cancellation).
const TOL: f32 = 1e-4;

fn shared_gpu() -> &'static Option<Arc<GpuBackend>> {
    static GPU: OnceLock<Option<Arc<GpuBackend>>> = OnceLock::new();
    GPU.get_or_init(|| match GpuBackend::open_best() {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("DISTILL_REQUIRE_GPU=1 but no GPU device could be opened: {e}");
            }
            None
        }
    })
}

/// The GPU device shared by these tests, or `None` (after one printed line) when there is
/// none. Panics instead under `DISTILL_REQUIRE_GPU=1`.
fn gpu_or_skip() -> Option<Device> {
    match shared_gpu() {
        Some(g) => Some(g.device()),
        None => {
            eprintln!(
                "skipping GPU test: no GPU adapter (set DISTILL_REQUIRE_GPU=1 to fail instead)"
            );
            None
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
    fn labels(&mut self, n: usize, classes: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next() % classes as u64) as u32)
            .collect()
    }
}

/// The same data on both devices.
struct Pair {
    cpu: Storage,
    gpu: Storage,
}

impl Pair {
    fn on(&self, side: usize) -> &Storage {
        if side == 0 {
            &self.cpu
        } else {
            &self.gpu
        }
    }
}

struct Both {
    cpu: Device,
    gpu: Device,
}

impl Both {
    fn new() -> Option<Both> {
        Some(Both {
            cpu: Device::cpu(),
            gpu: gpu_or_skip()?,
        })
    }
    fn f32(&self, data: &[f32]) -> Pair {
        Pair {
            cpu: self.cpu.backend().upload_f32(data).unwrap(),
            gpu: self.gpu.backend().upload_f32(data).unwrap(),
        }
    }
    fn u32(&self, data: &[u32]) -> Pair {
        Pair {
            cpu: self.cpu.backend().upload_u32(data).unwrap(),
            gpu: self.gpu.backend().upload_u32(data).unwrap(),
        }
    }
    /// Output buffers start as garbage on both sides (overwrite semantics are tested).
    fn out(&self, n: usize) -> Pair {
        self.f32(&vec![f32::NAN; n])
    }
    fn check(&self, what: &str, p: &Pair) {
        let c = self.cpu.backend().download_f32(&p.cpu).unwrap();
        let g = self.gpu.backend().download_f32(&p.gpu).unwrap();
        assert_close(what, &g, &c);
    }
    fn check_u32(&self, what: &str, p: &Pair) {
        let c = self.cpu.backend().download_u32(&p.cpu).unwrap();
        let g = self.gpu.backend().download_u32(&p.gpu).unwrap();
        assert_eq!(g, c, "{what}: GPU and CPU differ");
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs() / scale;
        assert!(
            err <= TOL && g.is_finite() == w.is_finite(),
            "{what}: element {i}: GPU {g} vs CPU {w} (relative error {err:e}, scale {scale})"
        );
    }
}

#[test]
fn gemm_all_transposes_and_epilogues() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(1);
    let shapes = [
        (1, 1, 1),
        (3, 7, 13),
        (13, 3, 7),
        (33, 65, 7),
        (65, 33, 127),
        (64, 64, 64),
        (4, 8, 12),
        (127, 68, 36),
        (2, 129, 5),
    ];
    let mut case = 0;
    for &(m, n, k) in &shapes {
        for ta in [Trans::N, Trans::T] {
            for tb in [Trans::N, Trans::T] {
                case += 1;
                let a = d.f32(&rng.vec(m * k));
                let b = d.f32(&rng.vec(k * n));
                let c = d.f32(&rng.vec(m * n));
                let bias_row = d.f32(&rng.vec(m));
                let bias_col = d.f32(&rng.vec(n));
                let accumulate = case % 2 == 0;
                let relu = case % 3 == 0;
                let sh = GemmShape { ta, tb, m, n, k };
                for side in 0..2 {
                    let (dev, a, b, c, br, bc) = if side == 0 {
                        (&d.cpu, &a.cpu, &b.cpu, &c.cpu, &bias_row.cpu, &bias_col.cpu)
                    } else {
                        (&d.gpu, &a.gpu, &b.gpu, &c.gpu, &bias_row.gpu, &bias_col.gpu)
                    };
                    let bias = match case % 3 {
                        0 => GemmBias::None,
                        1 => GemmBias::PerRow(br),
                        _ => GemmBias::PerCol(bc),
                    };
                    dev.backend()
                        .gemm(sh, a, b, c, bias, accumulate, relu)
                        .unwrap();
                }
                d.check(
                    &format!(
                        "gemm {ta:?}{tb:?} {m}x{n}x{k} acc={accumulate} relu={relu} bias={}",
                        case % 3
                    ),
                    &c,
                );
            }
        }
    }
}

#[test]
fn conv2d_forward_and_backward() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(2);
    // (batch, cin, h, w, cout, kh, kw, stride, pad)
    let cases = [
        (1, 1, 5, 5, 1, 3, 3, 1, 0),
        (2, 3, 7, 6, 5, 3, 3, 1, 1),
        (2, 2, 9, 9, 3, 3, 3, 2, 1),
        (1, 4, 8, 8, 7, 1, 1, 1, 0),
        (3, 2, 6, 7, 4, 5, 3, 2, 2),
        (2, 3, 13, 11, 65, 2, 2, 3, 0),
    ];
    for &(batch, cin, h, w, cout, kh, kw, stride, pad) in &cases {
        let s = Conv2dShape {
            batch,
            in_channels: cin,
            in_h: h,
            in_w: w,
            out_channels: cout,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad.min(kw - 1),
        };
        let what = format!("{s:?}");
        let x = d.f32(&rng.vec(s.input_len()));
        let wt = d.f32(&rng.vec(s.weight_len()));
        let bias = d.f32(&rng.vec(cout));
        let dy = d.f32(&rng.vec(s.output_len()));
        let (y, dx, dw, db) = (
            d.out(s.output_len()),
            d.out(s.input_len()),
            d.out(s.weight_len()),
            d.out(cout),
        );
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.conv2d_forward(&s, x.on(side), wt.on(side), Some(bias.on(side)), y.on(side))
                .unwrap();
            be.conv2d_backward_input(&s, wt.on(side), dy.on(side), dx.on(side))
                .unwrap();
            be.conv2d_backward_weight(&s, x.on(side), dy.on(side), dw.on(side))
                .unwrap();
            be.conv2d_backward_bias(&s, dy.on(side), db.on(side))
                .unwrap();
        }
        d.check(&format!("conv2d forward {what}"), &y);
        d.check(&format!("conv2d backward input {what}"), &dx);
        d.check(&format!("conv2d backward weight {what}"), &dw);
        d.check(&format!("conv2d backward bias {what}"), &db);
    }
    // Without bias.
    let s = Conv2dShape {
        batch: 2,
        in_channels: 3,
        in_h: 5,
        in_w: 5,
        out_channels: 2,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    };
    let x = d.f32(&rng.vec(s.input_len()));
    let wt = d.f32(&rng.vec(s.weight_len()));
    let y = d.out(s.output_len());
    d.cpu
        .backend()
        .conv2d_forward(&s, &x.cpu, &wt.cpu, None, &y.cpu)
        .unwrap();
    d.gpu
        .backend()
        .conv2d_forward(&s, &x.gpu, &wt.gpu, None, &y.gpu)
        .unwrap();
    d.check("conv2d forward without bias", &y);
}

#[test]
fn max_pool_overlapping_windows_and_ties() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(3);
    // (batch, channels, h, w, kh, kw, sh, sw)
    let cases = [
        (1, 1, 4, 4, 2, 2, 2, 2),
        (2, 3, 7, 7, 3, 3, 2, 2),
        (1, 2, 6, 5, 2, 2, 1, 1),
        (2, 2, 9, 8, 3, 2, 1, 2),
        (1, 1, 13, 13, 4, 4, 3, 3),
    ];
    for (ci, &(batch, channels, h, w, kh, kw, sh, sw)) in cases.iter().enumerate() {
        let s = Pool2dShape {
            batch,
            channels,
            in_h: h,
            in_w: w,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
        };
        // Every other case uses few distinct values, so windows have ties.
        let xs: Vec<f32> = rng
            .vec(s.input_len())
            .into_iter()
            .map(|v| if ci % 2 == 1 { (v * 2.0).round() } else { v })
            .collect();
        let x = d.f32(&xs);
        let dy = d.f32(&rng.vec(s.output_len()));
        let y = d.out(s.output_len());
        let am = d.u32(&vec![u32::MAX; s.output_len()]);
        let dx = d.out(s.input_len());
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.max_pool2d_forward(&s, x.on(side), y.on(side), am.on(side))
                .unwrap();
            // Backward from each side's own arg-max (they must agree anyway).
            be.max_pool2d_backward(&s, dy.on(side), am.on(side), dx.on(side))
                .unwrap();
        }
        d.check(&format!("max_pool2d forward {s:?}"), &y);
        d.check_u32(&format!("max_pool2d argmax {s:?}"), &am);
        d.check(&format!("max_pool2d backward {s:?}"), &dx);
    }
}

#[test]
fn elementwise_and_reductions() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(4);
    for n in [1usize, 7, 33, 1000, 4097, 70_001] {
        let x = d.f32(&rng.vec(n));
        let z = d.f32(&rng.vec(n));
        let s = d.f32(&[rng.uniform() * 3.0]);
        let outs: Vec<Pair> = (0..7).map(|_| d.out(n)).collect();
        let acc = d.f32(&rng.vec(n));
        let total = d.out(1);
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.relu(x.on(side), outs[0].on(side)).unwrap();
            be.relu_backward(x.on(side), z.on(side), outs[1].on(side))
                .unwrap();
            be.add(x.on(side), z.on(side), outs[2].on(side)).unwrap();
            be.scale(x.on(side), -1.75, outs[3].on(side)).unwrap();
            be.scale_by(x.on(side), s.on(side), outs[4].on(side))
                .unwrap();
            be.fill(outs[5].on(side), 0.625).unwrap();
            be.copy(z.on(side), outs[6].on(side)).unwrap();
            be.axpy(0.3, x.on(side), acc.on(side)).unwrap();
            be.sum(x.on(side), total.on(side)).unwrap();
        }
        for (i, name) in [
            "relu",
            "relu_backward",
            "add",
            "scale",
            "scale_by",
            "fill",
            "copy",
        ]
        .iter()
        .enumerate()
        {
            d.check(&format!("{name} n={n}"), &outs[i]);
        }
        d.check(&format!("axpy n={n}"), &acc);
        // A sum is judged against Σ|x| (cancellation makes Σx itself a poor scale).
        let c = d.cpu.backend().download_f32(&total.cpu).unwrap()[0];
        let g = d.gpu.backend().download_f32(&total.gpu).unwrap()[0];
        let abs: f32 = d
            .cpu
            .backend()
            .download_f32(&x.cpu)
            .unwrap()
            .iter()
            .map(|v| v.abs())
            .sum();
        assert!(
            (g - c).abs() <= TOL * abs.max(1.0),
            "sum n={n}: GPU {g} vs CPU {c}"
        );
    }
    for (rows, cols) in [(1, 1), (3, 7), (128, 10), (33, 65), (1000, 3), (5, 300)] {
        let x = d.f32(&rng.vec(rows * cols));
        let out = d.out(cols);
        d.cpu
            .backend()
            .column_sums(rows, cols, &x.cpu, &out.cpu)
            .unwrap();
        d.gpu
            .backend()
            .column_sums(rows, cols, &x.gpu, &out.gpu)
            .unwrap();
        d.check(&format!("column_sums {rows}x{cols}"), &out);
    }
}

#[test]
fn softmax_family_and_losses() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(5);
    for (rows, cols) in [(1, 1), (1, 10), (7, 3), (13, 10), (33, 257), (4, 1000)] {
        for t in [1.0f32, 4.0] {
            let x: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 6.0).collect();
            let x = d.f32(&x);
            let teacher: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 6.0).collect();
            let teacher = d.f32(&teacher);
            let dy = d.f32(&rng.vec(rows * cols));
            let labels = d.u32(&rng.labels(rows, cols));
            let n = rows * cols;
            let (sm, lsm, dsm, dlsm) = (d.out(n), d.out(n), d.out(n), d.out(n));
            let (ce, ce_grad, ce2) = (d.out(1), d.out(n), d.out(1));
            let (kd, kd_grad) = (d.out(1), d.out(n));
            for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
                let be = dev.backend();
                be.softmax(rows, cols, x.on(side), t, sm.on(side)).unwrap();
                be.log_softmax(rows, cols, x.on(side), t, lsm.on(side))
                    .unwrap();
                be.softmax_backward(rows, cols, sm.on(side), dy.on(side), t, dsm.on(side))
                    .unwrap();
                be.log_softmax_backward(rows, cols, lsm.on(side), dy.on(side), t, dlsm.on(side))
                    .unwrap();
                be.cross_entropy(
                    rows,
                    cols,
                    x.on(side),
                    labels.on(side),
                    ce.on(side),
                    Some(ce_grad.on(side)),
                )
                .unwrap();
                be.cross_entropy(rows, cols, x.on(side), labels.on(side), ce2.on(side), None)
                    .unwrap();
                be.kd_loss(
                    rows,
                    cols,
                    x.on(side),
                    teacher.on(side),
                    labels.on(side),
                    t,
                    0.7,
                    kd.on(side),
                    Some(kd_grad.on(side)),
                )
                .unwrap();
            }
            let what = format!("{rows}x{cols} T={t}");
            d.check(&format!("softmax {what}"), &sm);
            d.check(&format!("log_softmax {what}"), &lsm);
            d.check(&format!("softmax_backward {what}"), &dsm);
            d.check(&format!("log_softmax_backward {what}"), &dlsm);
            d.check(&format!("cross_entropy loss {what}"), &ce);
            d.check(&format!("cross_entropy grad {what}"), &ce_grad);
            d.check(&format!("cross_entropy loss without grad {what}"), &ce2);
            d.check(&format!("kd_loss loss {what}"), &kd);
            d.check(&format!("kd_loss grad {what}"), &kd_grad);
        }
    }
}

#[test]
fn count_correct_adds_with_first_max_ties() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(6);
    for (rows, cols) in [(1, 1), (9, 3), (64, 10), (5, 600)] {
        // Coarse values: many rows have tied maxima; the first one counts.
        let x: Vec<f32> = rng
            .vec(rows * cols)
            .iter()
            .map(|v| (v * 2.0).round())
            .collect();
        let x = d.f32(&x);
        let labels = d.u32(&rng.labels(rows, cols));
        let out = d.u32(&[5]);
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            for _ in 0..2 {
                dev.backend()
                    .count_correct(rows, cols, x.on(side), labels.on(side), out.on(side))
                    .unwrap();
            }
        }
        d.check_u32(&format!("count_correct {rows}x{cols}"), &out);
    }
}

#[test]
fn optimisers_over_several_steps() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng(7);
    let n = 1000;
    let sgds = [
        SgdConfig {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 5e-4,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            dampening: 0.1,
            weight_decay: 1e-2,
            nesterov: false,
        },
        SgdConfig {
            lr: 0.01,
            momentum: 0.8,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
        },
    ];
    for cfg in sgds {
        let p = d.f32(&rng.vec(n));
        let buf = d.f32(&vec![0.0; n]);
        for step in 0..3 {
            let g = d.f32(&rng.vec(n));
            d.cpu
                .backend()
                .sgd_step(&cfg, step == 0, &p.cpu, &g.cpu, &buf.cpu)
                .unwrap();
            d.gpu
                .backend()
                .sgd_step(&cfg, step == 0, &p.gpu, &g.gpu, &buf.gpu)
                .unwrap();
        }
        d.check(&format!("sgd param {cfg:?}"), &p);
        if cfg.momentum != 0.0 {
            d.check(&format!("sgd momentum {cfg:?}"), &buf);
        }
    }
    for decoupled in [false, true] {
        for wd in [0.0, 0.01] {
            let cfg = AdamConfig {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
                decoupled_weight_decay: decoupled,
            };
            let p = d.f32(&rng.vec(n));
            let (m, v) = (d.f32(&vec![0.0; n]), d.f32(&vec![0.0; n]));
            for step in 1..=4 {
                let g = d.f32(&rng.vec(n));
                d.cpu
                    .backend()
                    .adam_step(&cfg, step, &p.cpu, &g.cpu, &m.cpu, &v.cpu)
                    .unwrap();
                d.gpu
                    .backend()
                    .adam_step(&cfg, step, &p.gpu, &g.gpu, &m.gpu, &v.gpu)
                    .unwrap();
            }
            d.check(&format!("adam param {cfg:?}"), &p);
            d.check(&format!("adam m {cfg:?}"), &m);
            d.check(&format!("adam v {cfg:?}"), &v);
        }
    }
}

#[test]
fn uploads_downloads_and_zeros_round_trip() {
    let Some(gpu) = gpu_or_skip() else { return };
    let be = gpu.backend();
    assert!(!gpu.is_cpu());
    assert!(
        gpu.name().contains('('),
        "name names the backend: {}",
        gpu.name()
    );
    let data: Vec<f32> = (0..1234).map(|i| i as f32 * 0.5 - 3.0).collect();
    let s = be.upload_f32(&data).unwrap();
    assert_eq!(s.len(), 1234);
    assert_eq!(be.download_f32(&s).unwrap(), data);
    let u: Vec<u32> = (0..77u32)
        .map(|i| i.wrapping_mul(3_000_000_007).wrapping_mul(i))
        .collect();
    assert_eq!(be.download_u32(&be.upload_u32(&u).unwrap()).unwrap(), u);
    // A recycled buffer comes back zeroed from zeros(), even if it held data before.
    drop(s);
    be.flush().unwrap();
    let z = be.zeros(1234).unwrap();
    assert!(be.download_f32(&z).unwrap().iter().all(|&v| v == 0.0));
    let empty = be.zeros(0).unwrap();
    assert!(be.download_f32(&empty).unwrap().is_empty());
}

#[test]
fn upload_after_pending_use_of_a_recycled_buffer_is_ordered() {
    // x is used by a pending (unsubmitted) op, then dropped; a new upload of the same size
    // must not overwrite it before that op runs.
    let Some(gpu) = gpu_or_skip() else { return };
    let be = gpu.backend();
    let n = 4096;
    let x = be.upload_f32(&vec![2.0; n]).unwrap();
    let y = be.zeros(n).unwrap();
    be.scale(&x, 3.0, &y).unwrap();
    drop(x);
    let x2 = be.upload_f32(&vec![-1.0; n]).unwrap();
    let y2 = be.zeros(n).unwrap();
    be.scale(&x2, 1.0, &y2).unwrap();
    assert!(be.download_f32(&y).unwrap().iter().all(|&v| v == 6.0));
    assert!(be.download_f32(&y2).unwrap().iter().all(|&v| v == -1.0));
}

#[test]
fn a_tensor_over_the_device_limit_is_a_clear_error() {
    let Some(_) = gpu_or_skip() else { return };
    let g = shared_gpu().as_ref().unwrap();
    let max = g.max_buffer_bytes();
    let words = (max / 4 + 1) as usize;
    let Err(err) = g.device().backend().zeros(words) else {
        panic!("a tensor over the limit must fail");
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&(words as u64 * 4).to_string()) && msg.contains(&max.to_string()),
        "error names the size and the limit: {msg}"
    );
    // The device is still usable afterwards.
    let be = g.device();
    let s = be.backend().upload_f32(&[1.0, 2.0]).unwrap();
    assert_eq!(be.backend().download_f32(&s).unwrap(), vec![1.0, 2.0]);
}

#[test]
fn cpu_tensors_are_rejected_not_a_panic() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cpu = Device::cpu();
    let x = cpu.backend().upload_f32(&[1.0]).unwrap();
    let y = gpu.backend().zeros(1).unwrap();
    assert!(gpu.backend().relu(&x, &y).is_err());
    assert!(gpu.backend().download_f32(&x).is_err());
}

#[test]
fn steady_state_loop_reuses_pooled_buffers() {
    let Some(_) = gpu_or_skip() else { return };
    // A private device, so other tests running in parallel do not disturb the counters.
    let g = GpuBackend::open_best().unwrap();
    let dev = g.device();
    let be = dev.backend();
    let mut rng = Rng(8);
    let (batch, feat, classes) = (16, 32, 10);
    let w = be.upload_f32(&rng.vec(feat * classes)).unwrap();
    let bias = be.upload_f32(&rng.vec(classes)).unwrap();
    let opt = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let mom = be.zeros(feat * classes).unwrap();
    let mut history = Vec::new();
    for step in 0..5 {
        let x = be.upload_f32(&rng.vec(batch * feat)).unwrap();
        let labels = be.upload_u32(&rng.labels(batch, classes)).unwrap();
        let logits = be.zeros(batch * classes).unwrap();
        let sh = GemmShape {
            ta: Trans::N,
            tb: Trans::N,
            m: batch,
            n: classes,
            k: feat,
        };
        be.gemm(sh, &x, &w, &logits, GemmBias::PerCol(&bias), false, false)
            .unwrap();
        let loss = be.zeros(1).unwrap();
        let dlogits = be.zeros(batch * classes).unwrap();
        be.cross_entropy(batch, classes, &logits, &labels, &loss, Some(&dlogits))
            .unwrap();
        let dw = be.zeros(feat * classes).unwrap();
        let sh = GemmShape {
            ta: Trans::T,
            tb: Trans::N,
            m: feat,
            n: classes,
            k: batch,
        };
        be.gemm(sh, &x, &dlogits, &dw, GemmBias::None, false, false)
            .unwrap();
        be.sgd_step(&opt, step == 0, &w, &dw, &mom).unwrap();
        let l = be.download_f32(&loss).unwrap()[0];
        assert!(l.is_finite());
        history.push((g.pool_stats().fresh_allocations, g.cache_stats().1));
    }
    let (first, _) = history[1];
    assert!(
        history[1..].iter().all(|&(a, _)| a == first),
        "fresh allocations grow in a steady-state loop: {history:?}"
    );
    assert!(g.pool_stats().reuses > 0);
}

#[test]
fn adapters_are_listed_and_profiling_reports_kernels() {
    let Some(_) = gpu_or_skip() else { return };
    let list = gpu::list_adapters();
    assert!(!list.is_empty());
    let text = list[0].to_string();
    assert!(
        text.contains("gpu:0") && text.contains("max storage binding"),
        "{text}"
    );
    assert!(gpu::open_index(list.len()).is_err());

    let g = GpuBackend::open_best().unwrap();
    if !g.enable_profiling().unwrap() {
        eprintln!("adapter has no TIMESTAMP_QUERY: profiling not tested");
        return;
    }
    let be = g.device();
    let x = be.backend().upload_f32(&[1.0; 100]).unwrap();
    let y = be.backend().zeros(100).unwrap();
    be.backend().relu(&x, &y).unwrap();
    be.backend().scale(&x, 2.0, &y).unwrap();
    be.backend().flush().unwrap();
    let report = g.profile_report().unwrap();
    assert!(
        report.iter().any(|(n, c, _)| n == "relu" && *c == 1),
        "{report:?}"
    );
    assert!(
        report.iter().any(|(n, _, ms)| n == "scale" && *ms >= 0.0),
        "{report:?}"
    );
}

#[test]
fn profiling_is_reachable_through_device() {
    // The CPU backend cannot time kernels: the trait defaults.
    let cpu = Device::cpu();
    assert!(!cpu.set_profiling(true).unwrap());
    assert!(cpu.kernel_times().unwrap().is_empty());

    let Some(_) = gpu_or_skip() else { return };
    // A private device: profiling is per device and other tests run in parallel.
    let dev = GpuBackend::open_best().unwrap().device();
    if !dev.set_profiling(true).unwrap() {
        eprintln!("adapter has no TIMESTAMP_QUERY: profiling not tested");
        return;
    }
    let be = dev.backend();
    let x = be.upload_f32(&[1.0; 100]).unwrap();
    let y = be.zeros(100).unwrap();
    be.relu(&x, &y).unwrap();
    be.relu(&x, &y).unwrap();
    // kernel_times submits pending work itself.
    let times = dev.kernel_times().unwrap();
    let relu = times.iter().find(|t| t.name == "relu").expect("relu timed");
    assert_eq!(relu.calls, 2, "{times:?}");
    assert!(relu.total_ms >= 0.0);
    assert!(!dev.set_profiling(false).unwrap());
    assert!(dev.kernel_times().unwrap().is_empty());
}

#[test]
fn device_specs_parse_and_open() {
    assert_eq!(DeviceSpec::parse(" auto ").unwrap(), DeviceSpec::Auto);
    assert_eq!(DeviceSpec::parse("cpu").unwrap(), DeviceSpec::Cpu);
    assert_eq!(DeviceSpec::parse("gpu").unwrap(), DeviceSpec::Gpu);
    assert_eq!(
        "gpu:3".parse::<DeviceSpec>().unwrap(),
        DeviceSpec::GpuIndex(3)
    );
    for spec in ["auto", "cpu", "gpu", "gpu:12"] {
        assert_eq!(DeviceSpec::parse(spec).unwrap().to_string(), spec);
    }
    for bad in ["tpu", "gpu:", "gpu:x", "gpu:-1", "GPU"] {
        let e = DeviceSpec::parse(bad).unwrap_err().to_string();
        assert!(
            e.contains(&format!("unknown device '{bad}'")) && e.contains("gpu:N"),
            "{e}"
        );
        assert!(!e.contains("--"), "a library error names no CLI flag: {e}");
    }
    assert!(Device::from_spec("cpu").unwrap().is_cpu());
    // `auto` never picks a software adapter such as lavapipe.
    let auto = Device::from_spec("auto").unwrap();
    assert_ne!(auto.kind(), DeviceKind::SoftwareGpu);

    let Some(_) = gpu_or_skip() else { return };
    let n = gpu::list_adapters().len();
    assert!(!Device::from_spec("gpu").unwrap().is_cpu());
    assert!(!Device::from_spec("gpu:0").unwrap().is_cpu());
    let e = Device::from_spec(&format!("gpu:{n}"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("cannot open device `gpu:{n}`")) && e.contains("distill devices"),
        "{e}"
    );
    assert!(!e.contains("--"), "{e}");
}
