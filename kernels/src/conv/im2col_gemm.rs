//! conv2d as im2col + GEMM, for every shape the thin kernels do not take.
//!
//! # Algorithm
//!
//! With `K = in·kh·kw` and `P = out_h·out_w`, image n is unfolded into `col_n[K×P]`, and the
//! weights are read as `W[co×K]` exactly as stored:
//!
//! - forward:     `Y_n[co×P] = W·col_n + bias` — `gemm(N, N)`, bias fused as `Bias::PerRow`,
//!   written straight into y (Y_n *is* image n of the NCHW output);
//! - input grad:  `dcol_n[K×P] = Wᵀ·dY_n` — `gemm(T, N)` reads W transposed in place — then
//!   col2im adds dcol_n back into the zeroed dx_n in a fixed order;
//! - weight grad: `dW[co×K] = Σ_n dY_n·col_nᵀ` — `gemm(N, T)` reads col_n transposed in place.
//!
//! No transposed copies are made. A 1×1 kernel with stride 1 and no padding skips the unfold
//! (`col_n` is x_n itself, and dcol_n is written straight into dx_n).
//!
//! # Tiling: per image, or per chunk of images
//!
//! Picked from the shape alone, so results never depend on the thread count:
//!
//! - **Small per-image GEMMs (< 1 MFLOP, e.g. 64×784×9):** one image per rayon task; the
//!   GEMM is below its own parallel threshold and runs on the task's thread, so there is no
//!   nesting and no fork/join per image. The weight grad accumulates the images of each chunk
//!   of the fixed batch partition ([`BatchChunks`]) into its own partial (chunk 0 into dw),
//!   then adds the partials into dw in chunk order.
//! - **Large per-image GEMMs (≥ 1 MFLOP, e.g. conv2: 128×196×576):** chunks of
//!   [`images_per_chunk`] consecutive images (about [`STREAM_CHUNK_COLUMNS`] columns for the
//!   forward and input grad, [`WEIGHT_GRAD_CHUNK_COLUMNS`] for the weight grad), one GEMM per
//!   chunk with columns `i·P + p`. A per-image GEMM would have only N = P columns (196: 12¼
//!   slivers of 16), too few to amortise packing and edge tiles. Per chunk of c images:
//!   - forward: unfold into `col[K × c·P]`, `Y_c = W·col` into a `[co × c·P]` scratch (bias
//!     fused), scattered into the c NCHW images;
//!   - input grad: dY gathered into `[co × c·P]`, `dcol = Wᵀ·dY_c`, folded per (image,
//!     channel) plane;
//!   - weight grad: `dWᵀ_chunk[K×co] = col·dY_cᵀ`, a reduction over all c·P pixels into the
//!     chunk's own partial, run as steps of about [`STREAM_CHUNK_COLUMNS`] columns (unfold
//!     and gather a step's images, one GEMM accumulating into the partial); the partials are
//!     summed in chunk order and transposed into dw.
//!
//!   With at least as many chunks as threads the chunks run in parallel, each with a
//!   single-threaded GEMM and unfold ([`gemm_serial_at`]); otherwise one after another, each
//!   spread over the pool. A chunk on one thread writes the GEMM's B operand (the forward's
//!   column matrix, the input grad's gathered dY) straight into the packed slivers the
//!   microkernel reads ([`PackedB`], [`gemm_serial_packed_b_at`]), so that operand is written
//!   once rather than written, then read and copied again by the GEMM's packing. A GEMM's
//!   bits do not depend on its tiling or threads, so both give the same result. Per-image GEMMs that are themselves parallel are never run inside a
//!   parallel image loop: a worker waiting in the GEMM's join would steal another image, so
//!   pack buffers are re-allocated and one L2 holds several images' operands.
//!
//! A chunk's buffers live in the thread-local `CHUNK` scratch (the teacher conv2's weight
//! grad needs (576 + 128)·784·4 B = 2.2 MB per thread), so steady-state calls allocate
//! nothing.
//!
//! # What bounds it
//!
//! conv2 (teacher 64→128 and student 32→64, 3×3 on 14×14) has K = 576 / 288 and is compute
//! bound: 2·K flops per output element written, so its speed is the GEMM's. The
//! unfold/gather/scatter/fold move `K·P` floats per image, ~1/(2·co) of the GEMM's flops.

