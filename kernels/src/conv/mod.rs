//! conv2d over NCHW (weights `[out, in, kh, kw]`): forward, input gradient, weight gradient,
//! bias gradient. Any kernel size, stride and zero padding.
//!
//! Two implementations, picked from the shape and the SIMD level only (never the thread
//! count), so every kernel is bit-for-bit deterministic on any number of threads:
//!
//! - **im2col + GEMM** (`im2col_gemm.rs`), the general path: each image (or chunk of images)
//!   is unfolded into a column matrix `col[K×P]` (`K = in·kh·kw`, `P = out_h·out_w`) and the
//!   convolution becomes one GEMM with the weights read as `W[co×K]`. Compute bound for the
//!   wide layers (conv2: K = 288–576), where its speed is the GEMM's.
//! - **Thin direct kernels** (`thin/`), for `K ≤` [`THIN_MAX_K`] at the AVX2+FMA, AVX-512 and
//!   NEON levels (conv1: one input channel, K = 9): direct loops over a per-image unfold kept in L1, with no GEMM. A 6×16
//!   GEMM tile would run part-empty at K = 9 and pack and re-read C for 9 flops per element;
//!   these kernels are bound by streaming y or dY through memory instead.
//!
//! The unfold and fold of one plane (`unfold.rs`) serve both. The bias gradient is a plain
//! per-channel sum (below).
//!
//! Reductions over the batch (weight and bias gradients) combine fixed chunks of images in a
//! fixed order; the weight gradient's partition (`BatchChunks`) depends on the batch size
//! only, so every output element sees the same sequence of float operations on every run.
//!
//! Scratch buffers are thread-local vectors, taken out while in use (a nested rayon task
//! landing on the same thread allocates its own instead of aliasing), so steady-state calls
//! allocate nothing.

mod im2col_gemm;
mod pooled;

pub use pooled::{
    conv2d_pool_backward_params_at, conv2d_pool_forward_at, conv2d_pool_fuses, pool_after,
};
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
mod thin;
mod unfold;

use std::cell::Cell;
use std::ops::Range;

use rayon::prelude::*;

use crate::simd::{self, SimdLevel};
use crate::Conv2dShape;

/// Upper bound on the number of weight-gradient partials (and so on the batch parallelism of
/// [`conv2d_backward_weight`]). Depends on nothing but this constant and the batch size.
pub const MAX_PARTIALS: usize = 16;

/// Largest reduction length `K = in·kh·kw` served by the direct thin-K kernels (at the
/// AVX2+FMA, AVX-512 and NEON levels; the scalar and SIMD128 levels, and larger K, take
/// im2col + GEMM).
pub const THIN_MAX_K: usize = 12;

/// Whether `level` runs the direct thin-K kernels for this shape (the choice depends on the
/// shape and the SIMD level only, never on the thread count).
pub fn uses_thin_kernels(level: SimdLevel, s: &Conv2dShape) -> bool {
    let k = s.in_channels * s.kernel_h * s.kernel_w;
    let has_path = match level {
        SimdLevel::Avx2Fma | SimdLevel::Avx512 => cfg!(target_arch = "x86_64"),
        SimdLevel::Neon => cfg!(target_arch = "aarch64"),
        SimdLevel::Scalar | SimdLevel::Simd128 => false,
    };
    has_path && level.is_supported() && (1..=THIN_MAX_K).contains(&k)
}

thread_local! {
    /// Per-image scratch (the column matrix of one image; for the fused conv + pool also its
    /// full-size output or gradient planes, 200 KB for the teacher's conv1).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The weight gradient's per-chunk partials, held by the calling thread while its rayon
    /// tasks (this thread among them) use [`SCRATCH`].
    static PARTIALS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The large-GEMM path's chunk buffers (megabytes), kept apart from [`SCRATCH`] so the
    /// thin kernels' per-image scratch stays a small heap block on every thread.
    static CHUNK: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a thread-local scratch slice of `len` floats (contents unspecified).
/// The vector is taken out of the thread-local while `f` runs, so a nested rayon task that
/// lands on this thread gets a fresh vector instead of aliasing this one.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_scratch_in(&SCRATCH, len, f)
}

