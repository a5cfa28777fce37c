//! Section 2's workload list: every kernel of the `Backend` trait, with its buffers uploaded
//! once, on one device at the sizes of that device.

use std::rc::Rc;
use std::sync::Arc;

use distill::backend::{AdamConfig, Backend, GemmBias, GemmShape, Pool2dShape, SgdConfig, Storage};
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

/// Bytes per f32 / u32 word.
const F: f64 = 4.0;

/// The jobs built so far for one device, and the device their buffers are uploaded to.
struct JobList {
    backend: Arc<dyn Backend>,
    jobs: Vec<BJob>,
}

impl JobList {
    /// A handle on the device, for a job's closure to own.
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// `len` pseudo-random values ([`fill`] with `seed`), uploaded.
    fn upload(&self, len: usize, seed: u64) -> distill::Result<Rc<Storage>> {
        Ok(Rc::new(self.backend.upload_f32(&fill(len, seed))?))
    }

    fn zeros(&self, len: usize) -> distill::Result<Rc<Storage>> {
        Ok(Rc::new(self.backend.zeros(len)?))
    }

    fn push(
        &mut self,
        kernel: &str,
        shape: String,
        unit: &'static str,
        work: f64,
        run: Box<dyn FnMut() -> distill::Result<()>>,
    ) {
        self.jobs.push(BJob {
            kernel: kernel.into(),
            shape,
            unit,
            work,
            run,
        })
    }
}

/// Every kernel of the section on `dev`, its buffers uploaded once.
pub fn backend_jobs(dev: &Device, sz: &Sizes) -> distill::Result<Vec<BJob>> {
    let mut list = JobList {
        backend: dev.0.clone(),
        jobs: Vec::new(),
    };
    for &n in &sz.gemm {
        push_matmul_jobs(&mut list, n)?;
    }
    for (layer, s) in conv_layers(sz.batch) {
        push_conv2d_jobs(&mut list, layer, s)?;
        push_max_pool2d_jobs(&mut list, layer, pool_of(&s))?;
    }
    for &(rows, cols) in &sz.softmax {
        push_softmax_and_loss_jobs(&mut list, rows, cols)?;
    }
    push_elementwise_and_reduction_jobs(&mut list, sz.elems, sz.colsum_cols)?;
    push_optimiser_jobs(&mut list, sz.params)?;
    Ok(list.jobs)
}

/// matmul: square `n`×`n`×`n`, the three transpose variants.
fn push_matmul_jobs(list: &mut JobList, n: usize) -> distill::Result<()> {
    let (a, b, c) = (
        list.upload(n * n, 1)?,
        list.upload(n * n, 2)?,
        list.zeros(n * n)?,
    );
    for (name, ta, tb) in [
        ("matmul NN", Trans::N, Trans::N),
        ("matmul NT", Trans::N, Trans::T),
        ("matmul TN", Trans::T, Trans::N),
    ] {
        let (d, a, b, c) = (list.backend(), a.clone(), b.clone(), c.clone());
        let shape = GemmShape {
            ta,
            tb,
            m: n,
            n,
            k: n,
        };
        list.push(
            name,
            format!("{n}x{n}x{n}"),
            GFLOPS,
            2.0 * (n * n * n) as f64,
            Box::new(move || d.gemm(shape, &a, &b, &c, GemmBias::None, false, false)),
        );
    }
    Ok(())
}

