//! Section 2's workload list: every kernel of the `Backend` trait, with its buffers uploaded
//! once, on one device at the sizes of that device.

use std::rc::Rc;

use distill::backend::{AdamConfig, GemmBias, GemmShape, Pool2dShape, SgdConfig, Storage};
use distill::Device;
use distill_kernels::{Conv2dShape, Trans};

use crate::conv::conv_layers;
use crate::fill;
use crate::output::{GBPS, GFLOPS};

/// One kernel call on one device, worth `work` flops (GFLOP/s rows) or bytes (GB/s rows).
pub struct BJob {
    pub kernel: String,
    pub shape: String,
    pub unit: &'static str,
    pub work: f64,
    pub run: Box<dyn FnMut() -> distill::Result<()>>,
}

/// The problem sizes of one device.
pub struct Sizes {
    gemm: Vec<usize>,
    batch: usize,
    softmax: Vec<(usize, usize)>,
    elems: usize,
    /// Columns of the `column_sums` matrix (rows = elems / cols).
    colsum_cols: usize,
    params: usize,
}

impl Sizes {
    pub fn cpu() -> Sizes {
        Sizes {
            gemm: vec![256, 512, 1024, 2048],
            batch: 128,
            softmax: vec![(128, 10), (65536, 10), (4096, 1000)],
            elems: 1 << 24,
            colsum_cols: 1024,
            params: 6_400_000,
        }
    }
    pub fn hardware_gpu() -> Sizes {
        Sizes {
            gemm: vec![256, 512, 1024, 2048, 4096, 8192],
            ..Sizes::cpu()
        }
    }
    /// lavapipe & co.: tiny shapes (the 256 matmul and 128×10 rows still meet the CPU's).
    pub fn software_gpu() -> Sizes {
        Sizes {
            gemm: vec![128, 256],
            batch: 8,
            softmax: vec![(128, 10), (4096, 10)],
            elems: 1 << 18,
            colsum_cols: 256,
            params: 1 << 18,
        }
    }
}

fn pool_of(s: &Conv2dShape) -> Pool2dShape {
    Pool2dShape {
        batch: s.batch,
        channels: s.out_channels,
        in_h: s.out_h(),
        in_w: s.out_w(),
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
    }
}