use rayon::prelude::*;

use super::unfold::{col2im_channel, im2col_channel};
use super::{with_scratch, with_scratch_in, BatchChunks, Geo, CHUNK, PARTIALS};
use crate::gemm::{
    aligned, gemm_at, gemm_serial_at, gemm_serial_packed_b_at, GemmShape, PackedB, ALIGN_PAD,
};
use crate::simd::SimdLevel;
use crate::{Bias, Epilogue, Trans};

/// Input channels per rayon task when one image's unfold is split over the pool.
const CHANNELS_PER_TASK: usize = 4;

/// Unfolds one image `x_n[ci, h, w]` into `col[K×P]`, over the pool when `par`.
fn im2col(g: &Geo, x: &[f32], col: &mut [f32], par: bool) {
    let (plane, rows) = (g.h * g.w, g.kh * g.kw * g.p());
    if par {
        col.par_chunks_mut(rows)
            .zip(x.par_chunks(plane))
            .with_min_len(CHANNELS_PER_TASK)
            .for_each(|(r, xp)| im2col_channel(g, xp, r, g.p()));
    } else {
        for (r, xp) in col.chunks_exact_mut(rows).zip(x.chunks_exact(plane)) {
            im2col_channel(g, xp, r, g.p());
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
            .for_each(|(d, r)| col2im_channel(g, r, d, g.p()));
    } else {
        for (d, r) in dx.chunks_exact_mut(plane).zip(col.chunks_exact(rows)) {
            col2im_channel(g, r, d, g.p());
        }
    }
}

/// Per-image GEMM size (flops) from which the images are run one after another, each GEMM
/// (and unfold) spread over the pool, instead of one image per task with a single-threaded
/// GEMM. It matches the size from which `gemm` parallelises itself (1 MFLOP), so a parallel
/// GEMM never runs inside a parallel image loop (see the module header). The choice depends
/// on the shape only, never on the thread count.
const SERIAL_IMAGES_MIN_FLOPS: f64 = 1.0e6;

pub(super) fn images_in_parallel(g: &Geo) -> bool {
    2.0 * ((g.co * g.p() * g.k()) as f64) < SERIAL_IMAGES_MIN_FLOPS
}

/// Runs `f(i, out_i, spread)` over the chunks `out_i` of `out` (`len` floats each): in
/// parallel with `spread = true` when there are at least as many chunks as threads (each
/// chunk then runs a single-threaded GEMM and unfold), else one after another with
/// `spread = false` (each spread over the pool). Both give the same bits: a GEMM's result
/// does not depend on how it is tiled or threaded.
fn for_each_chunk(out: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32], bool) + Sync) {
    if out.len().div_ceil(len) >= rayon::current_num_threads() {
        out.par_chunks_mut(len)
            .enumerate()
            .for_each(|(i, o)| f(i, o, true));
    } else {
        for (i, o) in out.chunks_mut(len).enumerate() {
            f(i, o, false);
        }
    }
}

/// One chunk's GEMM: on this thread when the chunks are spread over the pool, else over it.
fn gemm_chunk(
    spread: bool,
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    if spread {
        gemm_serial_at(level, shape, a, b, c, ep)
    } else {
        gemm_at(level, shape, a, b, c, ep)
    }
}

/// Target number of columns (`images · P`) of one weight-gradient chunk on the large-GEMM
/// path: the reduction of one partial, so the fewer chunks, the fewer partials to sum. Its
/// GEMM runs in steps of [`STREAM_CHUNK_COLUMNS`].
const WEIGHT_GRAD_CHUNK_COLUMNS: usize = 3136;

