//! conv2d over NCHW (weights `[out, in, kh, kw]`): forward, input gradient, weight gradient,
//! bias gradient. Any kernel size, stride and zero padding.
//!
//! # Algorithm: im2col + GEMM (per image, or per chunk of images for large layers)
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
//!   input grad, 128×576×196 weight grad):** chunks of `images_per_chunk` consecutive
//!   images (16 at P = 196: `CHUNK_COLUMNS` = 3136 columns), one GEMM per chunk. A per-image
//!   GEMM has only N = P = 196 columns (12¼ slivers of 16), too few to amortise packing and
//!   edge tiles; a chunk has N = 16·196. Per chunk, with `c` images and columns `i·P + p`:
//!   - forward: unfold into `col[K × c·P]`, `Y_c = W·col` into a `[co × c·P]` scratch (bias
//!     fused), scattered into the c NCHW images;
//!   - input grad: dY gathered into `[co × c·P]`, `dcol = Wᵀ·dY_c`, folded per (image,
//!     channel) plane;
//!   - weight grad: unfold and gather as above, `dWᵀ_chunk[K×co] = col·dY_cᵀ` — one GEMM whose
//!     reduction runs over all c·P pixels, into the chunk's own partial; the partials are
//!     summed in chunk order and transposed into dw. The transposed form (m = K, n = co)
//!     measured ~20 % faster than m = co on student conv2.
//!
//!   With at least as many chunks as threads (batch 128: 8 chunks), the chunks run in
//!   parallel, each with a single-threaded GEMM and unfold ([`gemm_serial_at`]); otherwise
//!   one after another, each spread over the pool. A GEMM's bits do not depend on its
//!   tiling or threads, so both give the same result. Chunks in parallel measured +20 points
//!   on student conv2's weight grad (51 % → 67–71 % of peak: m = 288, n = 64 makes few
//!   tiles, so the pooled GEMM paid two fork/joins per KC block and packed the unfold once
//!   per column run) and +3–5 points on the other conv2 kernels.
//!
//!   Running per-image GEMMs that are themselves parallel inside a parallel image loop
//!   measured ~2× slower on teacher conv2 (a worker waiting in the GEMM's join steals another
//!   image, so pack buffers are re-allocated and one L2 holds several images' operands).
//!
//! A chunk's buffers live in a thread-local scratch vector taken out while in use (a nested
//! rayon task landing on the same thread allocates its own instead of aliasing), so
//! steady-state calls allocate nothing. Teacher conv2 needs (576 + 128)·3136·4 B = 8.8 MB
//! per thread.
//!
//! The unfold of a stride-1 layer copies each input plane once into a zero-bordered plane on
//! the stack, from which every column row is a contiguous run (no per-pixel bounds or fills;
//! `im2col_channel_stride1`, `with_padded_plane`).
//!
//! Weight grad with small GEMMs: the batch is cut into at most [`MAX_PARTIALS`] chunks
//! of consecutive images (a count that depends on the batch size only); each chunk
//! accumulates into its own partial (chunk 0 into dw itself), then the partials are added
//! into dw in chunk order. Every output element thus sees the same sequence of float
//! operations on every run and thread count (the chunk size of the large path also depends on
//! the shape only): all four kernels are bit-for-bit deterministic, given a deterministic GEMM
//! (the tests check 1, 2, 3 and 5 threads).
//!
//! Measured (2-core Zen 5, ~280 GFLOP/s AVX2 FMA peak, batch 128, a shared box, so noisy):
//! conv2 at 65–80 % of peak in all three kernels; the bare chunk GEMMs run at 80–90 %, the
//! unfold/gather/scatter/fold and packing phases are the rest.
//!
//! # What bounds it
//!
//! conv2 (teacher 64→128 and student 32→64, 3×3 on 14×14) has K = 576 / 288 and is compute
//! bound: 2·K = 1152 / 576 flops per output element written, so its speed is the GEMM's. The
//! unfold/fold is `K·P` floats per image, ~1/(2·co) of the GEMM's flops.
//!
//! # Thin reductions (conv1): direct kernels
//!
//! With K = in·kh·kw ≤ [`THIN_MAX_K`] (conv1: one input channel, K = 9) and the AVX2+FMA level,
//! the three kernels skip the GEMM (whose 6×16 tile runs 56–75 % full at K = 9 and which packs
//! and re-reads C for 9 flops per element) for direct loops over a per-image unfold kept in
//! L1 (module `thin` below): forward keeps an output channel's K weights and bias in registers and
//! streams `col`; weight grad keeps K vector accumulators per output channel over all pixels
//! of a batch chunk (channels in pairs that share each `col` load, taps in two passes); input
//! grad forms `dcol = Wᵀ·dY` on a 3-row × 24-pixel register tile over the channels (in
//! passes of at most 32), then folds it (stride 1: 8 pixels of a row at a time, the taps
//! summed in registers; a "same" convolution: whole shifted rows over zero margins, no
//! masks). For stride 1 the unfold builds only `ci·kw` rows: tap `(c, i, j)`
//! is row `(c, j)` moved on by `i` output rows. Each image task prefetches the next image's
//! input, and the forward starts the page translations of its output two pages ahead of its
//! stores. Other levels and larger K keep im2col + GEMM.
//!
//! Roofline (teacher conv1, batch 128: 116 Mflop; 2-core Zen 5, AVX2 peak ~265 Gflop/s, so
//! 0.44 ms at peak and 0.80 ms at 55 %): each output element costs 18 flops against one
//! 4-byte store (forward) or load (both backward kernels): 4.5 flop/byte. y and dy are
//! 128·64·784·4 B = 25.7 MB each. That is under the 32 MB L3, but not next to everything else
//! (x, the other buffers of a step or of the bench, which touches ~100 MB between two calls of
//! one kernel), so it streams from/to DRAM. Measured on this box (2 threads, best of many):
//! reading 25.7 MB takes 0.72 ms (~36 GB/s), writing it 0.59–0.66 ms (~40 GB/s, more with
//! the read-for-ownership of plain stores). So the memory floor is ~0.6–0.7 ms = 60–70 % of
//! peak, above the flop floor: conv1 is memory bound in all three kernels, and 55 % needs the
//! compute to hide almost entirely under the stream. Hence:
//! - forward writes y with streaming stores (outputs ≥ 8 MB), which skips the
//!   read-for-ownership (~25 % faster measured);
//! - the backward kernels software-prefetch dY: 8 planes ahead in the weight grad (across
//!   image boundaries; one plane ahead is ~90 ns of compute, under the DRAM latency: +10
//!   points teacher / +6 student), and 64 pixels ahead in every plane in the input grad,
//!   which reads all co planes side by side — more streams than the hardware prefetchers
//!   follow (~50 % of peak without, ~62 % with).
//! - the input grad's `dcol` tile (3 taps × 24 pixels: 9 accumulators, 3 dY vectors and a
//!   broadcast weight fill the 16 ymm registers) loads 3 dY vectors and 3 weights per 9 FMAs;
//!   the earlier 9-tap × 8-pixel loop loaded 10 per 9 and stored/reloaded `dcol` every 16
//!   channels, and its scalar fold was ~20 % of the kernel. Together: 45–50 % → 59–62 % of
//!   peak (lab runs on a quiet spell). A 3 × 32-pixel tile spilled and ran 1.6× slower.
//!
//! The forward is at the write floor: 4-, 6- and 7-vector steps measured the same, and in
//! cache (y under L3) it runs at ~70 % of peak. Streaming stores top out at ~40 GB/s on this
//! VM, one thread nearly as fast as two (0.60–0.66 ms for 25.7 MB). How close each conv1
//! kernel gets to its floor moves with the other tenants' memory traffic, and with what ran
//! just before: called back to back, teacher conv1's forward takes ~0.57–0.60 ms; right
//! after a 2048³ GEMM ~0.68 ms (the same per image at batch 128, 256 and 512), and ~0.68 ms
//! too after 30 ms of an FMA loop that touches no memory at all. Part of it is page-table
//! walks: student conv1's forward after teacher conv2's weight grad took ~0.40 ms, ~0.36 ms
//! if one float per 4 KB page of y was touched before the call, ~0.31 ms back to back. A
//! prefetch per output plane, two pages ahead of the stores, now starts those walks in time
//! (`PAGE_AHEAD`: ~0.35 ms there, teacher 0.72 → 0.63 ms). On 2 MB pages the same buffers ran
//! ~7–10 % faster in the bench, but training on them ran 1–4 % slower, so the engine keeps
//! 4 KB pages. The VM's bandwidth alone varies ~2× between runs, so none of this is settled.
//! The bench's round-robin runs conv1's forward right after GEMM 2048 and student conv1's
//! after teacher conv2's weight grad, so its conv1 figures are this "after compute" case.
//! Student conv1 (32 channels) is the same at half the size (12.8 MB).

