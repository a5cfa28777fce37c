//! Every kernel of the `Backend` trait at the teacher and student presets' shapes, on any
//! device: square GEMMs in the three transpose variants the engine uses; conv2d forward and its three
//! backward kernels and 2×2 max pooling on the teacher's and the student's layers at batch
//! 128 on 28×28 input; the softmax family and the losses (with gradients); element-wise maps
//! and reductions; SGD and Adam steps over the teacher's parameter count.
//!
//! The work is split in `Workload`s (one GEMM size, one conv layer, …): each uploads its
//! buffers, times its kernels and drops them before the next, so the device holds one
//! workload's memory at a time, and a workload that fails (out of memory, device lost) gives
//! rows that say so while the others go on. matmul and conv rows are GFLOP/s; the rest GB/s
//! of the bytes the kernel's contract reads and writes, each with its working set (the bytes
//! of the distinct buffers one call touches), which picks the cache level or main memory the
//! row is read against (see [`super::bandwidth`]).

use std::rc::Rc;
use std::sync::Arc;

use distill_kernels::rng::Rng;

use super::report::{Row, Unit};
use super::timing::{time_on, Budget};
use crate::backend::{
    pool_after, AdamConfig, Backend, Conv2dShape, DeviceKind, GemmBias, GemmShape, Pool2dShape,
    SgdConfig, Storage, Trans,
};
use crate::Result;

/// The problem sizes of one run.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Shapes {
    pub gemm: Vec<usize>,
    pub batch: usize,
    pub softmax: Vec<(usize, usize)>,
    pub elems: usize,
    /// Columns of the `column_sums` matrix (rows = elems / cols).
    pub colsum_cols: usize,
    pub params: usize,
}

impl Shapes {
    pub fn full() -> Shapes {
        Shapes {
            gemm: vec![128, 256, 512, 1024, 2048, 4096],
            batch: 128,
            softmax: vec![(128, 10), (65536, 10), (4096, 1000)],
            elems: 1 << 24,
            colsum_cols: 1024,
            params: 6_400_000,
        }
    }

    /// `--quick`: the training batch stays, the large sizes go.
    pub fn quick() -> Shapes {
        Shapes {
            gemm: vec![128, 256, 512, 1024],
            batch: 128,
            softmax: vec![(128, 10), (65536, 10)],
            elems: 1 << 22,
            colsum_cols: 1024,
            params: 6_400_000,
        }
    }

    /// Software adapters (lavapipe runs these kernels at ~0.1 GFLOP/s): tiny shapes. The
    /// 128×128 GEMM and the 128×10 softmax rows still meet the CPU's.
    pub fn software() -> Shapes {
        Shapes {
            gemm: vec![64, 128],
            batch: 2,
            softmax: vec![(128, 10)],
            elems: 1 << 16,
            colsum_cols: 256,
            params: 1 << 16,
        }
    }
}