/// Every kernel of the section on `dev`, its buffers uploaded once.
pub fn backend_jobs(dev: &Device, sz: &Sizes) -> distill::Result<Vec<BJob>> {
    let b = dev.0.clone();
    let up = |len: usize, seed: u64| -> distill::Result<Rc<Storage>> {
        Ok(Rc::new(b.upload_f32(&fill(len, seed))?))
    };
    let zeros = |len: usize| -> distill::Result<Rc<Storage>> { Ok(Rc::new(b.zeros(len)?)) };
    let mut jobs: Vec<BJob> = Vec::new();
    let mut push = |kernel: &str,
                    shape: String,
                    unit: &'static str,
                    work: f64,
                    run: Box<dyn FnMut() -> distill::Result<()>>| {
        jobs.push(BJob {
            kernel: kernel.into(),
            shape,
            unit,
            work,
            run,
        })
    };
    const F: f64 = 4.0; // bytes per f32 / u32 word

    // matmul: square, the three transpose variants.
    for &n in &sz.gemm {
        let (a, bm, c) = (up(n * n, 1)?, up(n * n, 2)?, zeros(n * n)?);
        for (name, ta, tb) in [
            ("matmul NN", Trans::N, Trans::N),
            ("matmul NT", Trans::N, Trans::T),
            ("matmul TN", Trans::T, Trans::N),
        ] {
            let (d, a, bm, c) = (b.clone(), a.clone(), bm.clone(), c.clone());
            let shape = GemmShape {
                ta,
                tb,
                m: n,
                n,
                k: n,
            };
            push(
                name,
                format!("{n}x{n}x{n}"),
                GFLOPS,
                2.0 * (n * n * n) as f64,
                Box::new(move || d.gemm(shape, &a, &bm, &c, GemmBias::None, false, false)),
            );
        }
    }

    // conv2d and max_pool2d: the four layers.
    for (layer, s) in conv_layers(sz.batch) {
        let desc = format!(
            "{layer}: b{} {}->{} {}x{}",
            s.batch, s.in_channels, s.out_channels, s.in_h, s.in_w
        );
        let x = up(s.input_len(), 3)?;
        let w = up(s.weight_len(), 4)?;
        let bias = up(s.out_channels, 5)?;
        let dy = up(s.output_len(), 6)?;
        let y = zeros(s.output_len())?;
        let dx = zeros(s.input_len())?;
        let dw = zeros(s.weight_len())?;
        let db = zeros(s.out_channels)?;
        {
            let (d, x, w, bias, y) = (b.clone(), x.clone(), w.clone(), bias.clone(), y.clone());
            push(
                "conv2d fwd",
                desc.clone(),
                GFLOPS,
                s.flops(),
                Box::new(move || d.conv2d_forward(&s, &x, &w, Some(&bias), &y)),
            );
        }
        {
            let (d, w, dy, dx) = (b.clone(), w.clone(), dy.clone(), dx.clone());
            push(
                "conv2d bwd-input",
                desc.clone(),
                GFLOPS,
                s.flops(),
                Box::new(move || d.conv2d_backward_input(&s, &w, &dy, &dx)),
            );
        }
        {
            let (d, x, dy, dw) = (b.clone(), x.clone(), dy.clone(), dw.clone());
            push(
                "conv2d bwd-weight",
                desc.clone(),
                GFLOPS,
                s.flops(),
                Box::new(move || d.conv2d_backward_weight(&s, &x, &dy, &dw)),
            );
        }
        {
            let (d, dy, db) = (b.clone(), dy.clone(), db.clone());
            push(
                "conv2d bwd-bias",
                desc.clone(),
                GBPS,
                F * (s.output_len() + s.out_channels) as f64,
                Box::new(move || d.conv2d_backward_bias(&s, &dy, &db)),
            );
        }
        // Pooling 2×2/2 on this layer's output (y holds the conv output after its warm-up).
        let p = pool_of(&s);
        let pdesc = format!(
            "{layer} out: b{} c{} {}x{} k2 s2",
            p.batch, p.channels, p.in_h, p.in_w
        );
        let py = zeros(p.output_len())?;
        let arg = Rc::new(b.upload_u32(&vec![0u32; p.output_len()])?);
        let pdy = up(p.output_len(), 7)?;
        let pdx = zeros(p.input_len())?;
        {
            let (d, x, py, arg) = (b.clone(), up(p.input_len(), 8)?, py.clone(), arg.clone());
            push(
                "max_pool2d fwd",
                pdesc.clone(),
                GBPS,
                F * (p.input_len() + 2 * p.output_len()) as f64,
                Box::new(move || d.max_pool2d_forward(&p, &x, &py, &arg)),
            );
        }
        {
            let d = b.clone();
            push(
                "max_pool2d bwd",
                pdesc,
                GBPS,
                F * (2 * p.output_len() + p.input_len()) as f64,
                Box::new(move || d.max_pool2d_backward(&p, &pdy, &arg, &pdx)),
            );
        }
    }

    // softmax family and the losses (with gradients).
    for &(r, c) in &sz.softmax {
        let shape = format!("{r}x{c}");
        let rc = (r * c) as f64;
        let x = up(r * c, 9)?;
        let t = up(r * c, 10)?;
        let dy = up(r * c, 11)?;
        let y = zeros(r * c)?;
        let dx = zeros(r * c)?;
        let loss = zeros(1)?;
        let labels: Vec<u32> = (0..r).map(|i| ((i * 7919) % c) as u32).collect();
        let labels = Rc::new(b.upload_u32(&labels)?);
        {
            let (d, x, y) = (b.clone(), x.clone(), y.clone());
            push(
                "softmax",
                shape.clone(),
                GBPS,
                F * 2.0 * rc,
                Box::new(move || d.softmax(r, c, &x, 1.0, &y)),
            );
        }
        {
            let (d, y, dy, dx) = (b.clone(), y.clone(), dy.clone(), dx.clone());
            push(
                "softmax bwd",
                shape.clone(),
                GBPS,
                F * 3.0 * rc,
                Box::new(move || d.softmax_backward(r, c, &y, &dy, 1.0, &dx)),
            );
        }
        {
            let (d, x, y) = (b.clone(), x.clone(), y.clone());
            push(
                "log_softmax",
                shape.clone(),
                GBPS,
                F * 2.0 * rc,
                Box::new(move || d.log_softmax(r, c, &x, 1.0, &y)),
            );
        }
        {
            let (d, y, dy, dx) = (b.clone(), y.clone(), dy.clone(), dx.clone());
            push(
                "log_softmax bwd",
                shape.clone(),
                GBPS,
                F * 3.0 * rc,
                Box::new(move || d.log_softmax_backward(r, c, &y, &dy, 1.0, &dx)),
            );
        }
        {
            let (d, x, labels, loss, dx) = (
                b.clone(),
                x.clone(),
                labels.clone(),
                loss.clone(),
                dx.clone(),
            );
            push(
                "cross_entropy+grad",
                shape.clone(),
                GBPS,
                F * (2.0 * rc + r as f64 + 1.0),
                Box::new(move || d.cross_entropy(r, c, &x, &labels, &loss, Some(&dx))),
            );
        }
        {
            let d = b.clone();
            push(
                "kd_loss+grad",
                format!("{shape} T4"),
                GBPS,
                F * (3.0 * rc + r as f64 + 1.0),
                Box::new(move || d.kd_loss(r, c, &x, &t, &labels, 4.0, 0.5, &loss, Some(&dx))),
            );
        }
    }

    // Elementwise and reductions.
    let n = sz.elems;
    let nf = n as f64;
    let shape = format!("{n}");
    let (x, x2, y, out) = (up(n, 12)?, up(n, 13)?, zeros(n)?, zeros(1)?);
    {
        let (d, x, y) = (b.clone(), x.clone(), y.clone());
        push(
            "relu",
            shape.clone(),
            GBPS,
            F * 2.0 * nf,
            Box::new(move || d.relu(&x, &y)),
        );
    }
    {
        let (d, x, x2, y) = (b.clone(), x.clone(), x2.clone(), y.clone());
        push(
            "relu bwd",
            shape.clone(),
            GBPS,
            F * 3.0 * nf,
            Box::new(move || d.relu_backward(&x, &x2, &y)),
        );
    }
    {
        let (d, x, x2, y) = (b.clone(), x.clone(), x2.clone(), y.clone());
        push(
            "add",
            shape.clone(),
            GBPS,
            F * 3.0 * nf,
            Box::new(move || d.add(&x, &x2, &y)),
        );
    }
    {
        let (d, x, y) = (b.clone(), x.clone(), y.clone());
        push(
            "axpy",
            shape.clone(),
            GBPS,
            F * 3.0 * nf,
            Box::new(move || d.axpy(1e-3, &x, &y)),
        );
    }
    {
        let (d, x, out) = (b.clone(), x.clone(), out.clone());
        push(
            "sum",
            shape,
            GBPS,
            F * (nf + 1.0),
            Box::new(move || d.sum(&x, &out)),
        );
    }
    {
        let cols = sz.colsum_cols;
        let rows = n / cols;
        let (d, x, out) = (b.clone(), x.clone(), zeros(cols)?);
        push(
            "column_sums",
            format!("{rows}x{cols}"),
            GBPS,
            F * (rows * cols + cols) as f64,
            Box::new(move || d.column_sums(rows, cols, &x, &out)),
        );
    }
    drop((x, x2, y));

    // Optimiser steps over the teacher's parameter count.
    let n = sz.params;
    let nf = n as f64;
    let (p, g, m, v) = (up(n, 14)?, up(n, 15)?, zeros(n)?, zeros(n)?);
    {
        let cfg = SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        let (d, p, g, m) = (b.clone(), p.clone(), g.clone(), m.clone());
        push(
            "sgd step (momentum)",
            format!("{n} params"),
            GBPS,
            F * 5.0 * nf,
            Box::new(move || d.sgd_step(&cfg, false, &p, &g, &m)),
        );
    }
    {
        let cfg = AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        };
        let d = b.clone();
        let mut step = 0u32;
        push(
            "adam step",
            format!("{n} params"),
            GBPS,
            F * 7.0 * nf,
            Box::new(move || {
                step += 1;
                d.adam_step(&cfg, step, &p, &g, &m, &v)
            }),
        );
    }
    Ok(jobs)
}