use rayon::prelude::*;
use std::cell::Cell;

use crate::gemm::{gemm_at, gemm_serial_at};
use crate::simd::{self, SimdLevel};
use crate::{Bias, Conv2dShape, Epilogue, Trans};

/// Upper bound on the number of weight-gradient partials (and so on the batch parallelism of
/// [`conv2d_backward_weight`]). Depends on nothing but this constant and the batch size.
pub const MAX_PARTIALS: usize = 16;

thread_local! {
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The weight gradient's per-chunk partials, held by the calling thread while its rayon
    /// tasks (this thread among them) use [`SCRATCH`].
    static PARTIALS: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// The large-GEMM path's chunk buffers (megabytes), kept apart from [`SCRATCH`] so the
    /// thin kernels' per-image scratch stays a small heap block on every thread. (Sharing one
    /// vector measured ~15 points slower on conv1's weight grad in the round-robin bench.)
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

/// Largest zero-padded plane (floats) that [`im2col_channel`]'s stride-1 path builds on the
/// stack (16 KB: planes up to 62×62 with padding 1).
const PADDED_MAX: usize = 4096;

/// Unfolds one input plane into its `kh·kw` rows of the column matrix (`rows[kh·kw×P]`, rows
/// `rs ≥ P` floats apart; the `rs − P` floats past each row are left untouched).
fn im2col_channel(g: &Geo, plane: &[f32], rows: &mut [f32], rs: usize) {
    let padded_len = (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
    if g.sh == 1 && g.sw == 1 && g.ow >= 8 && g.w >= 8 && padded_len <= PADDED_MAX {
        im2col_channel_stride1(g, plane, rows, rs);
        return;
    }
    let mut rows = rows.chunks_mut(rs).map(|r| &mut r[..g.p()]);
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

/// Copies `src[..len]` to `dst[..len]` (`len ≥ 8`) as 8-float blocks, the last one ending at
/// `len` (overlapping its neighbour), for every one of `runs` runs `src_step` / `dst_step`
/// floats apart. Blocks outside, runs inside: the compiler turns a loop of contiguous block
/// copies into a `memcpy` call, which costs more than the copy for runs of 14–28 floats.
#[inline(always)]
fn copy_runs(
    dst: &mut [f32],
    dst_step: usize,
    src: &[f32],
    src_step: usize,
    runs: usize,
    len: usize,
) {
    debug_assert!(len >= 8);
    let last = len - 8;
    for x0 in (0..last).step_by(8).chain(std::iter::once(last)) {
        for r in 0..runs {
            let s: &[f32; 8] = src[r * src_step + x0..][..8].try_into().unwrap();
            let d: &mut [f32; 8] = (&mut dst[r * dst_step + x0..][..8]).try_into().unwrap();
            *d = *s;
        }
    }
}

/// [`im2col_channel`] for stride 1 (rows of at least 8 outputs): the plane is copied once into
/// a zero-bordered `padded[(h+2ph) × (w+2pw)]` on the stack, where row `(i, j)` of the column
/// matrix at output row `oy` is the contiguous run `padded[oy + i, j .. j + ow]`; no per-pixel
/// bounds or fills. Measured 3–4× faster than the generic loop on 14×14 and 28×28, where the
/// unfold was ~12 % of conv1's forward and ~14 % of student conv2's weight grad.
fn im2col_channel_stride1(g: &Geo, plane: &[f32], rows: &mut [f32], rs: usize) {
    with_padded_plane(g, plane, |padded, wp| {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut rows[(i * g.kw + j) * rs..];
                copy_runs(row, g.ow, &padded[i * wp + j..], wp, g.oh, g.ow);
            }
        }
    })
}

/// Runs `f(padded, wp)` on a zero-bordered copy of `plane`, `padded[(h+2ph) × wp]` with
/// `wp = w+2pw`, on the stack (`(h+2ph)·wp ≤` [`PADDED_MAX`], `w ≥ 8`).
fn with_padded_plane<R>(g: &Geo, plane: &[f32], f: impl FnOnce(&[f32], usize) -> R) -> R {
    let (wp, hp) = (g.w + 2 * g.pw, g.h + 2 * g.ph);
    // Uninitialised, then zeroed over the used part only (zeroing all 16 KB cost more than
    // the unfold of a 14×14 plane).
    let mut buf = [std::mem::MaybeUninit::<f32>::uninit(); PADDED_MAX];
    for v in &mut buf[..hp * wp] {
        v.write(0.0);
    }
    // SAFETY: the first hp·wp elements were initialised just above.
    let padded: &mut [f32] =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<f32>(), hp * wp) };
    copy_runs(&mut padded[g.ph * wp + g.pw..], wp, plane, g.w, g.h, g.w);
    f(padded, wp)
}

