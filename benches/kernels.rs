//! Kernel throughput against the machine's own measured peak, on the CPU and on every GPU.
//!
//! `cargo bench --bench kernels` (harness = false). Two sections, one table and one JSON file
//! (`$CARGO_TARGET_DIR/bench-kernels.json`, or `target/bench-kernels.json`):
//!
//! 1. **CPU kernels against the CPU's peak.** Measures this CPU's f32 FMA peak in the same
//!    process (one thread and all rayon threads) with an AVX2+FMA loop — the SIMD level the CPU
//!    kernels use (where the CPU has AVX-512 the same loop on zmm registers is measured too
//!    and printed beside it, for reference only) — then `distill-kernels` GEMM (256–2048, NN/NT/TN) and conv2d (the teacher's
//!    and student's layers) as GFLOP/s and % of that peak. Every figure is the best of many
//!    calls, taken round-robin over all workloads (peaks included) for a fixed time budget: on
//!    a shared machine the best call is the one least disturbed by other work, and a quiet
//!    spell benefits every figure alike.
//! 2. **Every kernel through the `Backend` trait**, on the CPU backend and on every adapter of
//!    `distill::backend::gpu::list_adapters()` (software ones such as lavapipe only with
//!    `DISTILL_BENCH_SOFTWARE=1`, and then with tiny shapes and few calls). The same code
//!    drives every device: matmul NN/NT/TN (256–2048; 4096 and 8192 on a hardware GPU only),
//!    conv2d forward / input grad / weight grad / bias grad and max_pool2d forward / backward
//!    for the four conv layers at batch 128, softmax / log_softmax (+ backward), cross_entropy
//!    and kd_loss (with gradients) at 128×10, 65536×10 and 4096×1000, relu / relu_backward /
//!    add / axpy / sum / column_sums at 16M elements, and SGD (momentum) / Adam steps over
//!    6.4M parameters (the teacher's size). matmul and conv report GFLOP/s; the rest GB/s of
//!    the bytes the kernel's contract reads and writes. Each kernel is warmed up, then called
//!    in batches of N back-to-back calls closed by reading back a one-element buffer (which
//!    waits for all queued work); N grows until a batch takes a tenth of the budget, so the
//!    read-back is negligible, and the figure is the best batch's mean. On a GPU with
//!    TIMESTAMP_QUERY a second pass times a few calls of each kernel with GPU timestamps
//!    (`profile_report`), shown as the `ts value` column. GPU rows get the GPU/CPU ratio
//!    against the CPU backend's row of the same kernel and shape, and GPU matmul/conv rows
//!    the % of the card's FP32 (non-tensor) peak: `DISTILL_GPU_PEAK_GFLOPS`, else a small
//!    table keyed by adapter name, else "peak unknown". CPU-backend matmul/conv rows get % of
//!    the measured all-thread FMA peak.
//!
//! `DISTILL_BENCH_SECS` (default 0.25) is the time per kernel per device in section 2; the
//! round-robin of section 1 runs 100× that (25 s by default).

#[cfg(target_arch = "x86_64")]
use std::hint::black_box;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use distill::backend::gpu::{self, GpuBackend};
use distill::backend::{
    AdamConfig, DeviceKind, GemmBias, GemmShape, Pool2dShape, SgdConfig, Storage,
};
use distill::Device;
use distill_kernels::conv;
use distill_kernels::gemm::gemm;
use distill_kernels::simd;
use distill_kernels::{Conv2dShape, Epilogue, Trans};

const GFLOPS: &str = "GFLOP/s";
const GBPS: &str = "GB/s";

/// One measured figure: a row of the printed table and of the JSON file.
struct Row {
    kernel: String,
    /// Short label: `cpu (avx2+fma)` for section 1, `cpu` / `gpu:N` for the `Backend` rows.
    device: String,
    /// The backend's full name (section 2), e.g. `NVIDIA H200 (Vulkan)`.
    device_name: String,
    shape: String,
    /// CPU threads; `None` on a GPU.
    threads: Option<usize>,
    value: Option<f64>,
    unit: &'static str,
    /// Relative to the peak of the same device (at the same thread count on the CPU).
    pct_of_peak: Option<f64>,
    /// This row's value over the CPU backend's value for the same kernel and shape (GPU rows).
    ratio_vs_cpu: Option<f64>,
    /// The same figure from GPU timestamps (`profile_report`), when the adapter has them.
    value_timestamp: Option<f64>,
    /// Calls in the batch the value comes from (section 2).
    calls: Option<usize>,
    note: String,
}

