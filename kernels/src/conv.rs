//! conv2d over NCHW (weights `[out, in, kh, kw]`): forward, input gradient, weight gradient,
//! bias gradient. Any kernel size, stride and zero padding.
//!
//! # Algorithm: im2col + GEMM, one image per GEMM
//!
//! With `K = in·kh·kw` and `P = out_h·out_w`, image n is unfolded into the column matrix
//! `col_n[K×P]` (row `(ci, i, j)` holds the input pixel each output position sees through tap
//! `(i, j)` of channel ci, zero where the tap falls in the padding). Then, with the weights
//! read as `W[co×K]` exactly as stored:
//!
//! - forward:       `Y_n[co×P] = W·col_n (+ bias per row)` — `gemm(N, N)`, bias fused as
//!   `Bias::PerRow`, written straight into y (Y_n *is* image n of the NCHW output);
//! - input grad:    `dcol_n[K×P] = Wᵀ·dY_n` — `gemm(T, N)` reads W transposed in place — then
//!   col2im scatter-adds dcol_n back into the zeroed dx_n in a fixed order;
//! - weight grad:   `dW[co×K] = Σ_n dY_n·col_nᵀ` — `gemm(N, T)` reads col_n transposed in
//!   place, accumulating (`Epilogue::accumulate`) over the images of a chunk;
//! - bias grad:     `db[co] = Σ_n Σ_p dY_n[co, p]`, one task per channel.
//!
//! No transposed copies are ever made. A 1×1 kernel with stride 1 and no padding skips the
//! unfold (`col_n` is x_n itself, and dcol_n is written straight into dx_n).
//!
//! # Parallelism and buffers
//!
//! Two strategies, picked from the shape alone (so results never depend on the thread count):
//!
//! - **Small per-image GEMMs (< 1 MFLOP, e.g. conv1: 64×784×9):** images in parallel, one
//!   image per rayon task; the GEMM is below its own parallel threshold and runs on the
//!   task's thread, so there is no nesting and no fork/join per image.
//! - **Large per-image GEMMs (≥ 1 MFLOP, e.g. teacher conv2: 128×196×576 forward, 576×196×128
//!   input grad, 128×576×196 weight grad):** images one after another, each GEMM spread over
//!   the pool by the GEMM itself, and the unfold/fold split over input channels. Running these
//!   GEMMs inside a parallel image loop measured ~2× slower on teacher conv2 (a worker waiting
//!   in the GEMM's join steals another image, so pack buffers are re-allocated and one L2
//!   holds several images' operands).
//!
//! Per image the working set is small — col_n is `K·P·4` bytes, 451 KB for teacher conv2 —
//! so the unfold, the GEMM and the fold of one image run out of L2. col_n / dcol_n live in a
//! thread-local scratch vector taken out while in use (a nested rayon task landing on the
//! same thread allocates its own instead of aliasing), so steady-state calls allocate nothing
//! per image.
//!
//! Weight grad: with large GEMMs each image accumulates (`Epilogue::accumulate`) straight into
//! dw, in batch order. With small GEMMs the batch is cut into at most [`MAX_PARTIALS`] chunks
//! of consecutive images (a count that depends on the batch size only); each chunk
//! accumulates into its own partial (chunk 0 into dw itself), then the partials are added
//! into dw in chunk order. Every output element thus sees the same sequence of float
//! operations on every run and thread count: all four kernels are bit-for-bit deterministic,
//! given a deterministic GEMM (the tests check 1, 2, 3 and 5 threads).
//!
//! Measured (one core, Zen-class AVX2 at ~133 Gflop/s FMA peak, per image, min of 200): the
//! conv2 kernels run at ~88–90 % of the bare per-image GEMM, i.e. 74–75 % of peak for
//! teacher conv2 and 60–65 % for student conv2; the unfold/fold is the rest.
//!
//! # What bounds it
//!
//! conv2 (teacher 64→128 and student 32→64, 3×3 on 14×14) has K = 576 / 288 and is compute
//! bound: 2·K = 1152 / 576 flops per output element written, so its speed is the GEMM's.
//! conv1 (one input channel) has K = 9: each output element costs 18 flops and one 4-byte
//! store, 4.5 flop/byte. Teacher conv1 on a batch of 128 is 116 Mflop against 25.7 MB of
//! output (128·64·784·4 B); at 75 % of a 2-core AVX2 peak (~265 Gflop/s) the flops would
//! take ~0.6 ms, but writing 25.7 MB (it does not stay in a 32 MB L3 next to everything else
//! of a training step) needs ~2 ms at an assumed ~13 GB/s. So conv1 is memory bound in all three
//! kernels (forward writes y, input grad and weight grad both stream all of dy), and its
//! flop rate is capped by bandwidth, not by the GEMM. The unfold costs 9 floats per input
//! pixel and is negligible there; for conv2 it is `K·P` floats per image, ~1/(2·co) of the
//! GEMM's flops. conv1's GEMMs are also thin: the input grad has m = K = 9 rows (the 6-row
//! register tile runs 75 % full) and the weight grad n = K = 9 columns (the 16-wide tile runs
//! 56 % full), which caps them at ~40 % / ~30 % of one core's peak even in cache (forward:
//! ~57 %); a dWᵀ = col·dYᵀ formulation (K on the 6-row side) was tried and was no faster.