/// [`with_scratch`] on the thread-local `key`.
fn with_scratch_in<R>(
    key: &'static std::thread::LocalKey<Cell<Vec<f32>>>,
    len: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut buf = key.with(|c| c.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    key.with(|c| {
        let other = c.take();
        c.set(if other.len() > buf.len() { other } else { buf });
    });
    r
}

/// The index arithmetic of one convolution, derived once from the shape.
#[derive(Clone, Copy)]
struct Geo {
    ci: usize,
    h: usize,
    w: usize,
    co: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    oh: usize,
    ow: usize,
}

impl Geo {
    fn new(s: &Conv2dShape) -> Self {
        Geo {
            ci: s.in_channels,
            h: s.in_h,
            w: s.in_w,
            co: s.out_channels,
            kh: s.kernel_h,
            kw: s.kernel_w,
            sh: s.stride_h,
            sw: s.stride_w,
            ph: s.pad_h,
            pw: s.pad_w,
            oh: s.out_h(),
            ow: s.out_w(),
        }
    }
    /// Output positions per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of the column matrix (reduction length of the forward GEMM).
    fn k(&self) -> usize {
        self.ci * self.kh * self.kw
    }
    fn in_image(&self) -> usize {
        self.ci * self.h * self.w
    }
    fn out_image(&self) -> usize {
        self.co * self.p()
    }
    /// A 1×1, stride-1, unpadded kernel: the column matrix is the image itself.
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

/// The fixed partition of a batch for the weight gradient: at most [`MAX_PARTIALS`] chunks of
/// consecutive images, each summed into its own partial, the partials then added in chunk
/// order. It depends on the batch size only.
#[derive(Clone, Copy)]
struct BatchChunks {
    batch: usize,
    per_chunk: usize,
    /// Number of chunks.
    count: usize,
}

impl BatchChunks {
    fn new(batch: usize) -> Self {
        let per_chunk = batch.div_ceil(batch.min(MAX_PARTIALS));
        BatchChunks {
            batch,
            per_chunk,
            count: batch.div_ceil(per_chunk),
        }
    }
    /// The images of chunk `c`.
    fn images(&self, c: usize) -> Range<usize> {
        c * self.per_chunk..((c + 1) * self.per_chunk).min(self.batch)
    }
}

/// `y[n, co, oh, ow] = bias[co] + Σ_{ci,kh,kw} w[co, ci, kh, kw] · x[n, ci, oh·s−p+kh, ow·s−p+kw]`.
pub fn conv2d_forward(s: &Conv2dShape, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    conv2d_forward_at(simd::level(), s, x, w, bias, y)
}

/// [`conv2d_forward`] with its GEMMs on an explicit SIMD path.
pub fn conv2d_forward_at(
    level: SimdLevel,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let g = Geo::new(s);
    assert!(x.len() >= s.input_len(), "conv2d_forward: x too short");
    assert!(w.len() >= s.weight_len(), "conv2d_forward: w too short");
    assert!(y.len() >= s.output_len(), "conv2d_forward: y too short");
    if let Some(b) = bias {
        assert!(b.len() >= g.co, "conv2d_forward: bias too short");
    }
    let w = &w[..g.co * g.k()];
    let bias = bias.map(|b| &b[..g.co]);
    let x = &x[..s.input_len()];
    let y = &mut y[..s.output_len()];
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if uses_thin_kernels(level, s) {
        thin::forward(level, &g, x, w, bias, y);
        return;
    }
    im2col_gemm::forward(level, &g, x, w, bias, y);
}

/// `dx = ∂L/∂x` given `dy = ∂L/∂y` (overwrites dx).
pub fn conv2d_backward_input(s: &Conv2dShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    conv2d_backward_input_at(simd::level(), s, w, dy, dx)
}

/// [`conv2d_backward_input`] with its GEMMs on an explicit SIMD path.
pub fn conv2d_backward_input_at(
    level: SimdLevel,
    s: &Conv2dShape,
    w: &[f32],
    dy: &[f32],
    dx: &mut [f32],
) {
    let g = Geo::new(s);
    assert!(
        w.len() >= s.weight_len(),
        "conv2d_backward_input: w too short"
    );
    assert!(
        dy.len() >= s.output_len(),
        "conv2d_backward_input: dy too short"
    );
    assert!(
        dx.len() >= s.input_len(),
        "conv2d_backward_input: dx too short"
    );
    let w = &w[..g.co * g.k()];
    let dy = &dy[..s.output_len()];
    let dx = &mut dx[..s.input_len()];
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if uses_thin_kernels(level, s) {
        thin::backward_input(level, &g, w, dy, dx);
        return;
    }
    im2col_gemm::backward_input(level, &g, w, dy, dx);
}

/// `dw = ∂L/∂w` summed over the batch (overwrites dw).
pub fn conv2d_backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    conv2d_backward_weight_at(simd::level(), s, x, dy, dw)
}

/// [`conv2d_backward_weight`] with its GEMMs on an explicit SIMD path.
pub fn conv2d_backward_weight_at(
    level: SimdLevel,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
) {
    let g = Geo::new(s);
    assert!(
        x.len() >= s.input_len(),
        "conv2d_backward_weight: x too short"
    );
    assert!(
        dy.len() >= s.output_len(),
        "conv2d_backward_weight: dy too short"
    );
    assert!(
        dw.len() >= s.weight_len(),
        "conv2d_backward_weight: dw too short"
    );
    let dw = &mut dw[..g.co * g.k()];
    let (x, dy) = (&x[..s.input_len()], &dy[..s.output_len()]);
    let parts = BatchChunks::new(s.batch);
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if uses_thin_kernels(level, s) {
        thin::backward_weight(level, &g, x, dy, dw, parts);
        return;
    }
    im2col_gemm::backward_weight(level, &g, x, dy, dw, parts);
}

/// `db[co] = Σ_{n,oh,ow} dy[n, co, oh, ow]` (overwrites db).
pub fn conv2d_backward_bias(s: &Conv2dShape, dy: &[f32], db: &mut [f32]) {
    let co = s.out_channels;
    let p = s.out_h() * s.out_w();
    assert!(
        dy.len() >= s.output_len(),
        "conv2d_backward_bias: dy too short"
    );
    assert!(db.len() >= co, "conv2d_backward_bias: db too short");
    db[..co].par_iter_mut().enumerate().for_each(|(c, out)| {
        // Per image a plane sum, images summed in f64, in batch order.
        let mut total = 0.0f64;
        for n in 0..s.batch {
            total += plane_sum(&dy[(n * co + c) * p..(n * co + c + 1) * p]) as f64;
        }
        *out = total as f32;
    });
}

/// One plane's sum for the bias gradient: an 8-lane f32 sum (it vectorises), then the lanes.
fn plane_sum(plane: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut it = plane.chunks_exact(8);
    for ch in &mut it {
        for (l, v) in lanes.iter_mut().zip(ch) {
            *l += *v;
        }
    }
    let mut sum = it.remainder().iter().sum::<f32>();
    sum += lanes.iter().sum::<f32>();
    sum
}