impl Row {
    fn new(kernel: &str, device: &str, shape: String, threads: Option<usize>) -> Row {
        Row {
            kernel: kernel.into(),
            device: device.into(),
            device_name: device.into(),
            shape,
            threads,
            value: None,
            unit: GFLOPS,
            pct_of_peak: None,
            ratio_vs_cpu: None,
            value_timestamp: None,
            calls: None,
            note: String::new(),
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kernel": self.kernel,
            "device": self.device,
            "device_name": self.device_name,
            "shape": self.shape,
            "threads": self.threads,
            "value": self.value,
            "unit": self.unit,
            "gflops": if self.unit == GFLOPS { self.value } else { None },
            "pct_of_peak": self.pct_of_peak,
            "ratio_vs_cpu": self.ratio_vs_cpu,
            "value_timestamp": self.value_timestamp,
            "calls": self.calls,
            "note": self.note,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Peak

/// FMAs per iteration of the peak loop: 12 independent ymm chains of 8 lanes. 12 chains cover
/// FMA latency (4 cycles) × 2 pipes with room to spare and leave registers for the constants.
const PEAK_CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1.0e-7));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); PEAK_CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

/// The same loop on zmm registers, to report what AVX-512 would offer where the CPU has it.
/// The kernels do not use AVX-512, so their % of peak is against [`fma_loop`]. Inline
/// assembly, because the AVX-512 intrinsics need a newer Rust than this crate's MSRV.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
unsafe fn fma_loop_avx512(iters: u64) {
    // 12 independent chains (zmm0–zmm11) on zeroed operands: no denormals, no dependence
    // between chains; only the FMA throughput counts.
    std::arch::asm!(
        "vpxord zmm0, zmm0, zmm0",
        "vmovaps zmm1, zmm0", "vmovaps zmm2, zmm0", "vmovaps zmm3, zmm0",
        "vmovaps zmm4, zmm0", "vmovaps zmm5, zmm0", "vmovaps zmm6, zmm0",
        "vmovaps zmm7, zmm0", "vmovaps zmm8, zmm0", "vmovaps zmm9, zmm0",
        "vmovaps zmm10, zmm0", "vmovaps zmm11, zmm0", "vmovaps zmm12, zmm0",
        "vmovaps zmm13, zmm0",
        "2:",
        "vfmadd213ps zmm0, zmm12, zmm13", "vfmadd213ps zmm1, zmm12, zmm13",
        "vfmadd213ps zmm2, zmm12, zmm13", "vfmadd213ps zmm3, zmm12, zmm13",
        "vfmadd213ps zmm4, zmm12, zmm13", "vfmadd213ps zmm5, zmm12, zmm13",
        "vfmadd213ps zmm6, zmm12, zmm13", "vfmadd213ps zmm7, zmm12, zmm13",
        "vfmadd213ps zmm8, zmm12, zmm13", "vfmadd213ps zmm9, zmm12, zmm13",
        "vfmadd213ps zmm10, zmm12, zmm13", "vfmadd213ps zmm11, zmm12, zmm13",
        "dec {n}",
        "jnz 2b",
        "vzeroupper",
        n = inout(reg) iters.max(1) => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _,
        out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _,
        out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _,
        options(nostack, nomem),
    );
}

// ---------------------------------------------------------------------------------------------
// Workloads

/// Deterministic pseudo-random fill in [-1, 1) (contents only matter for being non-trivial).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn conv_shape(batch: usize, cin: usize, cout: usize, hw: usize) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_channels: cin,
        in_h: hw,
        in_w: hw,
        out_channels: cout,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    }
}

fn pct(g: Option<f64>, peak: Option<f64>) -> Option<f64> {
    Some(100.0 * g? / peak?)
}

/// Three significant digits (at least one decimal), so tiny software-adapter figures show.
fn fmt_sig(v: Option<f64>, suffix: &str) -> String {
    v.map_or_else(
        || "n/a".to_string(),
        |x| {
            let digits = if x.abs() >= 100.0 || x == 0.0 {
                1
            } else {
                (2.0 - x.abs().log10().floor()).clamp(1.0, 6.0) as usize
            };
            format!("{x:.digits$}{suffix}")
        },
    )
}

