//! Direct kernels for a thin reduction (`K = in·kh·kw ≤` [`THIN_MAX_K`]; conv1 of the teacher
//! and the student has K = 9), any kernel size, stride and padding, at three SIMD levels:
//! AVX2+FMA (`forward.rs`, `input_grad.rs`, `weight_grad.rs`: the algorithm below), and
//! AVX-512 and NEON (`lanes/`: the same algorithm written once over a vector type, with the
//! register tiles their 32 vector registers allow). At AVX-512, stride-1 convolutions with
//! output rows 17 to 32 wide (conv1 of both presets) run their forward on rows padded to 32
//! floats instead (`rows/`: aligned loads, two rows at a time). [`forward()`],
//! [`backward_input`] and [`backward_weight`] pick the path by level and shape.
//!
//! # Algorithm
//!
//! Per image the input is unfolded into a column matrix kept in L1 ([`ColLayout`]: tap `k`'s
//! row at `offs[k]`, tails zeroed; for stride 1 only `ci·kw` shifted rows are built and the
//! `kh` taps of a column share one: 10 KB for 28×28 with 3×3), then:
//!
//! - forward (`forward.rs`): per output channel its K weights (and bias) sit in registers and
//!   `col` is streamed 8 pixels at a time, a few vectors per step: `y = bias + Σ_k w_k·col_k`;
//! - weight grad (`weight_grad.rs`): per output channel K vector accumulators run over all
//!   pixels of all images of a batch chunk (the fixed partition `BatchChunks`; channels in
//!   pairs that share each `col` load, taps in two passes), then lanes, then chunks, are
//!   summed in a fixed order;
//! - input grad (`input_grad.rs`): `dcol = Wᵀ·dY` on a 3-tap × 24-pixel register tile over
//!   the output channels in order (in passes of at most 32 channels), then `dcol` is folded
//!   into dx in a fixed order (stride 1: 8 pixels of a row at a time, the taps summed in
//!   registers; a stride-1 "same" convolution: whole shifted rows over zero margins, no
//!   masks; the `lanes/` kernels fold other strides with the scalar `col2im_channel`).
//!   The input grad needs no unfold of x.
//!
//! At AVX-512 and NEON the forward and the weight gradient also run fused with the 2×2
//! max-pool (and the ReLU) after the conv: the forward (`lanes/pooled.rs`) is the same
//! per-image kernel with the full-size output of one image in a scratch instead of in memory;
//! the backward (`lanes/pooled_grad.rs`) works at the pooled resolution, each pooled gradient
//! multiplied with the input of its window's arg-max pixel, and builds no full-size gradient.
//! For rows 17 to 32 wide the AVX-512 forward pools in registers (`rows/pooled.rs`), with
//! no full-size scratch at all.
//!
//! Images run in parallel, one per task; every element sees the same operations whatever
//! the thread count.
//!
//! # What bounds it
//!
//! Memory. Each output element costs 2·K = 18 flops against one 4-byte store (forward) or
//! load (both backward kernels): 4.5 flop/byte. At batch 128, y and dY are 128·64·784·4 B =
//! 25.7 MB each for the teacher (12.8 MB for the student): under the 32 MB L3, but not next
//! to everything else a training step touches, so they stream from and to DRAM, and the
//! memory floor lies above the flop floor in all three kernels. Hence, at every level (NEON
//! has no streaming store: its forward writes y with plain stores):
//!
//! - the forward writes y with streaming stores (outputs ≥ 8 MB), which skips the
//!   read-for-ownership, and starts the page walks of its output two pages ahead of its
//!   stores (`PAGE_AHEAD`);
//! - the backward kernels software-prefetch dY: every plane a pass reads, some planes ahead,
//!   in the weight grad (across image boundaries; 8 planes at AVX2, 2 — the next pair — in
//!   `lanes/`), and 64 pixels
//!   ahead in every plane in the input grad, which reads all co planes side by side — more
//!   streams than the hardware prefetchers follow;
//! - each image task prefetches the next image's input ([`prefetch_next_input`]).

use super::unfold::{copy_runs, im2col_channel, with_padded_plane, PADDED_MAX};
use super::{BatchChunks, Geo, THIN_MAX_K};
use crate::simd::SimdLevel;

/// Instantiates `$f::<K>` for the run-time K (1 ..= [`THIN_MAX_K`]), so the tap loops unroll.
#[cfg(target_arch = "x86_64")]
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

#[cfg(target_arch = "x86_64")]
mod forward;
#[cfg(target_arch = "x86_64")]
mod input_grad;
mod lanes;
#[cfg(target_arch = "x86_64")]
mod rows;
#[cfg(target_arch = "x86_64")]
mod weight_grad;