/// conv2d forward and its three backward kernels on one layer.
fn push_conv2d_jobs(list: &mut JobList, layer: &str, s: Conv2dShape) -> distill::Result<()> {
    let desc = format!(
        "{layer}: b{} {}->{} {}x{}",
        s.batch, s.in_channels, s.out_channels, s.in_h, s.in_w
    );
    let x = list.upload(s.input_len(), 3)?;
    let w = list.upload(s.weight_len(), 4)?;
    let bias = list.upload(s.out_channels, 5)?;
    let dy = list.upload(s.output_len(), 6)?;
    let y = list.zeros(s.output_len())?;
    let dx = list.zeros(s.input_len())?;
    let dw = list.zeros(s.weight_len())?;
    let db = list.zeros(s.out_channels)?;
    {
        let (d, x, w, bias, y) = (
            list.backend(),
            x.clone(),
            w.clone(),
            bias.clone(),
            y.clone(),
        );
        list.push(
            "conv2d fwd",
            desc.clone(),
            GFLOPS,
            s.flops(),
            Box::new(move || d.conv2d_forward(&s, &x, &w, Some(&bias), &y)),
        );
    }
    {
        let (d, w, dy, dx) = (list.backend(), w.clone(), dy.clone(), dx.clone());
        list.push(
            "conv2d bwd-input",
            desc.clone(),
            GFLOPS,
            s.flops(),
            Box::new(move || d.conv2d_backward_input(&s, &w, &dy, &dx)),
        );
    }
    {
        let (d, x, dy, dw) = (list.backend(), x.clone(), dy.clone(), dw.clone());
        list.push(
            "conv2d bwd-weight",
            desc.clone(),
            GFLOPS,
            s.flops(),
            Box::new(move || d.conv2d_backward_weight(&s, &x, &dy, &dw)),
        );
    }
    {
        let (d, dy, db) = (list.backend(), dy.clone(), db.clone());
        list.push(
            "conv2d bwd-bias",
            desc,
            GBPS,
            F * (s.output_len() + s.out_channels) as f64,
            Box::new(move || d.conv2d_backward_bias(&s, &dy, &db)),
        );
    }
    Ok(())
}

/// max_pool2d 2×2/2, forward and backward, on the output shape of one conv layer (its input
/// is a buffer of its own, not the conv job's output).
fn push_max_pool2d_jobs(list: &mut JobList, layer: &str, p: Pool2dShape) -> distill::Result<()> {
    let desc = format!(
        "{layer} out: b{} c{} {}x{} k2 s2",
        p.batch, p.channels, p.in_h, p.in_w
    );
    let y = list.zeros(p.output_len())?;
    let argmax = Rc::new(list.backend.upload_u32(&vec![0u32; p.output_len()])?);
    let dy = list.upload(p.output_len(), 7)?;
    let dx = list.zeros(p.input_len())?;
    {
        let (d, x, y, argmax) = (
            list.backend(),
            list.upload(p.input_len(), 8)?,
            y.clone(),
            argmax.clone(),
        );
        list.push(
            "max_pool2d fwd",
            desc.clone(),
            GBPS,
            F * (p.input_len() + 2 * p.output_len()) as f64,
            Box::new(move || d.max_pool2d_forward(&p, &x, &y, &argmax)),
        );
    }
    {
        let d = list.backend();
        list.push(
            "max_pool2d bwd",
            desc,
            GBPS,
            F * (2 * p.output_len() + p.input_len()) as f64,
            Box::new(move || d.max_pool2d_backward(&p, &dy, &argmax, &dx)),
        );
    }
    Ok(())
}

/// The softmax family and the losses (with gradients) on a `rows`×`cols` batch of logits.
fn push_softmax_and_loss_jobs(list: &mut JobList, rows: usize, cols: usize) -> distill::Result<()> {
    let shape = format!("{rows}x{cols}");
    let rc = (rows * cols) as f64;
    let x = list.upload(rows * cols, 9)?;
    let t = list.upload(rows * cols, 10)?;
    let dy = list.upload(rows * cols, 11)?;
    let y = list.zeros(rows * cols)?;
    let dx = list.zeros(rows * cols)?;
    let loss = list.zeros(1)?;
    let labels: Vec<u32> = (0..rows).map(|i| ((i * 7919) % cols) as u32).collect();
    let labels = Rc::new(list.backend.upload_u32(&labels)?);
    {
        let (d, x, y) = (list.backend(), x.clone(), y.clone());
        list.push(
            "softmax",
            shape.clone(),
            GBPS,
            F * 2.0 * rc,
            Box::new(move || d.softmax(rows, cols, &x, 1.0, &y)),
        );
    }
    {
        let (d, y, dy, dx) = (list.backend(), y.clone(), dy.clone(), dx.clone());
        list.push(
            "softmax bwd",
            shape.clone(),
            GBPS,
            F * 3.0 * rc,
            Box::new(move || d.softmax_backward(rows, cols, &y, &dy, 1.0, &dx)),
        );
    }
    {
        let (d, x, y) = (list.backend(), x.clone(), y.clone());
        list.push(
            "log_softmax",
            shape.clone(),
            GBPS,
            F * 2.0 * rc,
            Box::new(move || d.log_softmax(rows, cols, &x, 1.0, &y)),
        );
    }
    {
        let (d, y, dy, dx) = (list.backend(), y.clone(), dy.clone(), dx.clone());
        list.push(
            "log_softmax bwd",
            shape.clone(),
            GBPS,
            F * 3.0 * rc,
            Box::new(move || d.log_softmax_backward(rows, cols, &y, &dy, 1.0, &dx)),
        );
    }
    {
        let (d, x, labels, loss, dx) = (
            list.backend(),
            x.clone(),
            labels.clone(),
            loss.clone(),
            dx.clone(),
        );
        list.push(
            "cross_entropy+grad",
            shape.clone(),
            GBPS,
            F * (2.0 * rc + rows as f64 + 1.0),
            Box::new(move || d.cross_entropy(rows, cols, &x, &labels, &loss, Some(&dx))),
        );
    }
    {
        let d = list.backend();
        list.push(
            "kd_loss+grad",
            format!("{shape} T4"),
            GBPS,
            F * (3.0 * rc + rows as f64 + 1.0),
            Box::new(move || d.kd_loss(rows, cols, &x, &t, &labels, 4.0, 0.5, &loss, Some(&dx))),
        );
    }
    Ok(())
}