/// Target columns of one chunk's forward and input-grad GEMM: wide enough that the tiles and
/// the packing are amortised (at P = 196 a per-image GEMM has only 6.1 slivers of 32, the last
/// one a eighth full; 784 columns are 24.5), narrow enough that the operand the chunk streams
/// (the packed column matrix, or dcol before its fold: student conv2 288 × 784 × 4 B = 0.9 MB)
/// stays in L2 between the writer and the reader. 3136 columns, whose operand spills to L3,
/// ran 4–18% slower on conv2 (docs/performance.md).
const STREAM_CHUNK_COLUMNS: usize = 784;

/// Most images per chunk on the large-GEMM path.
const MAX_CHUNK_IMAGES: usize = 16;

/// Images per chunk on the large-GEMM path (a function of the shape only).
fn images_per_chunk(g: &Geo, columns: usize) -> usize {
    columns.div_ceil(g.p()).clamp(1, MAX_CHUNK_IMAGES)
}

/// Unfolds images `x[c×ci×h×w]` into one column matrix `col[K × c·P]` (column `i·P + p` is
/// output position p of image i), input channels in parallel.
fn im2col_chunk(g: &Geo, x: &[f32], c: usize, col: &mut [f32], par: bool) {
    let (plane, cp) = (g.h * g.w, c * g.p());
    let rows = g.kh * g.kw * cp;
    let channel = |(ch, r): (usize, &mut [f32])| {
        for i in 0..c {
            let xp = &x[(i * g.ci + ch) * plane..][..plane];
            im2col_channel(g, xp, &mut r[i * g.p()..], cp);
        }
    };
    let col = &mut col[..g.ci * rows];
    if par {
        col.par_chunks_mut(rows)
            .enumerate()
            .with_min_len(CHANNELS_PER_TASK)
            .for_each(channel);
    } else {
        col.chunks_mut(rows).enumerate().for_each(channel);
    }
}

/// Folds `dcol[K × c·P]` (columns as in [`im2col_chunk`]) back into images
/// `dx[c×ci×h×w]` (overwritten), one (image, channel) plane per task, each in a fixed order.
fn col2im_chunk(g: &Geo, dcol: &[f32], c: usize, dx: &mut [f32], par: bool) {
    let (plane, cp) = (g.h * g.w, c * g.p());
    let rows = g.kh * g.kw * cp;
    let fold = |(t, d): (usize, &mut [f32])| {
        let (i, ch) = (t / g.ci, t % g.ci);
        col2im_channel(g, &dcol[ch * rows + i * g.p()..], d, cp);
    };
    let dx = &mut dx[..c * g.in_image()];
    if par {
        dx.par_chunks_mut(plane)
            .enumerate()
            .with_min_len(CHANNELS_PER_TASK)
            .for_each(fold);
    } else {
        dx.chunks_mut(plane).enumerate().for_each(fold);
    }
}

/// One chunk's GEMM `C = op(A)·B` whose B the chunk writes itself: straight into the GEMM's
/// packed slivers when the chunk runs on one thread (`spread`), else dense, for a GEMM over
/// the pool. Both give the same bits.
struct ChunkGemm {
    spread: bool,
    level: SimdLevel,
    shape: GemmShape,
    packed: Option<PackedB>,
}

impl ChunkGemm {
    fn new(level: SimdLevel, spread: bool, shape: GemmShape) -> ChunkGemm {
        let packed = PackedB::new(level, shape.m, shape.n, shape.k).filter(|_| spread);
        ChunkGemm {
            spread,
            level,
            shape,
            packed,
        }
    }

    /// Scratch floats B takes.
    fn b_len(&self) -> usize {
        let dense = self.shape.k * self.shape.n;
        self.packed.map_or(dense, |l| l.len() + ALIGN_PAD)
    }

    /// Writes B into `bbuf` ([`ChunkGemm::b_len`] floats) with `dense` or `packed`, then
    /// runs the GEMM into `c`.
    fn run(
        &self,
        a: &[f32],
        bbuf: &mut [f32],
        c: &mut [f32],
        ep: Epilogue,
        dense: impl FnOnce(&mut [f32]),
        packed: impl FnOnce(&PackedB, &mut [f32]),
    ) {
        let ChunkGemm {
            spread,
            level,
            shape,
            ..
        } = *self;
        match &self.packed {
            Some(layout) => {
                let b = aligned(bbuf, layout.len());
                packed(layout, b);
                gemm_serial_packed_b_at(level, shape, a, layout, b, c, ep);
            }
            None => {
                dense(bbuf);
                gemm_chunk(spread, level, shape, a, bbuf, c, ep);
            }
        }
    }
}