fn fmt_opt(v: Option<f64>, prec: usize, suffix: &str) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.prec$}{suffix}"))
}

/// One timed workload: `run` does one call worth `flops`; `best` is its fastest call so far.
/// `run` is `None` for a kernel that panicked on its probe call (not implemented yet).
struct Job {
    row: Row,
    flops: f64,
    /// Which measured peak the figure is compared with.
    peak: PeakRef,
    /// Calls per round: more for short or headline figures.
    per_round: usize,
    run: Option<Box<dyn FnMut()>>,
    best: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum PeakRef {
    One,
    All,
}

// ---------------------------------------------------------------------------------------------
// Section 2: every kernel through the `Backend` trait

/// One kernel call on one device, worth `work` flops (GFLOP/s rows) or bytes (GB/s rows).
struct BJob {
    kernel: String,
    shape: String,
    unit: &'static str,
    work: f64,
    run: Box<dyn FnMut() -> distill::Result<()>>,
}

/// The problem sizes of one device.
struct Sizes {
    gemm: Vec<usize>,
    batch: usize,
    softmax: Vec<(usize, usize)>,
    elems: usize,
    /// Columns of the `column_sums` matrix (rows = elems / cols).
    colsum_cols: usize,
    params: usize,
}

impl Sizes {
    fn cpu() -> Sizes {
        Sizes {
            gemm: vec![256, 512, 1024, 2048],
            batch: 128,
            softmax: vec![(128, 10), (65536, 10), (4096, 1000)],
            elems: 1 << 24,
            colsum_cols: 1024,
            params: 6_400_000,
        }
    }
    fn hardware_gpu() -> Sizes {
        Sizes {
            gemm: vec![256, 512, 1024, 2048, 4096, 8192],
            ..Sizes::cpu()
        }
    }
    /// lavapipe & co.: tiny shapes (the 256 matmul and 128×10 rows still meet the CPU's).
    fn software_gpu() -> Sizes {
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

/// The four conv layers: (name, shape).
fn conv_layers(batch: usize) -> [(&'static str, Conv2dShape); 4] {
    [
        ("teacher conv1", conv_shape(batch, 1, 64, 28)),
        ("teacher conv2", conv_shape(batch, 64, 128, 14)),
        ("student conv1", conv_shape(batch, 1, 32, 28)),
        ("student conv2", conv_shape(batch, 32, 64, 14)),
    ]
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
fn backend_jobs(dev: &Device, sz: &Sizes) -> distill::Result<Vec<BJob>> {
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

/// Calls queued on a GPU between flushes (submits without waiting, as training does).
const FLUSH_EVERY: usize = 64;

/// Warms `run` up, then times batches of back-to-back calls closed by `sync`; the batch size
/// grows until a batch takes `budget / 10`. Returns (best seconds per call, calls in that batch).
fn time_job(
    dev: &Device,
    run: &mut dyn FnMut() -> distill::Result<()>,
    sync: &dyn Fn() -> distill::Result<()>,
    budget: f64,
    max_calls: usize,
) -> distill::Result<(f64, usize)> {
    run()?;
    sync()?;
    let min_batch = budget / 10.0;
    let start = Instant::now();
    let (mut n, mut best, mut best_n) = (1usize, f64::INFINITY, 0usize);
    loop {
        let t = Instant::now();
        for i in 0..n {
            run()?;
            if (i + 1) % FLUSH_EVERY == 0 {
                dev.0.flush()?;
            }
        }
        sync()?;
        let el = t.elapsed().as_secs_f64();
        if el >= min_batch || n >= max_calls {
            if el / n as f64 <= best {
                (best, best_n) = (el / n as f64, n);
            }
            if start.elapsed().as_secs_f64() >= budget {
                return Ok((best, best_n));
            }
        } else {
            let grow = (1.2 * min_batch / el.max(1e-7)).clamp(2.0, 1000.0);
            n = ((n as f64 * grow) as usize).min(max_calls);
        }
    }
}

/// Sum of the GPU milliseconds `profile_report` has recorded so far.
fn profiled_ms(g: &GpuBackend) -> distill::Result<f64> {
    Ok(g.profile_report()?.iter().map(|(_, _, ms)| ms).sum())
}

/// Runs every kernel of the section on one device and returns its rows.
fn bench_device(
    label: &str,
    dev: &Device,
    gpu: Option<&GpuBackend>,
    sz: &Sizes,
    budget: f64,
    max_calls: usize,
) -> Vec<Row> {
    let name = dev.name();
    let t0 = Instant::now();
    let mut jobs = match backend_jobs(dev, sz) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{label} {name}: could not set up the kernels: {e}");
            return Vec::new();
        }
    };
    let sync_buf = match dev.0.zeros(1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{label} {name}: {e}");
            return Vec::new();
        }
    };
    let sync = || dev.0.download_f32(&sync_buf).map(|_| ());
    let threads = (dev.kind() == DeviceKind::Cpu).then(rayon::current_num_threads);
    let mut rows = Vec::new();
    for job in jobs.iter_mut() {
        let mut r = Row::new(&job.kernel, label, job.shape.clone(), threads);
        r.device_name = name.clone();
        r.unit = job.unit;
        match catch_unwind(AssertUnwindSafe(|| {
            time_job(dev, &mut job.run, &sync, budget, max_calls)
        })) {
            Ok(Ok((secs, calls))) => {
                r.value = Some(job.work / secs / 1e9);
                r.calls = Some(calls);
            }
            Ok(Err(e)) => r.note = format!("error: {e}"),
            Err(_) => r.note = "panicked".into(),
        }
        rows.push(r);
    }
    // GPU timestamps: profiling slows every submit down, so it is a second pass.
    if let Some(g) = gpu.filter(|g| g.can_profile()) {
        match g.enable_profiling() {
            Ok(true) => {
                for (job, r) in jobs.iter_mut().zip(rows.iter_mut()) {
                    let Some(calls) = r.calls else { continue };
                    let k = calls.clamp(1, 20);
                    let res = (|| -> distill::Result<f64> {
                        let before = profiled_ms(g)?;
                        for _ in 0..k {
                            (job.run)()?;
                        }
                        sync()?;
                        Ok((profiled_ms(g)? - before) / k as f64)
                    })();
                    match res {
                        Ok(ms) if ms > 0.0 => r.value_timestamp = Some(job.work / ms / 1e6),
                        Ok(_) => {}
                        Err(e) => r.note = format!("timestamps: {e}"),
                    }
                }
            }
            Ok(false) => {}
            Err(e) => eprintln!("{label}: profiling failed: {e}"),
        }
    }
    eprintln!(
        "{label} {name}: {} kernels in {:.1} s",
        rows.len(),
        t0.elapsed().as_secs_f64()
    );
    rows
}

/// FP32 (non-tensor) peak of a GPU: `DISTILL_GPU_PEAK_GFLOPS`, else a table keyed by name.
fn gpu_peak(name: &str) -> Option<(f64, String)> {
    if let Some(v) = std::env::var("DISTILL_GPU_PEAK_GFLOPS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
    {
        return Some((v, "DISTILL_GPU_PEAK_GFLOPS".into()));
    }
    // Vendor FP32 figures (boost clock, no tensor cores). First match wins: specific first.
    const TABLE: [(&str, f64); 7] = [
        ("H200", 66_900.0),
        ("H100 PCIe", 51_200.0),
        ("H100", 66_900.0),
        ("A100", 19_500.0),
        ("L40S", 91_600.0),
        ("RTX 4090", 82_600.0),
        ("RTX 3090", 35_600.0),
    ];
    TABLE
        .iter()
        .find(|(key, _)| name.contains(key))
        .map(|&(key, v)| (v, format!("table: {key}")))
}

fn main() {
    let started = Instant::now();
    let budget = bench_secs();
    let software = std::env::var("DISTILL_BENCH_SOFTWARE").is_ok_and(|v| v == "1");
    let threads = rayon::current_num_threads();
    let level = simd::level();
    let cpu = format!("cpu ({})", level.name());
    println!(
        "distill kernel bench: {threads} rayon threads, SIMD level {}",
        level.name()
    );
    let pool1 = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("one-thread pool"),
    );
    let row = |kernel: &str, shape: String, t: usize| Row::new(kernel, &cpu, shape, Some(t));
    let mut jobs: Vec<Job> = Vec::new();

    // Peak: the FMA loop, in ~1.5 ms bursts — short enough that the best of many is an
    // undisturbed one. On all threads the bursts run at once (rayon::broadcast).
    #[cfg(target_arch = "x86_64")]
    if simd::detect() == simd::SimdLevel::Avx2Fma {
        let iters: u64 = 1_000_000;
        let flops = iters as f64 * (PEAK_CHAINS * 8 * 2) as f64;
        // SAFETY (both closures): AVX2 and FMA were detected above.
        jobs.push(Job {
            row: row("fma-peak", "avx2 fma loop".into(), 1),
            flops,
            peak: PeakRef::One,
            per_round: 20,
            run: Some(Box::new(move || {
                black_box(unsafe { fma_loop(black_box(iters)) });
            })),
            best: f64::INFINITY,
        });
        jobs.push(Job {
            row: row("fma-peak", "avx2 fma loop".into(), threads),
            flops: flops * threads as f64,
            peak: PeakRef::All,
            per_round: 20,
            run: Some(Box::new(move || {
                rayon::broadcast(|_| black_box(unsafe { fma_loop(black_box(iters)) }));
            })),
            best: f64::INFINITY,
        });
        if is_x86_feature_detected!("avx512f") {
            // Shown against the AVX2 peak (so ~200 % where zmm FMAs run at full width).
            jobs.push(Job {
                row: row(
                    "fma-peak-avx512",
                    "avx512 fma loop (unused)".into(),
                    threads,
                ),
                flops: 2.0 * flops * threads as f64,
                peak: PeakRef::All,
                per_round: 10,
                // SAFETY: AVX-512F was detected just above.
                run: Some(Box::new(move || {
                    rayon::broadcast(|_| unsafe { fma_loop_avx512(black_box(iters)) });
                })),
                best: f64::INFINITY,
            });
        }
    }
    let have_peak = !jobs.is_empty();

    // GEMM: square sizes, the three transpose variants the engine uses, all threads; plus
    // 1024³ NN on one thread against the one-thread peak. A and B are shared per size.
    for size in [256, 512, 1024, 2048] {
        let a = Arc::new(fill(size * size, 1));
        let b = Arc::new(fill(size * size, 2));
        let variants = [
            ("gemm NN", Trans::N, Trans::N, threads),
            ("gemm NT", Trans::N, Trans::T, threads),
            ("gemm TN", Trans::T, Trans::N, threads),
            ("gemm NN", Trans::N, Trans::N, 1),
        ];
        for (name, ta, tb, t) in variants {
            if t == 1 && (size != 1024 || threads == 1) {
                continue;
            }
            let (a, b, pool1) = (a.clone(), b.clone(), pool1.clone());
            let mut c = vec![0.0f32; size * size];
            let mut call = move || {
                gemm(
                    GemmShape {
                        ta,
                        tb,
                        m: size,
                        n: size,
                        k: size,
                    },
                    &a,
                    &b,
                    &mut c,
                    Epilogue::default(),
                );
            };
            let run: Box<dyn FnMut()> = if t == 1 {
                Box::new(move || pool1.install(&mut call))
            } else {
                Box::new(call)
            };
            let headline = size == 1024 && name == "gemm NN";
            jobs.push(Job {
                row: row(name, format!("{size}x{size}x{size}"), t),
                flops: 2.0 * (size * size * size) as f64,
                peak: if t == 1 { PeakRef::One } else { PeakRef::All },
                // Small sizes and the headline figure get more calls per round.
                per_round: if size <= 512 || headline { 4 } else { 1 },
                run: Some(run),
                best: f64::INFINITY,
            });
        }
    }

    // conv2d: the teacher's and the student's conv layers at batch 128 on 28×28×1 input.
    let layers = conv_layers(128);
    // Silence the panic messages of not-yet-implemented kernels; they show as "n/a".
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for (layer, s) in layers {
        let x = Arc::new(fill(s.input_len(), 3));
        let w = Arc::new(fill(s.weight_len(), 4));
        let dy = Arc::new(fill(s.output_len(), 6));
        for (which, kname) in ["conv fwd", "conv bwd-input", "conv bwd-weight"]
            .into_iter()
            .enumerate()
        {
            let (x, w, dy) = (x.clone(), w.clone(), dy.clone());
            let bias = fill(s.out_channels, 5);
            let mut out = vec![0.0f32; [s.output_len(), s.input_len(), s.weight_len()][which]];
            let mut run: Box<dyn FnMut()> = Box::new(move || match which {
                0 => conv::conv2d_forward(&s, &x, &w, Some(&bias), &mut out),
                1 => conv::conv2d_backward_input(&s, &w, &dy, &mut out),
                _ => conv::conv2d_backward_weight(&s, &x, &dy, &mut out),
            });
            // The probe call doubles as the warm-up.
            let ok = catch_unwind(AssertUnwindSafe(&mut run)).is_ok();
            let mut r = row(
                kname,
                format!(
                    "{layer}: b{} {}->{} {}x{} k3 p1",
                    s.batch, s.in_channels, s.out_channels, s.in_h, s.in_w
                ),
                threads,
            );
            if !ok {
                r.note = "unimplemented (panicked)".into();
            }
            jobs.push(Job {
                row: r,
                flops: s.flops(),
                peak: PeakRef::All,
                per_round: 1,
                run: ok.then_some(run),
                best: f64::INFINITY,
            });
        }
    }

    // Round-robin over every job until the budget is spent: a quiet spell on a shared machine
    // then benefits every figure, the peaks included, instead of whichever ran at the time.
    let rr_budget = Duration::from_secs_f64(100.0 * budget);
    let bench_start = Instant::now();
    let mut rounds = 0;
    while rounds < 3 || bench_start.elapsed() < rr_budget {
        for job in jobs.iter_mut() {
            if let Some(run) = job.run.as_mut() {
                for _ in 0..job.per_round {
                    let t = Instant::now();
                    run();
                    job.best = job.best.min(t.elapsed().as_secs_f64());
                }
            }
        }
        rounds += 1;
    }
    let rr_secs = bench_start.elapsed().as_secs_f64();

    for job in jobs.iter_mut() {
        if job.run.is_some() {
            job.row.value = Some(job.flops / job.best / 1e9);
        }
    }
    let peak_of = |which: PeakRef| {
        jobs.iter()
            .find(|j| j.row.kernel == "fma-peak" && j.peak == which)
            .and_then(|j| j.row.value)
    };
    let (peak1, peak_all) = (peak_of(PeakRef::One), peak_of(PeakRef::All));
    for job in jobs.iter_mut() {
        let peak = match job.peak {
            PeakRef::One => peak1,
            PeakRef::All => peak_all,
        };
        job.row.pct_of_peak = pct(job.row.value, peak);
    }
    let mut rows: Vec<Row> = jobs.into_iter().map(|j| j.row).collect();

    // Section 2: the `Backend` trait on the CPU backend and on every adapter.
    let cpu_dev = Device::cpu();
    let mut cpu_rows = bench_device("cpu", &cpu_dev, None, &Sizes::cpu(), budget, 1_000_000);
    for r in cpu_rows.iter_mut().filter(|r| r.unit == GFLOPS) {
        r.pct_of_peak = pct(r.value, peak_all);
    }
    let mut gpu_rows = Vec::new();
    let mut adapters = Vec::new();
    let mut skipped = Vec::new();
    for a in gpu::list_adapters() {
        let label = format!("gpu:{}", a.index);
        let is_software = a.device_type == "software";
        if is_software && !software {
            eprintln!(
                "{label} {} ({}): software adapter skipped (DISTILL_BENCH_SOFTWARE=1 to include)",
                a.name, a.backend
            );
            skipped.push(
                serde_json::json!({"index": a.index, "name": a.name, "reason": "software adapter"}),
            );
            continue;
        }
        let g = match GpuBackend::open_index(a.index) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("{label} {}: could not open: {e}", a.name);
                skipped.push(
                    serde_json::json!({"index": a.index, "name": a.name, "reason": e.to_string()}),
                );
                continue;
            }
        };
        let dev = g.device();
        let peak = gpu_peak(&a.name).or_else(|| gpu_peak(&dev.name()));
        let (sizes, b, max_calls) = if is_software {
            (Sizes::software_gpu(), budget.min(0.05), 20)
        } else {
            (Sizes::hardware_gpu(), budget, 20_000)
        };
        let mut rs = bench_device(&label, &dev, Some(&g), &sizes, b, max_calls);
        for r in rs.iter_mut().filter(|r| r.unit == GFLOPS) {
            r.pct_of_peak = pct(r.value, peak.as_ref().map(|p| p.0));
        }
        for r in rs.iter_mut() {
            r.ratio_vs_cpu = cpu_rows
                .iter()
                .find(|c| c.kernel == r.kernel && c.shape == r.shape)
                .and_then(|c| Some(r.value? / c.value?));
        }
        adapters.push(serde_json::json!({
            "label": label,
            "name": dev.name(),
            "adapter": a.name,
            "device_type": a.device_type,
            "backend": a.backend,
            "timestamp_query": a.timestamp_query,
            "fp32_peak_gflops": peak.as_ref().map(|p| p.0),
            "fp32_peak_source": peak.as_ref().map(|p| p.1.clone()),
        }));
        gpu_rows.push((label, dev.name(), peak, rs));
    }
    std::panic::set_hook(hook);

