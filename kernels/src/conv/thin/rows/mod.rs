//! Thin kernels on image rows padded to 32 floats, at AVX-512, for stride-1 convolutions
//! whose output rows are 17 to 32 pixels wide (conv1 of both presets: 28×28).
//!
//! # Layout
//!
//! Per image the input is unfolded into shifted rows as the thin kernels do (`ColLayout`: for
//! stride 1, tap `(c, i, j)` is the shifted row `(c, j)` moved on by `i` rows), except that
//! each row of the image takes [`ROW`] = 32 floats, its even columns first and then its odd
//! ones (zeros past `ow`). Output row `r` of tap `(c, i, j)` is then two aligned 16-float
//! loads at `(c·kw + j)·hp·32 + (r + i)·32`, the row's even and its odd output columns, and
//! the four vectors of conv rows `2r` and `2r + 1` are the four pixels of sixteen 2×2 pool
//! windows, lane by lane: the pool after the conv needs no shuffle.
//!
//! `pooled.rs` runs the conv, the 2×2 max-pool and the ReLU on it as one pass (the forward
//! of `conv2d_max_pool2`). Its backward stays with the [`Lanes`](super::lanes) kernels: a
//! weight gradient on this layout sums in other lanes, so the fused op and the conv then the
//! pool would no longer give the same bits, and it measured no faster.

use std::arch::x86_64::*;

use crate::conv::unfold::{with_padded_plane, PADDED_MAX};
use crate::conv::{with_scratch, Geo, THIN_MAX_K};

mod pooled;

pub(super) use pooled::forward_pool;

/// Floats per row of the unfolded image: two zmm vectors.
pub(super) const ROW: usize = 32;

/// Whether [`forward_pool`] runs `g` (a thin conv, which the caller has checked): stride 1,
/// output rows of 17 to 32 pixels, at least two rows, and a padded plane the unfold keeps on
/// the stack.
pub(in crate::conv) fn fits(g: &Geo) -> bool {
    g.sh == 1
        && g.sw == 1
        && g.ow > 16
        && g.ow <= ROW
        && g.oh >= 2
        && g.w >= 8
        && (g.h + 2 * g.ph) * (g.w + 2 * g.pw) <= PADDED_MAX
}

/// The unfolded image: `ci·kw` shifted rows of `hp` rows of [`ROW`] floats each.
pub(super) struct Rows32 {
    /// Floats of one shifted row (`hp·ROW`).
    pub(super) plane: usize,
    /// Where tap `k`'s output row 0 starts.
    pub(super) offs: [usize; THIN_MAX_K],
    pub(super) len: usize,
}

impl Rows32 {
    pub(super) fn new(g: &Geo) -> Rows32 {
        let plane = (g.h + 2 * g.ph) * ROW;
        let mut offs = [0; THIN_MAX_K];
        for (t, o) in offs.iter_mut().enumerate().take(g.k()) {
            let (c, i, j) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
            *o = (c * g.kw + j) * plane + i * ROW;
        }
        Rows32 {
            plane,
            offs,
            len: g.ci * g.kw * plane,
        }
    }

    /// Unfolds one image into `col[..self.len]`: row `R` of shifted row `(c, j)` holds the
    /// padded plane's columns `j, j + 2, …` of row `R` (the even output columns), then its
    /// columns `j + 1, j + 3, …` (the odd ones), each half zero past the row's `ow` outputs.
    pub(super) fn unfold(&self, g: &Geo, x: &[f32], col: &mut [f32]) {
        let per = g.kw * self.plane;
        for (rows, plane) in col.chunks_exact_mut(per).zip(x.chunks_exact(g.h * g.w)) {
            with_padded_plane(g, plane, |padded, wp| {
                for (j, shifted) in rows.chunks_exact_mut(self.plane).enumerate() {
                    for (row, src) in shifted.chunks_exact_mut(ROW).zip(padded.chunks_exact(wp)) {
                        // SAFETY: the caller checked the level; src holds wp ≥ j + ow floats
                        // and row ROW.
                        unsafe { split_even_odd(&src[j..j + g.ow], row) };
                    }
                }
            });
        }
    }
}

/// `row[..16]` = the even-indexed floats of `src` (17 to 32 of them), `row[16..]` the odd
/// ones, zeros past `src`'s end.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn split_even_odd(src: &[f32], row: &mut [f32]) {
    debug_assert!(src.len() > 16 && src.len() <= ROW && row.len() >= ROW);
    let n = src.len();
    let lo = _mm512_loadu_ps(src.as_ptr());
    let hi = _mm512_maskz_loadu_ps(((1u32 << (n - 16)) - 1) as __mmask16, src.as_ptr().add(16));
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    _mm512_storeu_ps(row.as_mut_ptr(), _mm512_permutex2var_ps(lo, even, hi));
    _mm512_storeu_ps(
        row.as_mut_ptr().add(16),
        _mm512_permutex2var_ps(lo, odd, hi),
    );
}

/// Runs `f` on image `xn` unfolded by `lay` into this thread's scratch, its rows starting on
/// a 64-byte boundary.
fn with_unfolded<R>(lay: &Rows32, g: &Geo, xn: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    // 15 spare floats to reach the boundary.
    with_scratch(lay.len + 15, |buf| {
        let start = buf.as_ptr().align_offset(64).min(15);
        let col = &mut buf[start..start + lay.len];
        lay.unfold(g, xn, col);
        f(col)
    })
}