/// [`im2col_chunk`] written straight into the packed slivers of the chunk GEMM's B
/// ([`PackedB`]), on the calling thread: per (channel, image) plane its `kh·kw` rows are
/// unfolded into a small scratch (it stays in L1) and copied to their slivers, so the column
/// matrix is written once instead of written, then read and copied by the GEMM's packing.
fn im2col_chunk_packed(g: &Geo, x: &[f32], c: usize, layout: &PackedB, dst: &mut [f32]) {
    let (plane, p, taps) = (g.h * g.w, g.p(), g.kh * g.kw);
    layout.zero_padding(dst);
    with_scratch(taps * p, |rows| {
        for ch in 0..g.ci {
            for i in 0..c {
                im2col_channel(g, &x[(i * g.ci + ch) * plane..][..plane], rows, p);
                for (t, row) in rows.chunks_exact(p).enumerate() {
                    layout.write_row(dst, ch * taps + t, i * p, row);
                }
            }
        }
    });
}

/// [`gather_chunk`] written straight into the packed slivers of the chunk GEMM's B.
fn gather_chunk_packed(g: &Geo, src: &[f32], c: usize, layout: &PackedB, dst: &mut [f32]) {
    let p = g.p();
    layout.zero_padding(dst);
    for o in 0..g.co {
        for i in 0..c {
            layout.write_row(dst, o, i * p, &src[(i * g.co + o) * p..][..p]);
        }
    }
}

/// `dst[co × c·P]` (column `i·P + p`) from NCHW `src[c×co×P]`, rows in parallel.
fn gather_chunk(g: &Geo, src: &[f32], c: usize, dst: &mut [f32], par: bool) {
    let p = g.p();
    let row = |(o, row): (usize, &mut [f32])| {
        for (i, d) in row.chunks_exact_mut(p).enumerate() {
            d.copy_from_slice(&src[(i * g.co + o) * p..][..p]);
        }
    };
    let dst = &mut dst[..g.co * c * p];
    if par {
        dst.par_chunks_mut(c * p)
            .enumerate()
            .with_min_len(8)
            .for_each(row);
    } else {
        dst.chunks_mut(c * p).enumerate().for_each(row);
    }
}

/// NCHW `dst[c×co×P]` from `src[co × c·P]`, images in parallel.
fn scatter_chunk(g: &Geo, src: &[f32], c: usize, dst: &mut [f32], par: bool) {
    let p = g.p();
    let plane = |(t, d): (usize, &mut [f32])| {
        let (i, o) = (t / g.co, t % g.co);
        d.copy_from_slice(&src[o * c * p + i * p..][..p]);
    };
    let dst = &mut dst[..c * g.out_image()];
    if par {
        dst.par_chunks_mut(p)
            .enumerate()
            .with_min_len(8)
            .for_each(plane);
    } else {
        dst.chunks_mut(p).enumerate().for_each(plane);
    }
}