    if have_peak {
        println!(
            "\nf32 peak, AVX2+FMA loop ({PEAK_CHAINS} ymm chains; 2 flop/lane/FMA; the kernels' \
             SIMD level, not AVX-512): 1 thread {} GFLOP/s, {threads} threads {} GFLOP/s",
            fmt_opt(peak1, 1, ""),
            fmt_opt(peak_all, 1, ""),
        );
        if let Some(v) = rows
            .iter()
            .find(|r| r.kernel == "fma-peak-avx512")
            .and_then(|r| r.value)
        {
            println!(
                "  (this CPU also has AVX-512, which the kernels do not use: {} GFLOP/s on \
                 {threads} threads with zmm FMAs)",
                fmt_opt(Some(v), 1, "")
            );
        }
    } else {
        println!("\nf32 peak: n/a (no AVX2+FMA on this CPU); % of peak not reported");
    }
    println!(
        "section 1 (distill-kernels direct): best of {rounds} rounds over {rr_secs:.1} s; \
         % peak is against the peak at the same thread count"
    );
    println!(
        "section 2 (Backend trait): {budget} s per kernel per device (DISTILL_BENCH_SECS); \
         best batch of N calls + one read-back; cpu % peak vs the {threads}-thread FMA peak"
    );
    println!("  cpu   = {}", cpu_dev.name());
    for (label, name, peak, _) in &gpu_rows {
        let p = match peak {
            Some((v, src)) => format!("FP32 peak {v:.0} GFLOP/s ({src})"),
            None => "FP32 peak unknown (set DISTILL_GPU_PEAK_GFLOPS)".into(),
        };
        println!(
            "  {label:<5} = {name}; {p}; x cpu = GPU value / cpu value, same kernel and shape"
        );
    }
    rows.extend(cpu_rows);
    rows.extend(gpu_rows.into_iter().flat_map(|(_, _, _, rs)| rs));