/// Element-wise kernels and reductions over `n` values; `column_sums` sees them as a matrix
/// of `colsum_cols` columns.
fn push_elementwise_and_reduction_jobs(
    list: &mut JobList,
    n: usize,
    colsum_cols: usize,
) -> distill::Result<()> {
    let nf = n as f64;
    let shape = format!("{n}");
    let (x, x2, y, out) = (
        list.upload(n, 12)?,
        list.upload(n, 13)?,
        list.zeros(n)?,
        list.zeros(1)?,
    );
    {
        let (d, x, y) = (list.backend(), x.clone(), y.clone());
        list.push(
            "relu",
            shape.clone(),
            GBPS,
            F * 2.0 * nf,
            Box::new(move || d.relu(&x, &y)),
        );
    }
    {
        let (d, x, x2, y) = (list.backend(), x.clone(), x2.clone(), y.clone());
        list.push(
            "relu bwd",
            shape.clone(),
            GBPS,
            F * 3.0 * nf,
            Box::new(move || d.relu_backward(&x, &x2, &y)),
        );
    }
    {
        let (d, x, x2, y) = (list.backend(), x.clone(), x2.clone(), y.clone());
        list.push(
            "add",
            shape.clone(),
            GBPS,
            F * 3.0 * nf,
            Box::new(move || d.add(&x, &x2, &y)),
        );
    }
    {
        let (d, x, y) = (list.backend(), x.clone(), y.clone());
        list.push(
            "axpy",
            shape.clone(),
            GBPS,
            F * 3.0 * nf,
            Box::new(move || d.axpy(1e-3, &x, &y)),
        );
    }
    {
        let (d, x, out) = (list.backend(), x.clone(), out.clone());
        list.push(
            "sum",
            shape,
            GBPS,
            F * (nf + 1.0),
            Box::new(move || d.sum(&x, &out)),
        );
    }
    {
        let cols = colsum_cols;
        let rows = n / cols;
        let (d, x, out) = (list.backend(), x.clone(), list.zeros(cols)?);
        list.push(
            "column_sums",
            format!("{rows}x{cols}"),
            GBPS,
            F * (rows * cols + cols) as f64,
            Box::new(move || d.column_sums(rows, cols, &x, &out)),
        );
    }
    Ok(())
}

/// Optimiser steps over `n` parameters (the teacher's parameter count).
fn push_optimiser_jobs(list: &mut JobList, n: usize) -> distill::Result<()> {
    let nf = n as f64;
    let (p, g, m, v) = (
        list.upload(n, 14)?,
        list.upload(n, 15)?,
        list.zeros(n)?,
        list.zeros(n)?,
    );
    {
        let cfg = SgdConfig {
            lr: 0.01,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        let (d, p, g, m) = (list.backend(), p.clone(), g.clone(), m.clone());
        list.push(
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
        let d = list.backend();
        let mut step = 0u32;
        list.push(
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
    Ok(())
}