/// Forward: `y = conv(x, w) + bias` (overwrites y), per image or per chunk of images.
pub(super) fn forward(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let (k, p) = (g.k(), g.p());
    let ep = Epilogue {
        accumulate: false,
        bias: bias.map_or(Bias::None, Bias::PerRow),
        relu: false,
    };
    let shape = GemmShape {
        ta: Trans::N,
        tb: Trans::N,
        m: g.co,
        n: p,
        k,
    };
    let image = |yn: &mut [f32], xn: &[f32], par: bool| {
        if g.is_pointwise() {
            gemm_at(level, shape, w, xn, yn, ep);
        } else {
            with_scratch(k * p, |col| {
                im2col(g, xn, col, par);
                gemm_at(level, shape, w, col, yn, ep);
            });
        }
    };
    if images_in_parallel(g) {
        y.par_chunks_mut(g.out_image())
            .zip(x.par_chunks(g.in_image()))
            .for_each(|(yn, xn)| image(yn, xn, false));
    } else {
        // Chunks of images: one unfold into col[K × c·P], one GEMM with n = c·P, then the
        // [co × c·P] result is scattered into the c images of y.
        let per = images_per_chunk(g, STREAM_CHUNK_COLUMNS);
        let (yc, xc) = (per * g.out_image(), per * g.in_image());
        for_each_chunk(y, yc, |i, yn, spread| {
            let xn = &x[i * xc..(i * xc + xc).min(x.len())];
            let c = xn.len() / g.in_image();
            let chunk = ChunkGemm::new(level, spread, GemmShape { n: c * p, ..shape });
            with_scratch_in(&CHUNK, chunk.b_len() + g.co * c * p, |buf| {
                let (col, yc) = buf.split_at_mut(chunk.b_len());
                chunk.run(
                    w,
                    col,
                    yc,
                    ep,
                    |col| im2col_chunk(g, xn, c, col, !spread),
                    |layout, col| im2col_chunk_packed(g, xn, c, layout, col),
                );
                scatter_chunk(g, yc, c, yn, !spread);
            });
        });
    }
}

/// Input gradient: `dx = ∂L/∂x` from `dy` (overwrites dx), per image or per chunk of images.
pub(super) fn backward_input(level: SimdLevel, g: &Geo, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (k, p) = (g.k(), g.p());
    let ep = Epilogue::default();
    // dx_n[K×P] = Wᵀ·dY_n, with W stored co×K.
    let shape = GemmShape {
        ta: Trans::T,
        tb: Trans::N,
        m: k,
        n: p,
        k: g.co,
    };
    let image = |dxn: &mut [f32], dyn_: &[f32], par: bool| {
        if g.is_pointwise() {
            gemm_at(level, shape, w, dyn_, dxn, ep);
        } else {
            with_scratch(k * p, |dcol| {
                gemm_at(level, shape, w, dyn_, dcol, ep);
                col2im(g, dcol, dxn, par);
            });
        }
    };
    if images_in_parallel(g) {
        dx.par_chunks_mut(g.in_image())
            .zip(dy.par_chunks(g.out_image()))
            .for_each(|(dxn, dyn_)| image(dxn, dyn_, false));
    } else {
        // Chunks of images: dY gathered into [co × c·P], one GEMM dcol = Wᵀ·dY with n = c·P,
        // then dcol folded into the c images of dx.
        let per = images_per_chunk(g, STREAM_CHUNK_COLUMNS);
        let (xc, yc) = (per * g.in_image(), per * g.out_image());
        for_each_chunk(dx, xc, |i, dxn, spread| {
            let dyn_ = &dy[i * yc..(i * yc + yc).min(dy.len())];
            let c = dxn.len() / g.in_image();
            let chunk = ChunkGemm::new(level, spread, GemmShape { n: c * p, ..shape });
            with_scratch_in(&CHUNK, k * c * p + chunk.b_len(), |buf| {
                let (dcol, dyc) = buf.split_at_mut(k * c * p);
                chunk.run(
                    w,
                    dyc,
                    dcol,
                    ep,
                    |dyc| gather_chunk(g, dyn_, c, dyc, !spread),
                    |layout, dyc| gather_chunk_packed(g, dyn_, c, layout, dyc),
                );
                col2im_chunk(g, dcol, c, dxn, !spread);
            });
        });
    }
}

/// Weight gradient: `dw = ∂L/∂w` summed over the batch (overwrites dw). Small per-image GEMMs
/// go over the fixed partition `parts`; large ones over chunks of [`images_per_chunk`].
pub(super) fn backward_weight(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    parts: BatchChunks,
) {
    if images_in_parallel(g) {
        weight_grad_per_image(level, g, x, dy, dw, parts);
    } else {
        weight_grad_chunked(level, g, x, dy, dw);
    }
}