/// The teacher's and the student's conv layers (3×3, pad 1) at `batch`.
pub(crate) fn conv_layers(batch: usize) -> [(&'static str, Conv2dShape); 4] {
    let conv = |cin, cout, side| Conv2dShape::same_3x3(batch, cin, cout, side);
    [
        ("teacher conv1", conv(1, 64, 28)),
        ("teacher conv2", conv(64, 128, 14)),
        ("student conv1", conv(1, 32, 28)),
        ("student conv2", conv(32, 64, 14)),
    ]
}

/// One group of kernels sharing their buffers.
#[derive(Clone, Debug)]
pub(crate) enum Workload {
    /// Square n×n×n, NN / NT / TN.
    Matmul(usize),
    Conv(&'static str, Conv2dShape),
    Pool(&'static str, Pool2dShape),
    /// The conv and the 2×2 pool after it as one call (fused where the backend fuses).
    ConvPool(&'static str, Conv2dShape),
    /// rows × cols logits.
    Softmax(usize, usize),
    /// n values; column_sums as a matrix of the given columns.
    Elementwise(usize, usize),
    /// n parameters.
    Optimiser(usize),
}

/// Every workload of `shapes`, in the order they run.
pub(crate) fn workloads(shapes: &Shapes) -> Vec<Workload> {
    let mut w: Vec<Workload> = shapes.gemm.iter().map(|&n| Workload::Matmul(n)).collect();
    for (layer, s) in conv_layers(shapes.batch) {
        w.push(Workload::Conv(layer, s));
        w.push(Workload::Pool(layer, pool_after(&s)));
        w.push(Workload::ConvPool(layer, s));
    }
    for &(r, c) in &shapes.softmax {
        w.push(Workload::Softmax(r, c));
    }
    w.push(Workload::Elementwise(shapes.elems, shapes.colsum_cols));
    w.push(Workload::Optimiser(shapes.params));
    w
}

impl Workload {
    pub fn group(&self) -> &'static str {
        match self {
            Workload::Matmul(_) => "matmul",
            Workload::Conv(..) => "conv2d",
            Workload::Pool(..) => "pool",
            Workload::ConvPool(..) => "conv2d+pool",
            Workload::Softmax(..) => "softmax",
            Workload::Elementwise(..) => "elementwise",
            Workload::Optimiser(_) => "optimiser",
        }
    }

    /// (kernel, shape) of each row the workload gives, in order.
    pub fn rows(&self) -> Vec<(&'static str, String)> {
        let each = |kernels: &[&'static str], shape: String| {
            kernels.iter().map(|k| (*k, shape.clone())).collect()
        };
        match self {
            Workload::Matmul(n) => each(
                &["matmul NN", "matmul NT", "matmul TN"],
                format!("{n}x{n}x{n}"),
            ),
            Workload::Conv(layer, s) => each(
                &[
                    "conv2d fwd",
                    "conv2d bwd-input",
                    "conv2d bwd-weight",
                    "conv2d bwd-bias",
                ],
                format!(
                    "{layer}: b{} {}->{} {}x{} k3 p1",
                    s.batch, s.in_channels, s.out_channels, s.in_h, s.in_w
                ),
            ),
            Workload::ConvPool(layer, s) => each(
                &["conv2d+pool fwd", "conv2d+pool bwd-params"],
                format!(
                    "{layer}: b{} {}->{} {}x{} k3 p1",
                    s.batch, s.in_channels, s.out_channels, s.in_h, s.in_w
                ),
            ),
            Workload::Pool(layer, p) => each(
                &["max_pool2d fwd", "max_pool2d bwd"],
                format!(
                    "{layer} out: b{} c{} {}x{} k2 s2",
                    p.batch, p.channels, p.in_h, p.in_w
                ),
            ),
            Workload::Softmax(r, c) => {
                let mut v: Vec<(&'static str, String)> = each(
                    &[
                        "softmax",
                        "softmax bwd",
                        "log_softmax",
                        "log_softmax bwd",
                        "cross_entropy+grad",
                    ],
                    format!("{r}x{c}"),
                );
                v.push(("kd_loss+grad", format!("{r}x{c} T4")));
                v
            }
            Workload::Elementwise(n, cols) => {
                let mut v: Vec<(&'static str, String)> =
                    each(&["relu", "relu bwd", "add", "axpy", "sum"], format!("{n}"));
                v.push(("column_sums", format!("{}x{cols}", n / cols)));
                v
            }
            Workload::Optimiser(n) => {
                each(&["sgd step (momentum)", "adam step"], format!("{n} params"))
            }
        }
    }

    /// The largest buffer the workload allocates, in bytes.
    fn largest_buffer(&self) -> u64 {
        let words = match self {
            Workload::Matmul(n) => n * n,
            Workload::Conv(_, s) | Workload::ConvPool(_, s) => s.input_len().max(s.output_len()),
            Workload::Pool(_, p) => p.input_len(),
            Workload::Softmax(r, c) => r * c,
            Workload::Elementwise(n, _) | Workload::Optimiser(n) => *n,
        };
        4 * words as u64
    }

    fn build(&self, list: &mut JobList) -> Result<()> {
        match *self {
            Workload::Matmul(n) => push_matmul_jobs(list, n),
            Workload::Conv(_, s) => push_conv2d_jobs(list, s),
            Workload::Pool(_, p) => push_max_pool2d_jobs(list, p),
            Workload::ConvPool(_, s) => push_conv2d_pool_jobs(list, s),
            Workload::Softmax(r, c) => push_softmax_and_loss_jobs(list, r, c),
            Workload::Elementwise(n, cols) => push_elementwise_and_reduction_jobs(list, n, cols),
            Workload::Optimiser(n) => push_optimiser_jobs(list, n),
        }
    }
}

/// One kernel call on one device, worth `work` flops (GFLOP/s rows) or bytes (GB/s rows).
struct Job {
    unit: Unit,
    work: f64,
    /// Bytes of the distinct buffers one call touches. GFLOP/s rows: also the bytes the
    /// kernel's contract reads and writes (each buffer once), which give the row its GB/s.
    working_set: Option<f64>,
    run: Box<dyn FnMut() -> Result<()>>,
}

/// Runs one workload on `be` (device `id`): a row per kernel, each passed to `on_row` as it
/// is measured. `max_buffer`: the device's largest buffer, where it has one.
pub(crate) fn run_workload(
    id: &str,
    be: &Arc<dyn Backend>,
    w: &Workload,
    budget: Budget,
    timestamps: bool,
    max_buffer: Option<u64>,
    on_row: &mut dyn FnMut(&Row),
) -> Vec<Row> {
    let mut rows: Vec<Row> = w
        .rows()
        .into_iter()
        .map(|(kernel, shape)| {
            let mut r = Row::new(id, w.group(), kernel, &shape, Unit::Gbps);
            if be.kind() == DeviceKind::Cpu {
                r.threads = Some(rayon::current_num_threads());
            }
            r
        })
        .collect();
    let fail = |rows: &mut Vec<Row>, why: String, on_row: &mut dyn FnMut(&Row)| {
        for r in rows.iter_mut() {
            r.error = Some(why.clone());
            on_row(r);
        }
    };
    if let Some(max) = max_buffer.filter(|&m| w.largest_buffer() > m) {
        let why = format!(
            "skipped: needs a buffer of {} MiB, over this device's max of {} MiB",
            w.largest_buffer() >> 20,
            max >> 20
        );
        fail(&mut rows, why, on_row);
        return rows;
    }
    let mut list = JobList {
        backend: be.clone(),
        jobs: Vec::new(),
    };
    if let Err(e) = w.build(&mut list) {
        fail(&mut rows, format!("setup failed: {e}"), on_row);
        return rows;
    }
    let sync_buf = match be.zeros(1) {
        Ok(s) => s,
        Err(e) => {
            fail(&mut rows, format!("setup failed: {e}"), on_row);
            return rows;
        }
    };
    let sync = || be.download_f32(&sync_buf).map(|_| ());
    for (job, r) in list.jobs.iter_mut().zip(rows.iter_mut()) {
        r.unit = job.unit;
        match time_on(be.as_ref(), &mut job.run, &sync, budget, timestamps) {
            Ok((t, timing)) => {
                r.value = Some(job.work / t.secs_per_call / 1e9);
                r.working_set_bytes = job.working_set.map(|w| w as u64);
                if job.unit == Unit::Gflops {
                    r.gbps = job.working_set.map(|b| b / t.secs_per_call / 1e9);
                }
                r.calls = Some(t.calls as u64);
                r.timing = timing;
            }
            Err(e) => r.error = Some(e.to_string()),
        }
        if be.kind() != DeviceKind::Cpu && r.error.is_some() {
            r.timing = super::timing::Timing::WallReadback;
        }
        on_row(r);
    }
    rows
}

/// Bytes per f32 / u32 word.
const F: f64 = 4.0;

/// Deterministic pseudo-random values in [-1, 1) (contents only matter for being non-trivial).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// The jobs built so far for one workload, and the device their buffers are uploaded to.
struct JobList {
    backend: Arc<dyn Backend>,
    jobs: Vec<Job>,
}

impl JobList {
    /// A handle on the device, for a job's closure to own.
    fn backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    /// `len` pseudo-random values ([`fill`] with `seed`), uploaded.
    fn upload(&self, len: usize, seed: u64) -> Result<Rc<Storage>> {
        Ok(Rc::new(self.backend.upload_f32(&fill(len, seed))?))
    }

    fn zeros(&self, len: usize) -> Result<Rc<Storage>> {
        Ok(Rc::new(self.backend.zeros(len)?))
    }

    /// A GB/s job that touches every byte once (its working set is its work).
    fn push_bytes(&mut self, bytes: f64, run: Box<dyn FnMut() -> Result<()>>) {
        self.push_in_place(bytes, bytes, run)
    }

    /// A GFLOP/s job of `flops` whose contract reads and writes `bytes` (each buffer once).
    fn push_flops(&mut self, flops: f64, bytes: f64, run: Box<dyn FnMut() -> Result<()>>) {
        self.jobs.push(Job {
            unit: Unit::Gflops,
            work: flops,
            working_set: Some(bytes),
            run,
        })
    }

    /// A GB/s job that reads and writes some buffers in place: `work` bytes moved over
    /// `working_set` bytes of buffers.
    fn push_in_place(&mut self, work: f64, working_set: f64, run: Box<dyn FnMut() -> Result<()>>) {
        self.jobs.push(Job {
            unit: Unit::Gbps,
            work,
            working_set: Some(working_set),
            run,
        })
    }
}

/// matmul: square `n`×`n`×`n`, the three transpose variants (the order of [`Workload::rows`]).
fn push_matmul_jobs(list: &mut JobList, n: usize) -> Result<()> {
    let (a, b, c) = (
        list.upload(n * n, 1)?,
        list.upload(n * n, 2)?,
        list.zeros(n * n)?,
    );
    for (ta, tb) in [
        (Trans::N, Trans::N),
        (Trans::N, Trans::T),
        (Trans::T, Trans::N),
    ] {
        let (d, a, b, c) = (list.backend(), a.clone(), b.clone(), c.clone());
        let shape = GemmShape {
            ta,
            tb,
            m: n,
            n,
            k: n,
        };
        list.push_flops(
            2.0 * (n * n * n) as f64,
            F * 3.0 * (n * n) as f64,
            Box::new(move || d.gemm(shape, &a, &b, &c, GemmBias::None, false, false)),
        );
    }
    Ok(())
}

/// conv2d forward and its three backward kernels on one layer (GFLOP/s; the bias gradient,
/// a reduction, GB/s). Bytes: the buffers each kernel reads and writes, once.
fn push_conv2d_jobs(list: &mut JobList, s: Conv2dShape) -> Result<()> {
    let x = list.upload(s.input_len(), 3)?;
    let w = list.upload(s.weight_len(), 4)?;
    let bias = list.upload(s.out_channels, 5)?;
    let dy = list.upload(s.output_len(), 6)?;
    let y = list.zeros(s.output_len())?;
    let dx = list.zeros(s.input_len())?;
    let dw = list.zeros(s.weight_len())?;
    let db = list.zeros(s.out_channels)?;
    let (input, weight, output, channels) = (
        s.input_len() as f64,
        s.weight_len() as f64,
        s.output_len() as f64,
        s.out_channels as f64,
    );
    let (d, x2, w2) = (list.backend(), x.clone(), w.clone());
    list.push_flops(
        s.flops(),
        F * (input + weight + channels + output),
        Box::new(move || d.conv2d_forward(&s, &x2, &w2, Some(&bias), &y)),
    );
    let (d, dy2) = (list.backend(), dy.clone());
    list.push_flops(
        s.flops(),
        F * (weight + output + input),
        Box::new(move || d.conv2d_backward_input(&s, &w, &dy2, &dx)),
    );
    let (d, dy2) = (list.backend(), dy.clone());
    list.push_flops(
        s.flops(),
        F * (input + output + weight),
        Box::new(move || d.conv2d_backward_weight(&s, &x, &dy2, &dw)),
    );
    let d = list.backend();
    list.push_bytes(
        F * (output + channels),
        Box::new(move || d.conv2d_backward_bias(&s, &dy, &db)),
    );
    Ok(())
}

/// conv2d and the 2×2 max-pool after it as one call, forward and the parameter gradients
/// (flops: the conv's; the pool adds only compares). Bytes: the input, the parameters and
/// their gradients, and the pooled output, its gradient and arg-max; no full-size tensor.
fn push_conv2d_pool_jobs(list: &mut JobList, s: Conv2dShape) -> Result<()> {
    let p = pool_after(&s);
    let x = list.upload(s.input_len(), 3)?;
    let w = list.upload(s.weight_len(), 4)?;
    let bias = list.upload(s.out_channels, 5)?;
    let dy = list.upload(p.output_len(), 6)?;
    let y = list.zeros(p.output_len())?;
    let argmax = Rc::new(list.backend.upload_u32(&vec![0u32; p.output_len()])?);
    let dw = list.zeros(s.weight_len())?;
    let db = list.zeros(s.out_channels)?;
    let params = (s.weight_len() + s.out_channels) as f64;
    let (input, pooled) = (s.input_len() as f64, p.output_len() as f64);
    let (d, x2, a) = (list.backend(), x.clone(), argmax.clone());
    list.push_flops(
        s.flops(),
        F * (input + params + 2.0 * pooled),
        Box::new(move || d.conv2d_pool_forward(&s, &x2, &w, Some(&bias), false, &y, &a)),
    );
    let d = list.backend();
    list.push_flops(
        s.flops(),
        F * (input + 2.0 * pooled + params),
        Box::new(move || d.conv2d_pool_backward_params(&s, &x, &dy, &argmax, None, &dw, Some(&db))),
    );
    Ok(())
}

/// max_pool2d forward and backward.
fn push_max_pool2d_jobs(list: &mut JobList, p: Pool2dShape) -> Result<()> {
    let x = list.upload(p.input_len(), 8)?;
    let y = list.zeros(p.output_len())?;
    let argmax = Rc::new(list.backend.upload_u32(&vec![0u32; p.output_len()])?);
    let dy = list.upload(p.output_len(), 7)?;
    let dx = list.zeros(p.input_len())?;
    let (d, a) = (list.backend(), argmax.clone());
    list.push_bytes(
        F * (p.input_len() + 2 * p.output_len()) as f64,
        Box::new(move || d.max_pool2d_forward(&p, &x, &y, &a)),
    );
    let d = list.backend();
    list.push_bytes(
        F * (2 * p.output_len() + p.input_len()) as f64,
        Box::new(move || d.max_pool2d_backward(&p, &dy, &argmax, &dx)),
    );
    Ok(())
}

/// The softmax family and the losses (with gradients) on a `rows`×`cols` batch of logits.
fn push_softmax_and_loss_jobs(list: &mut JobList, rows: usize, cols: usize) -> Result<()> {
    let rc = (rows * cols) as f64;
    let x = list.upload(rows * cols, 9)?;
    let t = list.upload(rows * cols, 10)?;
    let dy = list.upload(rows * cols, 11)?;
    let y = list.zeros(rows * cols)?;
    let dx = list.zeros(rows * cols)?;
    let loss = list.zeros(1)?;
    let labels: Vec<u32> = (0..rows).map(|i| ((i * 7919) % cols) as u32).collect();
    let labels = Rc::new(list.backend.upload_u32(&labels)?);
    let (d, x1, y1) = (list.backend(), x.clone(), y.clone());
    list.push_bytes(
        F * 2.0 * rc,
        Box::new(move || d.softmax(rows, cols, &x1, 1.0, &y1)),
    );
    let (d, y1, dy1, dx1) = (list.backend(), y.clone(), dy.clone(), dx.clone());
    list.push_bytes(
        F * 3.0 * rc,
        Box::new(move || d.softmax_backward(rows, cols, &y1, &dy1, 1.0, &dx1)),
    );
    let (d, x1, y1) = (list.backend(), x.clone(), y.clone());
    list.push_bytes(
        F * 2.0 * rc,
        Box::new(move || d.log_softmax(rows, cols, &x1, 1.0, &y1)),
    );
    let (d, dx1) = (list.backend(), dx.clone());
    list.push_bytes(
        F * 3.0 * rc,
        Box::new(move || d.log_softmax_backward(rows, cols, &y, &dy, 1.0, &dx1)),
    );
    let (d, x1, l1, loss1, dx1) = (
        list.backend(),
        x.clone(),
        labels.clone(),
        loss.clone(),
        dx.clone(),
    );
    list.push_bytes(
        F * (2.0 * rc + rows as f64 + 1.0),
        Box::new(move || d.cross_entropy(rows, cols, &x1, &l1, &loss1, Some(&dx1))),
    );
    let d = list.backend();
    list.push_bytes(
        F * (3.0 * rc + rows as f64 + 1.0),
        Box::new(move || d.kd_loss(rows, cols, &x, &t, &labels, 4.0, 0.5, &loss, Some(&dx))),
    );
    Ok(())
}

/// Element-wise kernels and reductions over `n` values; `column_sums` sees them as a matrix
/// of `cols` columns.
fn push_elementwise_and_reduction_jobs(list: &mut JobList, n: usize, cols: usize) -> Result<()> {
    let nf = n as f64;
    let (x, x2, y, out) = (
        list.upload(n, 12)?,
        list.upload(n, 13)?,
        list.zeros(n)?,
        list.zeros(1)?,
    );
    let (d, a, b) = (list.backend(), x.clone(), y.clone());
    list.push_bytes(F * 2.0 * nf, Box::new(move || d.relu(&a, &b)));
    let (d, a, z, b) = (list.backend(), x.clone(), x2.clone(), y.clone());
    list.push_bytes(F * 3.0 * nf, Box::new(move || d.relu_backward(&a, &z, &b)));
    let (d, a, b) = (list.backend(), x.clone(), y.clone());
    list.push_bytes(F * 3.0 * nf, Box::new(move || d.add(&a, &x2, &b)));
    let (d, a) = (list.backend(), x.clone());
    list.push_in_place(
        F * 3.0 * nf,
        F * 2.0 * nf,
        Box::new(move || d.axpy(1e-3, &a, &y)),
    );
    let (d, a) = (list.backend(), x.clone());
    list.push_bytes(F * (nf + 1.0), Box::new(move || d.sum(&a, &out)));
    let rows = n / cols;
    let (d, sums) = (list.backend(), list.zeros(cols)?);
    list.push_bytes(
        F * (rows * cols + cols) as f64,
        Box::new(move || d.column_sums(rows, cols, &x, &sums)),
    );
    Ok(())
}

/// Optimiser steps over `n` parameters.
fn push_optimiser_jobs(list: &mut JobList, n: usize) -> Result<()> {
    let nf = n as f64;
    let (p, g, m, v) = (
        list.upload(n, 14)?,
        list.upload(n, 15)?,
        list.zeros(n)?,
        list.zeros(n)?,
    );
    let sgd = SgdConfig {
        lr: 0.01,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let (d, p1, g1, m1) = (list.backend(), p.clone(), g.clone(), m.clone());
    list.push_in_place(
        F * 5.0 * nf,
        F * 3.0 * nf,
        Box::new(move || d.sgd_step(&sgd, false, &p1, &g1, &m1)),
    );
    let adam = AdamConfig {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled_weight_decay: false,
    };
    let d = list.backend();
    let mut step = 0u32;
    list.push_in_place(
        F * 7.0 * nf,
        F * 4.0 * nf,
        Box::new(move || {
            step += 1;
            d.adam_step(&adam, step, &p, &g, &m, &v)
        }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_names_as_many_rows_as_it_builds_jobs() {
        let be: Arc<dyn Backend> = crate::Device::cpu().0;
        let tiny = Shapes {
            gemm: vec![8],
            batch: 2,
            softmax: vec![(4, 3)],
            elems: 64,
            colsum_cols: 8,
            params: 32,
        };
        for w in workloads(&tiny) {
            let mut list = JobList {
                backend: be.clone(),
                jobs: Vec::new(),
            };
            w.build(&mut list).unwrap();
            assert_eq!(list.jobs.len(), w.rows().len(), "{w:?}");
            for job in list.jobs.iter_mut() {
                (job.run)().unwrap();
            }
        }
    }
}