/// Folds one input channel's `kh·kw` column rows back into its plane: the plane is zeroed,
/// then every column entry is added to the pixel it was read from, in a fixed order. Rows are
/// `rs ≥ P` floats apart.
fn col2im_channel(g: &Geo, rows: &[f32], plane: &mut [f32], rs: usize) {
    plane.fill(0.0);
    let mut rows = rows.chunks(rs).map(|r| &r[..g.p()]);
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
/// GEMM. It matches the size from which `gemm` parallelises itself (1 MFLOP): nesting a
/// parallel GEMM inside a parallel image loop measured ~2× slower on teacher conv2 (waiting
/// workers steal other images, so pack buffers are re-allocated and L2 is shared by several
/// images at once). The choice depends on the shape only, never on the thread count.
const SERIAL_IMAGES_MIN_FLOPS: f64 = 1.0e6;

fn images_in_parallel(g: &Geo) -> bool {
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
#[allow(clippy::too_many_arguments)]
fn gemm_chunk(
    spread: bool,
    level: SimdLevel,
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    if spread {
        gemm_serial_at(level, ta, tb, m, n, k, a, b, c, ep)
    } else {
        gemm_at(level, ta, tb, m, n, k, a, b, c, ep)
    }
}

/// Target number of columns (`images · P`) of one chunk's GEMM on the large-GEMM path: wide
/// enough that the 6×16 tiles, the B packing and the fork/join are amortised (at P = 196 a
/// per-image GEMM has only 12.25 column slivers, the last one a quarter full), small enough
/// that a chunk's column matrix (teacher conv2: 576 × 1568 × 4 B = 3.6 MB) stays in L3.
const CHUNK_COLUMNS: usize = 3136;

/// Most images per chunk on the large-GEMM path.
const MAX_CHUNK_IMAGES: usize = 16;

/// Images per chunk on the large-GEMM path (a function of the shape only).
fn images_per_chunk(g: &Geo) -> usize {
    CHUNK_COLUMNS.div_ceil(g.p()).clamp(1, MAX_CHUNK_IMAGES)
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
    #[cfg(target_arch = "x86_64")]
    if uses_thin_kernels(level, s) {
        thin::forward(&g, x, w, bias.map(|b| &b[..g.co]), y);
        return;
    }
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
        // Chunks of images: one unfold into col[K × c·P], one GEMM with n = c·P, then the
        // [co × c·P] result is scattered into the c images of y.
        let per = images_per_chunk(&g);
        let (yc, xc) = (per * g.out_image(), per * g.in_image());
        for_each_chunk(y, yc, |i, yn, spread| {
            let xn = &x[i * xc..(i * xc + xc).min(x.len())];
            let c = xn.len() / g.in_image();
            with_scratch_in(&CHUNK, (k + g.co) * c * p, |buf| {
                let (col, yc) = buf.split_at_mut(k * c * p);
                im2col_chunk(&g, xn, c, col, !spread);
                gemm_chunk(
                    spread,
                    level,
                    Trans::N,
                    Trans::N,
                    g.co,
                    c * p,
                    k,
                    w,
                    col,
                    yc,
                    ep,
                );
                scatter_chunk(&g, yc, c, yn, !spread);
            });
        });
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
    #[cfg(target_arch = "x86_64")]
    if uses_thin_kernels(level, s) {
        thin::backward_input(&g, w, dy, dx);
        return;
    }
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
        // Chunks of images: dY gathered into [co × c·P], one GEMM dcol = Wᵀ·dY with n = c·P,
        // then dcol folded into the c images of dx.
        let per = images_per_chunk(&g);
        let (xc, yc) = (per * g.in_image(), per * g.out_image());
        for_each_chunk(dx, xc, |i, dxn, spread| {
            let dyn_ = &dy[i * yc..(i * yc + yc).min(dy.len())];
            let c = dxn.len() / g.in_image();
            with_scratch_in(&CHUNK, (k + g.co) * c * p, |buf| {
                let (dcol, dyc) = buf.split_at_mut(k * c * p);
                gather_chunk(&g, dyn_, c, dyc, !spread);
                gemm_chunk(
                    spread,
                    level,
                    Trans::T,
                    Trans::N,
                    k,
                    c * p,
                    g.co,
                    w,
                    dyc,
                    dcol,
                    ep,
                );
                col2im_chunk(&g, dcol, c, dxn, !spread);
            });
        });
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
    // A fixed partition of the batch (it depends on the batch size only), one partial per
    // chunk, then a fixed-order reduction (small per-image GEMMs and the thin-K kernels).
    let per_chunk = batch.div_ceil(batch.min(MAX_PARTIALS));
    let chunks = batch.div_ceil(per_chunk);
    let chunk_images = |c: usize| c * per_chunk..((c + 1) * per_chunk).min(batch);
    #[cfg(target_arch = "x86_64")]
    if uses_thin_kernels(level, s) {
        let (x, dy) = (&x[..s.input_len()], &dy[..s.output_len()]);
        thin::backward_weight(&g, x, dy, dw, chunks, chunk_images);
        return;
    }
    if !images_in_parallel(&g) {
        // Big per-image GEMMs: chunks of images in parallel, each its own unfold and one
        // single-threaded GEMM, dWᵀ_chunk[K×co] = col_c[K × c·P]·dY_cᵀ (a reduction over all
        // the chunk's pixels), into its own partial; the partials are summed in chunk order
        // (the chunking depends on the shape only) and transposed into dw. m = K rather than
        // m = co measured ~20 % faster on student conv2 (co = 64). One GEMM over the pool per
        // chunk instead measured ~15 % slower on student conv2: m = 288, n = 64 gives few
        // tiles, so each of its 13 KC blocks paid two fork/joins and the huge A (the unfold)
        // was packed once per column run.
        let per = images_per_chunk(&g);
        let n_chunks = batch.div_ceil(per);
        let (x, dy) = (&x[..s.input_len()], &dy[..s.output_len()]);
        let chunk = |ch: usize, dwt: &mut [f32], spread: bool| {
            let images = ch * per..((ch + 1) * per).min(batch);
            let c = images.len();
            let xn = &x[images.start * g.in_image()..images.end * g.in_image()];
            let dyn_ = &dy[images.start * g.out_image()..images.end * g.out_image()];
            with_scratch_in(&CHUNK, (k + g.co) * c * p, |buf| {
                let (col, dyc) = buf.split_at_mut(k * c * p);
                im2col_chunk(&g, xn, c, col, !spread);
                gather_chunk(&g, dyn_, c, dyc, !spread);
                let ep = Epilogue::default();
                gemm_chunk(
                    spread,
                    level,
                    Trans::N,
                    Trans::T,
                    k,
                    g.co,
                    c * p,
                    col,
                    dyc,
                    dwt,
                    ep,
                );
            });
        };
        with_scratch_in(&PARTIALS, n_chunks * wlen, |partials| {
            for_each_chunk(partials, wlen, chunk);
            // dW[o, kk] = Σ_chunks dWᵀ_chunk[kk, o], in chunk order.
            let (first, rest) = partials.split_at(wlen);
            for (o, row) in dw.chunks_exact_mut(k).enumerate() {
                for (kk, d) in row.iter_mut().enumerate() {
                    let i = kk * g.co + o;
                    *d = rest
                        .chunks_exact(wlen)
                        .fold(first[i], |acc, part| acc + part[i]);
                }
            }
        });
        return;
    }
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

/// Direct AVX2+FMA kernels for a thin reduction (`K = in·kh·kw ≤` [`THIN_MAX_K`]; conv1 of
/// the teacher and the student has K = 9), any kernel size, stride and padding.
///
/// Per image the input is unfolded into a column matrix (tap `k`'s row at `offs[k]`, tails
/// zeroed; for stride 1 only `ci·kw` shifted rows are built and the `kh` taps of a column
/// share one, see `ColLayout`: 10 KB for 28×28 with 3×3, so it stays in L1), then:
/// - forward: per output channel its K weights (and bias) sit in registers and `col` is
///   streamed 8 pixels at a time, 4 vectors per step: `y = bias + Σ_k w_k·col_k`;
/// - weight grad: per output channel K vector accumulators run over all pixels of all images
///   of a batch chunk (the same fixed partition as the generic path; channels in pairs, taps
///   in two passes, see `wgrad_image`), then lanes, then chunks,
///   are summed in a fixed order;
/// - input grad: per 24 pixels and 3 taps, 9 vector accumulators run over the output
///   channels in order, `dcol_k = Σ_co w[co,k]·dY[co]`, then `dcol` is folded into dx (fixed
///   order; vectorised for stride 1, and for a stride-1 "same" convolution a sum of shifted
///   rows with no masks, `FlatFold`).
///
/// These are memory-bound at batch 128 (conv1's output or dY is 25.7 MB): each task also
/// prefetches the next image's input, and the forward touches its output's pages two pages
/// ahead of its stores (`PAGE_AHEAD`).
///
/// Images run in parallel, one per task; every element sees the same operations whatever
/// the thread count.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
mod thin {
    use super::*;
    use crate::simd::mask;
    use std::arch::x86_64::*;

    /// Outputs from this size on are written with streaming stores (they would not stay in
    /// cache anyway, and skipping the read-for-ownership halves the memory traffic).
    const STREAM_MIN_BYTES: usize = 8 << 20;

    /// Row stride of the padded column matrix.
    pub(super) fn row_stride(p: usize) -> usize {
        p.div_ceil(8) * 8
    }

    /// Where the thin kernels find the column matrix in their scratch: tap `k`'s row at output
    /// pixel `o` (for `o < PS`) is `col[offs[k] + o]`.
    ///
    /// - **Shifted rows** (stride 1, rows ≥ 8 wide): for a stride of 1 the row of tap
    ///   `(c, i, j)` is the row of tap `(c, 0, j)` moved on by `i` output rows, if that row runs
    ///   on over all `h+2ph` padded rows. So only `ci·kw` such rows are built, each the
    ///   padded plane's columns `j..j+ow` (`es` floats apart, zeroed past their end), and tap
    ///   `(c, i, j)` is at `(c·kw + j)·es + i·ow`. A third of the unfold's writes for 3×3.
    /// - **Unfolded** (other strides): the full `col[K×PS]`, tap `k` at `k·PS`.
    struct ColLayout {
        shifted: bool,
        /// Floats between two built rows.
        row_stride: usize,
        /// Scratch floats.
        len: usize,
        offs: [usize; THIN_MAX_K],
    }

    impl ColLayout {
        fn new(g: &Geo) -> ColLayout {
            let (hp, wp) = (g.h + 2 * g.ph, g.w + 2 * g.pw);
            let ps = row_stride(g.p());
            let mut offs = [0; THIN_MAX_K];
            let shifted = g.sh == 1 && g.sw == 1 && g.ow >= 8 && g.w >= 8 && hp * wp <= PADDED_MAX;
            if shifted {
                // Reads reach (kh−1)·ow + PS − 1 ≤ hp·ow + 6 into a row: 8 zeroed floats past
                // hp·ow cover them; a multiple of 8 keeps the rows' alignment.
                let es = row_stride(hp * g.ow + 8);
                for (t, o) in offs.iter_mut().enumerate().take(g.k()) {
                    let (c, i, j) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
                    *o = (c * g.kw + j) * es + i * g.ow;
                }
                ColLayout {
                    shifted,
                    row_stride: es,
                    len: g.ci * g.kw * es,
                    offs,
                }
            } else {
                for (t, o) in offs.iter_mut().enumerate().take(g.k()) {
                    *o = t * ps;
                }
                ColLayout {
                    shifted,
                    row_stride: ps,
                    len: g.k() * ps,
                    offs,
                }
            }
        }

        /// Unfolds image `x_n` into `col[..self.len]` (with zeroed tails past each row).
        fn unfold(&self, g: &Geo, x: &[f32], col: &mut [f32]) {
            let rs = self.row_stride;
            if self.shifted {
                let filled = (g.h + 2 * g.ph) * g.ow;
                let per = g.kw * rs;
                for (rows, plane) in col.chunks_exact_mut(per).zip(x.chunks_exact(g.h * g.w)) {
                    with_padded_plane(g, plane, |padded, wp| {
                        for (j, row) in rows.chunks_exact_mut(rs).enumerate() {
                            copy_runs(row, g.ow, &padded[j..], wp, g.h + 2 * g.ph, g.ow);
                            row[filled..].fill(0.0);
                        }
                    });
                }
            } else {
                let p = g.p();
                let per = g.kh * g.kw * rs;
                for (r, xp) in col.chunks_exact_mut(per).zip(x.chunks_exact(g.h * g.w)) {
                    im2col_channel(g, xp, r, rs);
                }
                if rs > p {
                    for row in col.chunks_exact_mut(rs) {
                        row[p..].fill(0.0);
                    }
                }
            }
        }
    }

    /// Prefetches every line of image `n + 1`'s input while image `n` (this task) is computed
    /// (with images split between threads in ranges, a thread's next image is most often
    /// `n + 1`). After a call that streamed other data through the caches (a large GEMM,
    /// say) it would otherwise miss at the start of every image.
    fn prefetch_next_input(g: &Geo, x: &[f32], n: usize) {
        let next = (n + 1) * g.in_image();
        if let Some(xn) = x.get(next..next + g.in_image()) {
            for line in xn.iter().step_by(16) {
                // SAFETY: prefetching is a hint; the address is inside x.
                unsafe { _mm_prefetch::<_MM_HINT_T0>((line as *const f32).cast()) };
            }
        }
    }

    /// How far ahead of the plane being written [`fwd_image`] touches the output's pages:
    /// 2 pages (8 KB, floats here).
    ///
    /// A 12.8 MB output spans 3,136 pages of 4 KB. After another large kernel has used the
    /// TLB, each page costs a page walk, two-dimensional on a VM with nested paging. A
    /// streaming store that waits on one stalls the stores behind it. So before each output
    /// channel's plane, one prefetch per page of the range 2 pages ahead starts those walks
    /// early, spread over the image one or two at a time. Measured on conv1's forward after
    /// teacher conv2's weight grad: teacher 0.72 → 0.63 ms, student 0.37 → 0.35 ms, and no
    /// change back to back. Distances of 1–3 pages measured alike; 8 pages was a little worse.
    /// The earlier burst, one line per page of the next image's whole output at the start of
    /// each image (25 prefetches at once), recovered only a third of that. Adding it on top
    /// made things worse.
    const PAGE_AHEAD: usize = 2048;

    /// Output vectors per step of [`fwd_image`] (independent FMA chains; with K ≤ 9 weights
    /// in registers 7 would fit). 4, 6 and 7 measured the same at batch 128: the forward
    /// waits on writing y, not on FMA latency.
    const FWD_VECTORS: usize = 4;

    /// `y[co×P] = bias + w[co×K]·col[K×PS]` for one image.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fwd_image<const K: usize>(
        col: &[f32],
        offs: &[usize],
        p: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        co: usize,
        nt: bool,
    ) {
        debug_assert!(col.len() >= offs[K - 1] + row_stride(p) && w.len() >= co * K);
        debug_assert!(y.len() >= co * p);
        let cp = col.as_ptr();
        let mut off = [0usize; K];
        off.copy_from_slice(&offs[..K]);
        let (full, rem) = (p / 8, p % 8);
        let mask = mask::first(rem);
        for c in 0..co {
            let mut wk = [_mm256_setzero_ps(); K];
            for (k, v) in wk.iter_mut().enumerate() {
                *v = _mm256_set1_ps(*w.get_unchecked(c * K + k));
            }
            let b = _mm256_set1_ps(bias.map_or(0.0, |b| *b.get_unchecked(c)));
            let yp = y.as_mut_ptr().add(c * p);
            // The pages PAGE_AHEAD on (past the end of y for the last planes: a prefetch
            // never faults, and the pointer is never dereferenced).
            for page in (0..p).step_by(1024) {
                _mm_prefetch::<_MM_HINT_T0>(yp.wrapping_add(PAGE_AHEAD + page) as *const i8);
            }
            // Streaming (non-temporal) stores skip the read-for-ownership of y.
            // 128-bit halves: they need 16-byte alignment only, which large allocations have.
            let stream = nt && (yp as usize) % 16 == 0;
            let st = |dst: *mut f32, v: __m256| {
                if stream {
                    _mm_stream_ps(dst, _mm256_castps256_ps128(v));
                    _mm_stream_ps(dst.add(4), _mm256_extractf128_ps::<1>(v));
                } else {
                    _mm256_storeu_ps(dst, v)
                }
            };
            let mut v = 0;
            while v + FWD_VECTORS <= full {
                let o = v * 8;
                let mut a = [b; FWD_VECTORS];
                for k in 0..K {
                    let r = cp.add(off[k] + o);
                    for (u, acc) in a.iter_mut().enumerate() {
                        *acc = _mm256_fmadd_ps(wk[k], _mm256_loadu_ps(r.add(8 * u)), *acc);
                    }
                }
                for (u, acc) in a.iter().enumerate() {
                    st(yp.add(o + 8 * u), *acc);
                }
                v += FWD_VECTORS;
            }
            while v < full {
                let o = v * 8;
                let mut a = b;
                for k in 0..K {
                    a = _mm256_fmadd_ps(wk[k], _mm256_loadu_ps(cp.add(off[k] + o)), a);
                }
                st(yp.add(o), a);
                v += 1;
            }
            if rem > 0 {
                let o = full * 8;
                let mut a = b;
                for k in 0..K {
                    a = _mm256_fmadd_ps(wk[k], _mm256_loadu_ps(cp.add(off[k] + o)), a);
                }
                _mm256_maskstore_ps(yp.add(o), mask, a);
            }
        }
    }

    /// `acc[co×K×8] += dY[co×P]·col[K×PS]ᵀ`, lane-wise (8 partial sums per weight).
    ///
    /// Output channels go in pairs, each pair in two passes over the taps (`K/2` rounded up,
    /// then the rest): a step loads the pair's two dY vectors and one `col` vector per tap
    /// and feeds it to both channels' accumulators. 9 taps: 13 loads per 18 FMAs instead of
    /// 20 one channel at a time with all 9 taps, and at most 2·6 accumulators + 3 in the 16
    /// ymm registers. The second pass reads the pair's dY planes again from L1. An odd last
    /// channel runs alone over all K taps. Every accumulator sees the same FMAs in the same
    /// order either way.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn wgrad_image<const K: usize>(
        col: &[f32],
        offs: &[usize],
        p: usize,
        dy: &[f32],
        acc: &mut [f32],
        co: usize,
    ) {
        debug_assert!(col.len() >= offs[K - 1] + row_stride(p) && dy.len() >= co * p);
        debug_assert!(acc.len() >= co * K * 8);
        let t = WgradTaps {
            col: col.as_ptr(),
            offs,
            p,
            dy,
            acc: acc.as_mut_ptr(),
            k: K,
        };
        // Two passes over the taps of a channel pair: `first` taps, then `K − first`.
        macro_rules! pair {
            ($c:expr, $first:literal) => {
                pair!($c, $first, 0)
            };
            ($c:expr, $first:literal, $rest:literal) => {{
                wgrad_pass::<2, $first>(&t, $c, 0, true);
                if $rest > 0 {
                    wgrad_pass::<2, $rest>(&t, $c, $first, false);
                }
            }};
        }
        let mut c = 0;
        while c + 2 <= co {
            match K {
                1 => pair!(c, 1),
                2 => pair!(c, 1, 1),
                3 => pair!(c, 2, 1),
                4 => pair!(c, 2, 2),
                5 => pair!(c, 3, 2),
                6 => pair!(c, 3, 3),
                7 => pair!(c, 4, 3),
                8 => pair!(c, 4, 4),
                9 => pair!(c, 5, 4),
                10 => pair!(c, 5, 5),
                11 => pair!(c, 6, 5),
                12 => pair!(c, 6, 6),
                _ => unreachable!("thin conv kernel: K out of range"),
            }
            c += 2;
        }
        if c < co {
            wgrad_pass::<1, K>(&t, c, 0, true);
        }
    }

    /// What every pass of [`wgrad_image`] shares: the unfolded image, the tap offsets, this
    /// image's dY (and all after it, for prefetching) and the accumulators.
    struct WgradTaps<'a> {
        col: *const f32,
        offs: &'a [usize],
        p: usize,
        dy: &'a [f32],
        acc: *mut f32,
        k: usize,
    }

    /// Taps `k0..k0+KG` of output channels `c..c+CH`: `CH·KG` vector accumulators over all
    /// pixels, one `col` load per tap per step shared by the `CH` channels. `prefetch`: the
    /// first pass over a channel's plane prefetches the plane [`WGRAD_AHEAD`] on.
    #[inline(always)]
    unsafe fn wgrad_pass<const CH: usize, const KG: usize>(
        t: &WgradTaps,
        c: usize,
        k0: usize,
        prefetch: bool,
    ) {
        let p = t.p;
        let mut off = [0usize; KG];
        off.copy_from_slice(&t.offs[k0..k0 + KG]);
        let mut a = [[_mm256_setzero_ps(); KG]; CH];
        for (ch, row) in a.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(t.acc.add(((c + ch) * t.k + k0 + j) * 8));
            }
        }
        let dp = t.dy.as_ptr().add(c * p);
        let (full, rem) = (p / 8, p % 8);
        for v in 0..full {
            let o = v * 8;
            if prefetch {
                for ch in 0..CH {
                    if (c + ch + WGRAD_AHEAD) * p + o < t.dy.len() {
                        // [`WGRAD_AHEAD`] planes ahead (into the next image after the last
                        // ones): dY streams from DRAM.
                        let ahead = dp.add((ch + WGRAD_AHEAD) * p + o);
                        _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
                    }
                }
            }
            let mut d = [_mm256_setzero_ps(); CH];
            for (ch, dv) in d.iter_mut().enumerate() {
                *dv = _mm256_loadu_ps(dp.add(ch * p + o));
            }
            wgrad_step(t.col, &off, o, &d, &mut a);
        }
        if rem > 0 {
            let o = full * 8;
            let mask = mask::first(rem);
            let mut d = [_mm256_setzero_ps(); CH];
            for (ch, dv) in d.iter_mut().enumerate() {
                *dv = _mm256_maskload_ps(dp.add(ch * p + o), mask);
            }
            wgrad_step(t.col, &off, o, &d, &mut a);
        }
        for (ch, row) in a.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                _mm256_storeu_ps(t.acc.add(((c + ch) * t.k + k0 + j) * 8), *v);
            }
        }
    }

    /// One step of [`wgrad_pass`] at pixel `o`: `a[ch][j] += d[ch]·col_j` for its `KG` taps,
    /// each `col` vector loaded once for the `CH` channels.
    #[inline(always)]
    unsafe fn wgrad_step<const CH: usize, const KG: usize>(
        col: *const f32,
        off: &[usize; KG],
        o: usize,
        d: &[__m256; CH],
        a: &mut [[__m256; KG]; CH],
    ) {
        for j in 0..KG {
            let cv = _mm256_loadu_ps(col.add(off[j] + o));
            for ch in 0..CH {
                a[ch][j] = _mm256_fmadd_ps(d[ch], cv, a[ch][j]);
            }
        }
    }

    /// How many dY planes ahead [`wgrad_image`] prefetches.
    const WGRAD_AHEAD: usize = 8;

    /// Pixels ahead that [`dcol_tile`] prefetches in each dY plane (~2.7 blocks of 24).
    /// Measured on teacher conv1 input grad: ~50 % of peak without, ~62 % with; 48–256 were
    /// no better than 64.
    const DCOL_PREFETCH: usize = 64;

    /// Most dY planes one pass of [`dcol_image_tiled`] reads side by side. Teacher conv1
    /// (64 channels) in two passes of 32 measured ~12 % faster with dY coming from DRAM
    /// (after a 2048³ GEMM) and ~2 % back to back; 16 per pass was no better than 32, and
    /// student conv1 (32) gained nothing from 16. Fewer interleaved streams per pass, each
    /// twice as long, suit the prefetchers and DRAM pages better.
    const DCOL_CHANNEL_GROUP: usize = 32;

    /// Rows `k0..k0+KG` of `dcol` at pixels `o..o+8·NV`: `dcol_k = Σ_c w[c,k]·dY[c]` with
    /// KG·NV accumulators in registers over the channels `chans = c0..c1` in order (KG
    /// broadcasts and NV loads per KG·NV FMAs), starting from zero for `c0 = 0` and else from
    /// the sums the previous channel group stored (the same chain of FMAs, so the same bits).
    /// `last` masks the final vector. `pf` prefetches this block's successor in every plane
    /// of the group (the first row group of a block only); past the end of the plane, the
    /// plane one group on (the next group's, or the next image's).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn dcol_tile<const KG: usize, const NV: usize>(
        wp: *const f32,
        k: usize,
        k0: usize,
        dy: &[f32],
        p: usize,
        chans: (usize, usize),
        o: usize,
        last: Option<__m256i>,
        pf: bool,
        op: *mut f32,
        ps: usize,
    ) {
        let dp = dy.as_ptr();
        let (c0, c1) = chans;
        let mut a = [[_mm256_setzero_ps(); NV]; KG];
        if c0 > 0 {
            for (r, row) in a.iter_mut().enumerate() {
                for (v, acc) in row.iter_mut().enumerate() {
                    *acc = _mm256_loadu_ps(op.add((k0 + r) * ps + o + 8 * v));
                }
            }
        }
        for c in c0..c1 {
            let src = dp.add(c * p + o);
            if pf {
                // The same plane DCOL_PREFETCH pixels on, or the next image's plane c
                // (dY streams from DRAM; the hardware prefetchers do not follow co
                // interleaved streams).
                let ahead = o + DCOL_PREFETCH;
                let at = if ahead < p {
                    c * p + ahead
                } else {
                    (c + c1 - c0) * p + ahead - p
                };
                if at < dy.len() {
                    _mm_prefetch::<_MM_HINT_T0>(dp.add(at) as *const i8);
                    if NV > 2 && at + 16 < dy.len() {
                        _mm_prefetch::<_MM_HINT_T0>(dp.add(at + 16) as *const i8);
                    }
                }
            }
            let mut d = [_mm256_setzero_ps(); NV];
            for (v, dv) in d.iter_mut().enumerate() {
                *dv = match last {
                    Some(m) if v == NV - 1 => _mm256_maskload_ps(src.add(8 * v), m),
                    _ => _mm256_loadu_ps(src.add(8 * v)),
                };
            }
            for (r, row) in a.iter_mut().enumerate() {
                let wv = _mm256_broadcast_ss(&*wp.add(c * k + k0 + r));
                for (acc, dv) in row.iter_mut().zip(d) {
                    *acc = _mm256_fmadd_ps(wv, dv, *acc);
                }
            }
        }
        for (r, row) in a.iter().enumerate() {
            for (v, acc) in row.iter().enumerate() {
                _mm256_storeu_ps(op.add((k0 + r) * ps + o + 8 * v), *acc);
            }
        }
    }

    /// `dcol[K×PS] = w[co×K]ᵀ·dY[co×P]` for one image (tail columns unspecified): blocks of
    /// 24 pixels (then single vectors, the last one masked), each in row groups of three:
    /// a 3×3-vector register tile ([`dcol_tile`]: 9 accumulators, 3 dY vectors and a
    /// broadcast weight fit the 16 ymm registers; a 3×4 tile spilled and ran 1.6× slower).
    /// The block's dY (co × 96 B) comes from memory for the first row group and from L1 for
    /// the others. The channels run in passes of at most [`DCOL_CHANNEL_GROUP`]; the sum over
    /// channels runs in order, from zero, in registers within a pass.
    ///
    /// `dy` runs on past this image: the b-th 24-pixel block (counted over the passes) also
    /// prefetches one line of the b-th 4 KB page of the next image's dY, which is most often
    /// this thread's next. Those pages' walks then happen one at a time over this image, not
    /// all together when the next image starts (the forward's `PAGE_AHEAD`, for loads).
    /// 28×28: 32 blocks a pass for 25 (student) or 49 (teacher, two passes) pages. Measured
    /// after a 2048³ GEMM or teacher conv2's weight grad: 2–4 % faster; the same back to back.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dcol_image_tiled(
        k: usize,
        w: &[f32],
        dy: &[f32],
        p: usize,
        co: usize,
        dcol: &mut [f32],
        ps: usize,
    ) {
        debug_assert!(dcol.len() >= (k - 1) * ps + row_stride(p) && w.len() >= co * k);
        debug_assert!(dy.len() >= co * p);
        let (wp, op) = (w.as_ptr(), dcol.as_mut_ptr());
        let gsize = co.div_ceil(co.div_ceil(DCOL_CHANNEL_GROUP));
        for c0 in (0..co).step_by(gsize) {
            let ch = (c0, (c0 + gsize).min(co));
            macro_rules! groups {
                ($nv:literal, $o:expr, $last:expr) => {
                    for k0 in (0..k).step_by(3) {
                        let pf = k0 == 0;
                        match k - k0 {
                            1 => dcol_tile::<1, $nv>(wp, k, k0, dy, p, ch, $o, $last, pf, op, ps),
                            2 => dcol_tile::<2, $nv>(wp, k, k0, dy, p, ch, $o, $last, pf, op, ps),
                            _ => dcol_tile::<3, $nv>(wp, k, k0, dy, p, ch, $o, $last, pf, op, ps),
                        }
                    }
                };
            }
            let mut o = 0;
            while o + 24 <= p {
                // Block b touches page b of the next image's dY (see the doc above).
                let b = (c0 / gsize) * (p / 24) + o / 24;
                let at = co * p + b * 1024;
                if b * 1024 < co * p && at < dy.len() {
                    _mm_prefetch::<_MM_HINT_T0>(dy.as_ptr().add(at) as *const i8);
                }
                groups!(3, o, None);
                o += 24;
            }
            while o + 8 <= p {
                groups!(1, o, None);
                o += 8;
            }
            if o < p {
                groups!(1, o, Some(mask::first(p - o)));
            }
        }
    }

    /// Folds one input channel's `kh·kw` rows of `dcol` (rows `ps` floats apart) into its
    /// plane `dx` (overwritten), for stride 1: `dx[y, x] = Σ_(i,j) dcol_ij[y+ph−i, x+pw−j]` over
    /// the taps that land inside the output. Per 8 pixels of an input row the taps are summed
    /// in registers (masked loads where a tap's shifted window leaves the output row) and
    /// stored once, instead of `kh·kw` scalar read-modify-write passes over the plane. The
    /// sum runs over the taps in (i, j) order, the same as [`col2im_channel`], whose zeroed
    /// start makes its first add exact, so both give the same bits.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fold_stride1(g: &Geo, dcol: &[f32], ps: usize, dx: &mut [f32]) {
        debug_assert!(g.sh == 1 && g.sw == 1);
        debug_assert!(dcol.len() >= g.kh * g.kw * ps && dx.len() >= g.h * g.w);
        let (ow, w) = (g.ow as isize, g.w as isize);
        let dp = dcol.as_ptr();
        for x0 in (0..g.w).step_by(8) {
            let xi = x0 as isize;
            // Per tap column j, lane l reads output column ox = x0 + l + pw − j, kept where
            // 0 ≤ ox < ow and the pixel x0 + l < w (kw ≤ K ≤ THIN_MAX_K masks).
            let mut masks = [_mm256_setzero_si256(); THIN_MAX_K];
            for (j, m) in masks.iter_mut().enumerate().take(g.kw) {
                let shift = g.pw as isize - j as isize;
                *m = mask::window(-shift - xi, (ow - shift - xi).min(w - xi));
            }
            let store_mask = mask::window(0, w - xi);
            for y in 0..g.h {
                let mut acc = _mm256_setzero_ps();
                for i in 0..g.kh {
                    // Output row oy = y + ph − i, if inside the output.
                    let oy = (y + g.ph) as isize - i as isize;
                    if oy < 0 || oy >= g.oh as isize {
                        continue;
                    }
                    for (j, &m) in masks.iter().enumerate().take(g.kw) {
                        let row = dp.add((i * g.kw + j) * ps);
                        // Masked-off lanes are not read, so the (possibly out-of-row) start
                        // address is only formed, never dereferenced there.
                        let src = row.wrapping_offset(oy * ow + xi + g.pw as isize - j as isize);
                        acc = _mm256_add_ps(acc, _mm256_maskload_ps(src, m));
                    }
                }
                let dst = dx.as_mut_ptr().add(y * g.w + x0);
                if x0 + 8 <= g.w {
                    _mm256_storeu_ps(dst, acc);
                } else {
                    _mm256_maskstore_ps(dst, store_mask, acc);
                }
            }
        }
    }

    /// The fold of a stride-1 "same" convolution (`oh = h`, `ow = w`), on `dcol` rows kept
    /// with zero margins: `dx[q] = Σ_(i,j) dcol_ij[q + (ph−i)·ow + (pw−j)]` over flattened pixels
    /// `q`, each tap a fixed shift, 8 pixels per plain load. Reads that leave the output's
    /// rows land in the zeroed margins (above and below), and reads that wrap into a
    /// neighbouring row (left and right edges) land on columns that no input pixel uses
    /// (`clear_unused` zeroes them), so there are no masks and no bounds.
    struct FlatFold {
        /// Floats before each row's data (≥ ph·ow + pw, a multiple of 8).
        front: usize,
        /// Row stride: front + P + back margin (≥ ph·ow + pw + 8).
        rs: usize,
    }

    impl FlatFold {
        fn new(g: &Geo) -> FlatFold {
            let reach = g.ph * g.ow + g.pw;
            let front = row_stride(reach);
            FlatFold {
                front,
                rs: row_stride(front + g.p() + reach + 8),
            }
        }

        /// Zeroes the margins of one channel's `kh·kw` rows and, per tap column `j`, the
        /// output columns it never reads from (`ox < pw − j` or `ox ≥ w + pw − j`).
        fn clear_unused(&self, g: &Geo, rows: &mut [f32]) {
            let p = g.p();
            for (t, row) in rows.chunks_exact_mut(self.rs).enumerate() {
                row[..self.front].fill(0.0);
                row[self.front + p..].fill(0.0);
                let j = t % g.kw;
                let lo = g.pw.saturating_sub(j);
                let hi = (g.w + g.pw).saturating_sub(j).min(g.ow);
                let data = &mut row[self.front..self.front + p];
                for r in data.chunks_exact_mut(g.ow) {
                    r[..lo].fill(0.0);
                    r[hi..].fill(0.0);
                }
            }
        }

        /// `dx[P] = Σ_taps shifted rows`, taps in (i, j) order.
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fold(&self, g: &Geo, rows: &[f32], dx: &mut [f32]) {
            let p = g.p();
            debug_assert!(rows.len() >= g.kh * g.kw * self.rs && dx.len() >= p);
            let mut start = [0usize; THIN_MAX_K];
            for (t, s) in start.iter_mut().enumerate().take(g.kh * g.kw) {
                let (i, j) = (t / g.kw, t % g.kw);
                // front + (ph − i)·ow + (pw − j) ≥ 0 since front ≥ ph·ow + pw.
                *s = t * self.rs + self.front + (g.ph * g.ow + g.pw) - (i * g.ow + j);
            }
            let taps = &start[..g.kh * g.kw];
            let rp = rows.as_ptr();
            let full = p / 8;
            for v in 0..full {
                let mut acc = _mm256_setzero_ps();
                for &s in taps {
                    acc = _mm256_add_ps(acc, _mm256_loadu_ps(rp.add(s + 8 * v)));
                }
                _mm256_storeu_ps(dx.as_mut_ptr().add(8 * v), acc);
            }
            if p % 8 > 0 {
                let mut acc = _mm256_setzero_ps();
                for &s in taps {
                    acc = _mm256_add_ps(acc, _mm256_loadu_ps(rp.add(s + 8 * full)));
                }
                _mm256_maskstore_ps(dx.as_mut_ptr().add(8 * full), mask::first(p % 8), acc);
            }
        }
    }

    macro_rules! by_k {
        ($k:expr, $f:ident($($arg:expr),*)) => {
            match $k {
                1 => $f::<1>($($arg),*),
                2 => $f::<2>($($arg),*),
                3 => $f::<3>($($arg),*),
                4 => $f::<4>($($arg),*),
                5 => $f::<5>($($arg),*),
                6 => $f::<6>($($arg),*),
                7 => $f::<7>($($arg),*),
                8 => $f::<8>($($arg),*),
                9 => $f::<9>($($arg),*),
                10 => $f::<10>($($arg),*),
                11 => $f::<11>($($arg),*),
                12 => $f::<12>($($arg),*),
                _ => unreachable!("thin conv kernel: K out of range"),
            }
        };
    }

    /// Forward. Caller has checked AVX2+FMA and `K ≤ THIN_MAX_K`.
    pub(super) fn forward(g: &Geo, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let (k, p) = (g.k(), g.p());
        let lay = ColLayout::new(g);
        let nt = y.len() * 4 >= STREAM_MIN_BYTES;
        y.par_chunks_mut(g.out_image())
            .zip(x.par_chunks(g.in_image()))
            .enumerate()
            .for_each(|(n, (yn, xn))| {
                prefetch_next_input(g, x, n);
                with_scratch(lay.len, |col| {
                    lay.unfold(g, xn, col);
                    // SAFETY: AVX2+FMA checked by the caller; lengths as asserted above.
                    unsafe { by_k!(k, fwd_image(col, &lay.offs, p, w, bias, yn, g.co, nt)) }
                })
            });
        if nt {
            // SAFETY: AVX2 implies SSE; orders the streaming stores before any later access.
            unsafe { _mm_sfence() };
        }
    }

    /// Input gradient (dx overwritten).
    pub(super) fn backward_input(g: &Geo, w: &[f32], dy: &[f32], dx: &mut [f32]) {
        let (k, p) = (g.k(), g.p());
        if g.sh == 1 && g.sw == 1 && g.oh == g.h && g.ow == g.w {
            let fl = FlatFold::new(g);
            dx.par_chunks_mut(g.in_image())
                .enumerate()
                .for_each(|(n, dxn)| {
                    let dyn_ = &dy[n * g.out_image()..];
                    with_scratch(k * fl.rs, |dcol| {
                        // SAFETY: AVX2+FMA checked by the caller; dcol holds k rows of rs.
                        unsafe {
                            dcol_image_tiled(k, w, dyn_, p, g.co, &mut dcol[fl.front..], fl.rs)
                        }
                        let per = g.kh * g.kw * fl.rs;
                        for (d, r) in dxn.chunks_exact_mut(p).zip(dcol.chunks_exact_mut(per)) {
                            fl.clear_unused(g, r);
                            // SAFETY: AVX2+FMA checked by the caller; r holds kh·kw rows.
                            unsafe { fl.fold(g, r, d) }
                        }
                    })
                });
            return;
        }
        let ps = row_stride(p);
        let per = g.kh * g.kw * ps;
        dx.par_chunks_mut(g.in_image())
            .enumerate()
            .for_each(|(n, dxn)| {
                // Image n's dY and everything after it (read only for prefetching).
                let dyn_ = &dy[n * g.out_image()..];
                with_scratch(k * ps, |dcol| {
                    // SAFETY: AVX2+FMA checked by the caller; lengths as asserted above.
                    unsafe { dcol_image_tiled(k, w, dyn_, p, g.co, dcol, ps) }
                    for (d, r) in dxn.chunks_exact_mut(g.h * g.w).zip(dcol.chunks_exact(per)) {
                        if g.sh == 1 && g.sw == 1 {
                            // SAFETY: AVX2+FMA checked by the caller; r holds kh·kw rows.
                            unsafe { fold_stride1(g, r, ps, d) }
                        } else {
                            col2im_channel(g, r, d, ps);
                        }
                    }
                })
            });
    }

    /// Weight gradient (dw overwritten) over the fixed chunk partition `chunk_images`.
    pub(super) fn backward_weight(
        g: &Geo,
        x: &[f32],
        dy: &[f32],
        dw: &mut [f32],
        chunks: usize,
        chunk_images: impl Fn(usize) -> std::ops::Range<usize> + Sync,
    ) {
        let (k, p) = (g.k(), g.p());
        let lay = ColLayout::new(g);
        let wlen = g.co * k;
        // Per chunk: co×K×8 lane sums, reduced to co×K in a fixed order.
        let mut partials = vec![0.0f32; chunks * wlen];
        partials
            .par_chunks_mut(wlen)
            .enumerate()
            .for_each(|(ch, out)| {
                let mut acc = vec![0.0f32; wlen * 8];
                for n in chunk_images(ch) {
                    let xn = &x[n * g.in_image()..(n + 1) * g.in_image()];
                    // Image n's dY and everything after it (read only for prefetching).
                    let dyn_ = &dy[n * g.out_image()..];
                    if n + 1 < chunk_images(ch).end {
                        prefetch_next_input(g, x, n);
                    }
                    with_scratch(lay.len, |col| {
                        lay.unfold(g, xn, col);
                        // SAFETY: AVX2+FMA checked by the caller; lengths as asserted above.
                        unsafe { by_k!(k, wgrad_image(col, &lay.offs, p, dyn_, &mut acc, g.co)) }
                    });
                }
                for (o, lanes) in out.iter_mut().zip(acc.chunks_exact(8)) {
                    let s4 = [
                        lanes[0] + lanes[4],
                        lanes[1] + lanes[5],
                        lanes[2] + lanes[6],
                        lanes[3] + lanes[7],
                    ];
                    *o = (s4[0] + s4[2]) + (s4[1] + s4[3]);
                }
            });
        dw.copy_from_slice(&partials[..wlen]);
        for part in partials.chunks_exact(wlen).skip(1) {
            for (d, s) in dw.iter_mut().zip(part) {
                *d += *s;
            }
        }
    }
}

/// Largest reduction length `K = in·kh·kw` served by the direct thin-K kernels (AVX2 only;
/// other levels, and larger K, take im2col + GEMM).
pub const THIN_MAX_K: usize = 12;

/// Whether `level` runs the direct thin-K kernels for this shape (the choice depends on the
/// shape and the SIMD level only, never on the thread count).
pub fn uses_thin_kernels(level: SimdLevel, s: &Conv2dShape) -> bool {
    let k = s.in_channels * s.kernel_h * s.kernel_w;
    cfg!(target_arch = "x86_64")
        && level == SimdLevel::Avx2Fma
        && simd::detect() == SimdLevel::Avx2Fma
        && (1..=THIN_MAX_K).contains(&k)
}