/// The thin forward at `level` (the caller has checked [`super::uses_thin_kernels`]).
pub(super) fn forward(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma => forward::forward(g, x, w, bias, y),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if rows::fits(g) => rows::forward(g, x, w, bias, y),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => lanes::forward::<lanes::Avx512>(g, x, w, bias, y),
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => lanes::forward::<lanes::Neon>(g, x, w, bias, y),
        _ => unreachable!("thin conv kernels: no {} path on this target", level.name()),
    }
}

/// The thin input gradient at `level` (the caller has checked [`super::uses_thin_kernels`]).
pub(super) fn backward_input(level: SimdLevel, g: &Geo, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma => input_grad::backward_input(g, w, dy, dx),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => lanes::backward_input::<lanes::Avx512>(g, w, dy, dx),
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => lanes::backward_input::<lanes::Neon>(g, w, dy, dx),
        _ => unreachable!("thin conv kernels: no {} path on this target", level.name()),
    }
}

/// The thin weight gradient at `level` (the caller has checked [`super::uses_thin_kernels`]).
pub(super) fn backward_weight(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    parts: BatchChunks,
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma => weight_grad::backward_weight(g, x, dy, dw, parts),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => lanes::backward_weight::<lanes::Avx512>(g, x, dy, dw, parts),
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => lanes::backward_weight::<lanes::Neon>(g, x, dy, dw, parts),
        _ => unreachable!("thin conv kernels: no {} path on this target", level.name()),
    }
}

/// Whether [`forward_pool`] and [`backward_params_pool`] run at `level` (the levels with the
/// [`lanes`] kernels).
pub(super) fn pools_at(level: SimdLevel) -> bool {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => true,
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => true,
        _ => false,
    }
}

/// The thin forward and the 2×2/stride-2 max-pool after it, fused, then a ReLU if `relu`
/// (`lanes/pooled.rs`; the caller has checked [`super::uses_thin_kernels`] and [`pools_at`]).
pub(super) fn forward_pool(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    argmax: &mut [u32],
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if rows::fits_pooled(g) => {
            rows::forward_pool(g, x, w, bias, relu, y, argmax)
        }
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => {
            lanes::forward_pool::<lanes::Avx512>(level, g, x, w, bias, relu, y, argmax)
        }
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => {
            lanes::forward_pool::<lanes::Neon>(level, g, x, w, bias, relu, y, argmax)
        }
        _ => unreachable!("thin conv + pool: no {} path", level.name()),
    }
}

/// The weight and bias gradients of [`forward_pool`] from the gradient of its output (the
/// caller has checked as for [`forward_pool`]).
pub(super) fn backward_params_pool(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    argmax: &[u32],
    relu_y: Option<&[f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    parts: BatchChunks,
) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => {
            lanes::backward_params_pool::<lanes::Avx512>(g, x, dy, argmax, relu_y, dw, db, parts)
        }
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => {
            lanes::backward_params_pool::<lanes::Neon>(g, x, dy, argmax, relu_y, dw, db, parts)
        }
        _ => unreachable!("thin conv + pool: no {} path", level.name()),
    }
}

/// Row stride of the padded column matrix.
fn row_stride(p: usize) -> usize {
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
            prefetch(line);
        }
    }
}

/// A hint to bring the cache line at `p` into L1 (`prefetcht0` / `prfm pldl1keep`); it
/// never faults, whatever the address.
#[inline(always)]
pub(super) fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetching is a hint; SSE is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: a prefetch reads nothing architecturally and never faults.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) p, options(nostack, readonly, preserves_flags))
    };
}

/// The fold of a stride-1 "same" convolution (`oh = h`, `ow = w`), on `dcol` rows kept
/// with zero margins: `dx[q] = Σ_(i,j) dcol_ij[q + (ph−i)·ow + (pw−j)]` over flattened pixels
/// `q`, each tap a fixed shift, a vector of pixels per plain load. Reads that leave the output's
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
    /// Where tap `(i, j)`'s shifted row starts (`t = i·kw + j`, in one channel's rows):
    /// `t·rs + front + (ph − i)·ow + (pw − j)`, never negative since `front ≥ ph·ow + pw`.
    fn tap_starts(&self, g: &Geo) -> [usize; THIN_MAX_K] {
        let mut start = [0usize; THIN_MAX_K];
        for (t, s) in start.iter_mut().enumerate().take(g.kh * g.kw) {
            let (i, j) = (t / g.kw, t % g.kw);
            *s = t * self.rs + self.front + (g.ph * g.ow + g.pw) - (i * g.ow + j);
        }
        start
    }

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
}