    println!();
    println!(
        "{:<19} {:<14} {:<38} {:>4} {:>10} {:<7} {:>7} {:>8} {:>10}  note",
        "kernel", "device", "shape", "thr", "value", "unit", "% peak", "x cpu", "ts value"
    );
    for r in &rows {
        println!(
            "{:<19} {:<14} {:<38} {:>4} {:>10} {:<7} {:>7} {:>8} {:>10}  {}",
            r.kernel,
            r.device,
            r.shape,
            r.threads.map_or_else(|| "-".into(), |t| t.to_string()),
            fmt_sig(r.value, ""),
            r.unit,
            fmt_opt(r.pct_of_peak, 1, "%"),
            fmt_sig(r.ratio_vs_cpu, "x"),
            fmt_sig(r.value_timestamp, ""),
            r.note,
        );
    }

    let dir = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = std::path::Path::new(&dir).join("bench-kernels.json");
    let json = serde_json::json!({
        "bench": "kernels",
        "threads": threads,
        "simd_level": level.name(),
        "peak_note": "f32 peak measured in-process with an AVX2+FMA loop (2 flop/lane/FMA); \
                      pct_of_peak is against the peak at the same thread count (cpu rows) or \
                      the adapter's FP32 non-tensor peak (gpu rows)",
        "peak_gflops_1t": peak1,
        "peak_gflops_all": peak_all,
        "rounds": rounds,
        "backend_secs_per_kernel": budget,
        "units": "value in GFLOP/s (matmul, conv) or GB/s of bytes read + written by the \
                  kernel's contract; value_timestamp is the same from GPU timestamps; \
                  ratio_vs_cpu = gpu value / cpu-backend value for the same kernel and shape",
        "adapters": adapters,
        "skipped_adapters": skipped,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&json).expect("serialise bench rows");
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("\ncould not write {}: {e}", path.display()),
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

/// `DISTILL_BENCH_SECS`: seconds per kernel per device in section 2 (default 0.25).
fn bench_secs() -> f64 {
    std::env::var("DISTILL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(0.25)
}