/// The weight gradient of large per-image GEMMs: chunks of images, each its own unfold and
/// GEMM `dWᵀ_chunk[K×co] = col_c[K × c·P]·dY_cᵀ` (a reduction over all the chunk's pixels, in
/// steps that accumulate) into its own partial; the partials are summed in chunk order (the
/// chunking depends on the shape only) and transposed into dw. The transposed product (m = K rather than m = co) is the
/// faster of the two forms on conv2. The chunks run in parallel, each GEMM on its own thread,
/// whenever there are enough of them: one GEMM over the pool per chunk makes few tiles at
/// n = co, so it would pay two fork/joins per KC block and pack its huge A (the unfold) once
/// per column run.
fn weight_grad_chunked(level: SimdLevel, g: &Geo, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (k, p) = (g.k(), g.p());
    let wlen = g.co * k;
    // x holds exactly the batch.
    let batch = x.len() / g.in_image();
    let per = images_per_chunk(g, WEIGHT_GRAD_CHUNK_COLUMNS);
    let n_chunks = batch.div_ceil(per);
    // A chunk's GEMM runs as several of about STREAM_CHUNK_COLUMNS columns, the later ones
    // accumulating: each step's column matrix stays in L2, and the chunk adds one partial.
    let step = images_per_chunk(g, STREAM_CHUNK_COLUMNS);
    let chunk = |ch: usize, dwt: &mut [f32], spread: bool| {
        let images = ch * per..((ch + 1) * per).min(batch);
        with_scratch_in(&CHUNK, (k + g.co) * step * p, |buf| {
            for (nth, first) in (images.start..images.end).step_by(step).enumerate() {
                let last = (first + step).min(images.end);
                let c = last - first;
                let xn = &x[first * g.in_image()..last * g.in_image()];
                let dyn_ = &dy[first * g.out_image()..last * g.out_image()];
                let (col, dyc) = buf.split_at_mut(k * c * p);
                im2col_chunk(g, xn, c, col, !spread);
                gather_chunk(g, dyn_, c, dyc, !spread);
                let ep = Epilogue {
                    accumulate: nth > 0,
                    ..Epilogue::default()
                };
                let shape = GemmShape {
                    ta: Trans::N,
                    tb: Trans::T,
                    m: k,
                    n: g.co,
                    k: c * p,
                };
                gemm_chunk(spread, level, shape, col, dyc, dwt, ep);
            }
        });
    };
    with_scratch_in(&PARTIALS, n_chunks * wlen, |partials| {
        for_each_chunk(partials, wlen, chunk);
        // dWᵀ = Σ_chunks dWᵀ_chunk in chunk order, summed into the first partial (contiguous
        // and vectorised), then transposed into dw.
        let (sum, rest) = partials.split_at_mut(wlen);
        for part in rest.chunks_exact(wlen) {
            for (a, b) in sum.iter_mut().zip(part) {
                *a += *b;
            }
        }
        for (o, row) in dw.chunks_exact_mut(k).enumerate() {
            for (kk, d) in row.iter_mut().enumerate() {
                *d = sum[kk * g.co + o];
            }
        }
    });
}

/// The weight gradient of small per-image GEMMs: the chunks of `parts` in parallel, each
/// accumulating its images into its own partial (chunk 0 into dw itself), then the partials
/// added into dw in chunk order.
fn weight_grad_per_image(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    parts: BatchChunks,
) {
    let (k, p) = (g.k(), g.p());
    let wlen = g.co * k;
    let chunks = parts.count;
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
            let shape = GemmShape {
                ta: Trans::N,
                tb: Trans::T,
                m: g.co,
                n: k,
                k: p,
            };
            let product = |col: &[f32], acc: &mut [f32]| gemm_at(level, shape, dyn_, col, acc, ep);
            if g.is_pointwise() {
                product(xn, acc);
            } else {
                with_scratch(k * p, |col| {
                    im2col(g, xn, col, par);
                    product(col, acc);
                });
            }
        }
    };
    let mut partials = vec![0.0f32; (chunks - 1) * wlen];
    let mut targets: Vec<&mut [f32]> = Vec::with_capacity(chunks);
    targets.push(&mut *dw);
    targets.extend(partials.chunks_exact_mut(wlen));
    targets
        .into_par_iter()
        .enumerate()
        .for_each(|(c, acc)| run(acc, parts.images(c), false));
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
