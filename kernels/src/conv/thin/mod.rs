//! Direct AVX2+FMA kernels for a thin reduction (`K = in·kh·kw ≤` [`THIN_MAX_K`]; conv1 of
//! the teacher and the student has K = 9), any kernel size, stride and padding.
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
//!   masks). The input grad needs no unfold of x.
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
//! memory floor lies above the flop floor in all three kernels. Hence:
//!
//! - the forward writes y with streaming stores (outputs ≥ 8 MB), which skips the
//!   read-for-ownership, and starts the page walks of its output two pages ahead of its
//!   stores (`PAGE_AHEAD`);
//! - the backward kernels software-prefetch dY: 8 planes ahead in the weight grad (across
//!   image boundaries; one plane ahead is less compute than the DRAM latency), and 64 pixels
//!   ahead in every plane in the input grad, which reads all co planes side by side — more
//!   streams than the hardware prefetchers follow;
//! - each image task prefetches the next image's input ([`prefetch_next_input`]).

use std::arch::x86_64::*;

use super::unfold::{copy_runs, im2col_channel, with_padded_plane, PADDED_MAX};
use super::{Geo, THIN_MAX_K};

/// Instantiates `$f::<K>` for the run-time K (1 ..= [`THIN_MAX_K`]), so the tap loops unroll.
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

mod forward;
mod input_grad;
mod weight_grad;

pub(super) use forward::forward;
pub(super) use input_grad::backward_input;
pub(super) use weight_grad::backward_weight;

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
            // SAFETY: prefetching is a hint; the address is inside x.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((line as *const f32).cast()) };
        }
    }
}