use rayon::prelude::*;
use std::cell::Cell;

use crate::gemm::gemm_at;
use crate::simd::{self, SimdLevel};
use crate::{Bias, Conv2dShape, Epilogue, Trans};

/// Upper bound on the number of weight-gradient partials (and so on the batch parallelism of
/// [`conv2d_backward_weight`]). Depends on nothing but this constant and the batch size.
pub const MAX_PARTIALS: usize = 16;

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on a thread-local scratch slice of `len` floats (contents unspecified).
/// The vector is taken out of the thread-local while `f` runs, so a nested rayon task that
/// lands on this thread gets a fresh vector instead of aliasing this one.
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = SCRATCH.with(|c| c.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let r = f(&mut buf[..len]);
    SCRATCH.with(|c| {
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

/// The output positions `o` in `0..out` whose tap `o·stride + off − pad` lands inside
/// `0..len`, as a half-open range `lo..hi` (empty ranges come back as `lo == hi`).
fn valid_range(off: usize, pad: usize, stride: usize, len: usize, out: usize) -> (usize, usize) {
    let lo = if pad > off {
        (pad - off).div_ceil(stride)
    } else {
        0
    };
    let hi = if len + pad > off {
        (len + pad - off).div_ceil(stride)
    } else {
        0
    };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}

/// Unfolds one input plane into its `kh·kw` rows of the column matrix (`rows[kh·kw×P]`).
fn im2col_channel(g: &Geo, plane: &[f32], rows: &mut [f32]) {
    let mut rows = rows.chunks_exact_mut(g.p());
    for i in 0..g.kh {
        let (oh_lo, oh_hi) = valid_range(i, g.ph, g.sh, g.h, g.oh);
        for j in 0..g.kw {
            let row = rows.next().expect("im2col: col too short");
            let (ow_lo, ow_hi) = valid_range(j, g.pw, g.sw, g.w, g.ow);
            row[..oh_lo * g.ow].fill(0.0);
            row[oh_hi * g.ow..].fill(0.0);
            for oy in oh_lo..oh_hi {
                let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                let src = &plane[(oy * g.sh + i - g.ph) * g.w..][..g.w];
                dst[..ow_lo].fill(0.0);
                dst[ow_hi..].fill(0.0);
                if ow_lo == ow_hi {
                    continue;
                }
                let first = ow_lo * g.sw + j - g.pw;
                if g.sw == 1 {
                    dst[ow_lo..ow_hi].copy_from_slice(&src[first..first + (ow_hi - ow_lo)]);
                } else {
                    for (d, s) in dst[ow_lo..ow_hi]
                        .iter_mut()
                        .zip(src[first..].iter().step_by(g.sw))
                    {
                        *d = *s;
                    }
                }
            }
        }
    }
}

/// Folds one input channel's `kh·kw` column rows back into its plane: the plane is zeroed,
/// then every column entry is added to the pixel it was read from, in a fixed order.
fn col2im_channel(g: &Geo, rows: &[f32], plane: &mut [f32]) {
    plane.fill(0.0);
    let mut rows = rows.chunks_exact(g.p());
    for i in 0..g.kh {
        let (oh_lo, oh_hi) = valid_range(i, g.ph, g.sh, g.h, g.oh);
        for j in 0..g.kw {
            let row = rows.next().expect("col2im: col too short");
            let (ow_lo, ow_hi) = valid_range(j, g.pw, g.sw, g.w, g.ow);
            if ow_lo == ow_hi {
                continue;
            }
            let first = ow_lo * g.sw + j - g.pw;
            for oy in oh_lo..oh_hi {
                let src = &row[oy * g.ow + ow_lo..oy * g.ow + ow_hi];
                let dst = &mut plane[(oy * g.sh + i - g.ph) * g.w..][..g.w];
                if g.sw == 1 {
                    for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                        *d += *s;
                    }
                } else {
                    for (d, s) in dst[first..].iter_mut().step_by(g.sw).zip(src) {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// Input channels per rayon task when one image's unfold is split over the pool.
const CHANNELS_PER_TASK: usize = 4;

/// Unfolds one image `x_n[ci, h, w]` into `col[K×P]`, over the pool when `par`.
fn im2col(g: &Geo, x: &[f32], col: &mut [f32], par: bool) {
    let (plane, rows) = (g.h * g.w, g.kh * g.kw * g.p());
    if par {
        col.par_chunks_mut(rows)
            .zip(x.par_chunks(plane))
            .with_min_len(CHANNELS_PER_TASK)
            .for_each(|(r, xp)| im2col_channel(g, xp, r));
    } else {
        for (r, xp) in col.chunks_exact_mut(rows).zip(x.chunks_exact(plane)) {
            im2col_channel(g, xp, r);
        }
    }
}

/// Folds `col[K×P]` back into one image `dx_n` (overwritten), over the pool when `par`.
/// Each channel is folded by one task in a fixed order, so the result is deterministic.
fn col2im(g: &Geo, col: &[f32], dx: &mut [f32], par: bool) {
    let (plane, rows) = (g.h * g.w, g.kh * g.kw * g.p());
    if par {
        dx.par_chunks_mut(plane)
            .zip(col.par_chunks(rows))
            .with_min_len(CHANNELS_PER_TASK)
            .for_each(|(d, r)| col2im_channel(g, r, d));
    } else {
        for (d, r) in dx.chunks_exact_mut(plane).zip(col.chunks_exact(rows)) {
            col2im_channel(g, r, d);
        }
    }
}

/// Per-image GEMM size (flops) from which the images are run one after another, each GEMM
/// (and unfold) spread over the pool, instead of one image per task with a single-threaded
/// GEMM. It matches the size from which `gemm` parallelises itself (1 MFLOP): nesting a
/// parallel GEMM inside a parallel image loop measured ~2× slower on teacher conv2 (waiting
/// workers steal other images, so pack buffers are re-allocated and L2 is shared by several
/// images at once). The choice depends on the shape only, never on the thread count.
const SERIAL_IMAGES_MIN_FLOPS: f64 = 1.0e6;

fn images_in_parallel(g: &Geo) -> bool {
    2.0 * ((g.co * g.p() * g.k()) as f64) < SERIAL_IMAGES_MIN_FLOPS
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
    let (k, p) = (g.k(), g.p());
    let w = &w[..g.co * k];
    let ep = Epilogue {
        accumulate: false,
        bias: bias.map_or(Bias::None, |b| Bias::PerRow(&b[..g.co])),
        relu: false,
    };
    let x = &x[..s.input_len()];
    let y = &mut y[..s.output_len()];
    let image = |yn: &mut [f32], xn: &[f32], par: bool| {
        if g.is_pointwise() {
            gemm_at(level, Trans::N, Trans::N, g.co, p, k, w, xn, yn, ep);
        } else {
            with_scratch(k * p, |col| {
                im2col(&g, xn, col, par);
                gemm_at(level, Trans::N, Trans::N, g.co, p, k, w, col, yn, ep);
            });
        }
    };
    if images_in_parallel(&g) {
        y.par_chunks_mut(g.out_image())
            .zip(x.par_chunks(g.in_image()))
            .for_each(|(yn, xn)| image(yn, xn, false));
    } else {
        for (yn, xn) in y.chunks_mut(g.out_image()).zip(x.chunks(g.in_image())) {
            image(yn, xn, true);
        }
    }
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
    let (k, p) = (g.k(), g.p());
    let w = &w[..g.co * k];
    let ep = Epilogue::default();
    let dy = &dy[..s.output_len()];
    let dx = &mut dx[..s.input_len()];
    let image = |dxn: &mut [f32], dyn_: &[f32], par: bool| {
        if g.is_pointwise() {
            // dx_n[ci×P] = Wᵀ·dY_n, with W stored co×ci.
            gemm_at(level, Trans::T, Trans::N, k, p, g.co, w, dyn_, dxn, ep);
        } else {
            with_scratch(k * p, |dcol| {
                gemm_at(level, Trans::T, Trans::N, k, p, g.co, w, dyn_, dcol, ep);
                col2im(&g, dcol, dxn, par);
            });
        }
    };
    if images_in_parallel(&g) {
        dx.par_chunks_mut(g.in_image())
            .zip(dy.par_chunks(g.out_image()))
            .for_each(|(dxn, dyn_)| image(dxn, dyn_, false));
    } else {
        for (dxn, dyn_) in dx.chunks_mut(g.in_image()).zip(dy.chunks(g.out_image())) {
            image(dxn, dyn_, true);
        }
    }
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
    let (k, p) = (g.k(), g.p());
    let wlen = g.co * k;
    let dw = &mut dw[..wlen];
    let batch = s.batch;
    // Accumulates images `images` into `acc` (overwritten by the first one).
    let run = |acc: &mut [f32], images: std::ops::Range<usize>, par: bool| {
        let first = images.start;
        for n in images {
            let xn = &x[n * g.in_image()..(n + 1) * g.in_image()];
            let dyn_ = &dy[n * g.out_image()..(n + 1) * g.out_image()];
            let ep = Epilogue {
                accumulate: n > first,
                ..Epilogue::default()
            };
            // dW[co×K] (+)= dY_n[co×P] · col_nᵀ, col_n stored K×P.
            let product = |col: &[f32], acc: &mut [f32]| {
                gemm_at(level, Trans::N, Trans::T, g.co, k, p, dyn_, col, acc, ep)
            };
            if g.is_pointwise() {
                product(xn, acc);
            } else {
                with_scratch(k * p, |col| {
                    im2col(&g, xn, col, par);
                    product(col, acc);
                });
            }
        }
    };
    if !images_in_parallel(&g) {
        // Big per-image GEMMs: one after another, each over the pool, straight into dw.
        run(dw, 0..batch, true);
        return;
    }
    // Small per-image GEMMs: a fixed partition of the batch (it depends on the batch size
    // only), one partial per chunk, then a fixed-order reduction.
    let per_chunk = batch.div_ceil(batch.min(MAX_PARTIALS));
    let chunks = batch.div_ceil(per_chunk);
    let chunk_images = |c: usize| c * per_chunk..((c + 1) * per_chunk).min(batch);
    let mut partials = vec![0.0f32; (chunks - 1) * wlen];
    let mut targets: Vec<&mut [f32]> = Vec::with_capacity(chunks);
    targets.push(&mut *dw);
    targets.extend(partials.chunks_exact_mut(wlen));
    targets
        .into_par_iter()
        .enumerate()
        .for_each(|(c, acc)| run(acc, chunk_images(c), false));
    if chunks > 1 {
        // dw += partial[1] + partial[2] + …, in chunk order, element blocks in parallel.
        const BLOCK: usize = 4096;
        dw.par_chunks_mut(BLOCK).enumerate().for_each(|(b, d)| {
            let range = b * BLOCK..b * BLOCK + d.len();
            for part in partials.chunks_exact(wlen) {
                for (d, s) in d.iter_mut().zip(&part[range.clone()]) {
                    *d += *s;
                }
            }
        });
    }
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
        // Per image an 8-lane f32 sum (vectorises), images summed in f64, in batch order.
        let mut total = 0.0f64;
        for n in 0..s.batch {
            let plane = &dy[(n * co + c) * p..(n * co + c + 1) * p];
            let mut lanes = [0.0f32; 8];
            let mut it = plane.chunks_exact(8);
            for ch in &mut it {
                for (l, v) in lanes.iter_mut().zip(ch) {
                    *l += *v;
                }
            }
            let mut sum = it.remainder().iter().sum::<f32>();
            sum += lanes.iter().sum::<f32>();
            total += sum as f64;
        }
        *out = total as f32;
    });
}
