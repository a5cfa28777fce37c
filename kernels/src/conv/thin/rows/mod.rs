//! Thin kernels on image rows padded to 32 floats, at AVX-512, for stride-1 convolutions
//! whose output rows are 17 to 32 pixels wide (conv1 of both presets: 28×28).
//!
//! # Layout
//!
//! Per image the input is unfolded into shifted rows as the thin kernels do (`ColLayout`: for
//! stride 1, tap `(c, i, j)` is the shifted row `(c, j)` moved on by `i` rows), except that
//! each row of the image takes [`ROW`] = 32 floats, zeros past `ow`, and one zero row follows
//! the last. Output row `r` of tap `(c, i, j)` is then two aligned 16-float loads at
//! `(c·kw + j)·(hp + 1)·32 + (r + i)·32`, and no load straddles two rows. The columns of a
//! row come in one of two orders ([`Columns`]):
//!
//! - in order, for the plain forward (`forward.rs`);
//! - even columns first, then odd ones, for the forward fused with the 2×2 max-pool
//!   (`pooled.rs`): the four vectors of conv rows `2r` and `2r + 1` are then the four pixels
//!   of sixteen pool windows, lane by lane, and the pool needs no shuffle.
//!
//! Both compute a channel two pairs of conv rows at a time ([`Taps::row_pairs`]; for one
//! input channel and 3×3, each padded input row's vectors loaded once for the three conv
//! rows they feed), each element a chain of FMAs from the bias in tap order: the other thin
//! forwards' bits. The fused op's backward stays with the [`Lanes`](super::lanes) kernels: a
//! weight gradient on this layout sums in other lanes, so the fused op and the conv then the
//! pool would no longer give the same bits, and it measured no faster.

use std::arch::x86_64::*;

use crate::conv::{with_scratch, Geo, THIN_MAX_K};

mod forward;
mod pooled;

pub(super) use forward::forward;
pub(super) use pooled::forward_pool;

/// Floats per row of the unfolded image: two zmm vectors.
pub(super) const ROW: usize = 32;

/// Whether [`forward()`] runs `g` (a thin conv, which the caller has checked): stride 1 and
/// output rows of 17 to 32 pixels.
pub(in crate::conv) fn fits(g: &Geo) -> bool {
    g.sh == 1 && g.sw == 1 && g.ow > 16 && g.ow <= ROW
}

/// Whether [`forward_pool`] runs `g`: [`fits`], with at least one pooled row.
pub(in crate::conv) fn fits_pooled(g: &Geo) -> bool {
    fits(g) && g.oh >= 2
}

/// How a row's 32 floats hold its output columns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Columns {
    /// Even columns in the first half, odd ones in the second: the 2×2 pool's windows lane by
    /// lane (`pooled.rs`).
    EvenOdd,
    /// Columns in order (`forward.rs`).
    Natural,
}

/// The unfolded image: `ci·kw` shifted rows of `hp + 1` rows of [`ROW`] floats each (the
/// last one zero, read by the second row of a pair past an odd `oh`).
pub(super) struct Rows32 {
    /// Floats of one shifted row (`(hp + 1)·ROW`).
    plane: usize,
    /// Where tap `k`'s output row 0 starts.
    offs: [usize; THIN_MAX_K],
    len: usize,
    columns: Columns,
}

impl Rows32 {
    pub(super) fn new(g: &Geo, columns: Columns) -> Rows32 {
        let plane = (g.h + 2 * g.ph + 1) * ROW;
        let mut offs = [0; THIN_MAX_K];
        for (t, o) in offs.iter_mut().enumerate().take(g.k()) {
            let (c, i, j) = (t / (g.kh * g.kw), t / g.kw % g.kh, t % g.kw);
            *o = (c * g.kw + j) * plane + i * ROW;
        }
        Rows32 {
            plane,
            offs,
            len: g.ci * g.kw * plane,
            columns,
        }
    }

    /// Unfolds one image into `col[..self.len]`: row `R` of shifted row `(c, j)` holds the
    /// zero-padded plane's columns `j .. j + ow` of its row `R` (input row `R − ph`, columns
    /// from `j − pw`), in [`Columns`] order, zero past the row's `ow` outputs; the spare last
    /// row is zero. Read from x through lane masks, without a padded copy of the plane.
    fn unfold(&self, g: &Geo, x: &[f32], col: &mut [f32]) {
        let per = g.kw * self.plane;
        for (rows, plane) in col.chunks_exact_mut(per).zip(x.chunks_exact(g.h * g.w)) {
            for (j, shifted) in rows.chunks_exact_mut(self.plane).enumerate() {
                // The outputs whose input column o + j − pw lies inside the row.
                let first = g.pw.saturating_sub(j).min(g.ow);
                let end = (g.w + g.pw).saturating_sub(j).clamp(first, g.ow);
                let inside = (((1u64 << end) - 1) & !((1u64 << first) - 1)) as u32;
                for (r, row) in shifted.chunks_exact_mut(ROW).enumerate() {
                    match r.checked_sub(g.ph).filter(|&iy| iy < g.h) {
                        // SAFETY: the caller checked the level; the lanes in `inside` read
                        // columns 0..w of input row iy, and row holds ROW floats.
                        Some(iy) => unsafe {
                            let start = plane.as_ptr().add(iy * g.w).wrapping_add(j);
                            place_row(start.wrapping_sub(g.pw), inside, row, self.columns)
                        },
                        None => row.fill(0.0),
                    }
                }
            }
        }
    }
}

/// `row[..ROW]` = the 32 floats from `src` whose lanes are set in `inside` (only those are
/// read), zeros in the others, in `columns` order: in order, or the even lanes in `row[..16]`
/// and the odd ones in `row[16..]`.
#[target_feature(enable = "avx512f")]
unsafe fn place_row(src: *const f32, inside: u32, row: &mut [f32], columns: Columns) {
    debug_assert!(row.len() >= ROW);
    let lo = _mm512_maskz_loadu_ps(inside as __mmask16, src);
    let hi = _mm512_maskz_loadu_ps((inside >> 16) as __mmask16, src.wrapping_add(16));
    let (first, second) = match columns {
        Columns::Natural => (lo, hi),
        Columns::EvenOdd => {
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(lo, even, hi),
                _mm512_permutex2var_ps(lo, odd, hi),
            )
        }
    };
    _mm512_storeu_ps(row.as_mut_ptr(), first);
    _mm512_storeu_ps(row.as_mut_ptr().add(16), second);
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

/// One output channel's K weights and bias, each in every lane.
#[derive(Clone, Copy)]
struct ChannelWeights<const K: usize> {
    w: [__m512; K],
    bias: __m512,
}

impl<const K: usize> ChannelWeights<K> {
    /// Channel `c` of `w[co×K]` and `bias` (zero without one).
    #[inline(always)]
    unsafe fn of(w: &[f32], bias: Option<&[f32]>, c: usize) -> Self {
        debug_assert!(w.len() >= (c + 1) * K);
        let mut wk = [_mm512_setzero_ps(); K];
        for (k, v) in wk.iter_mut().enumerate() {
            *v = _mm512_set1_ps(*w.get_unchecked(c * K + k));
        }
        ChannelWeights {
            w: wk,
            bias: _mm512_set1_ps(bias.map_or(0.0, |b| *b.get_unchecked(c))),
        }
    }
}

/// Where each tap's rows start in an unfolded image ([`Rows32::offs`]), and whether the 3×3
/// row reuse applies (one input channel, a 3×3 kernel).
#[derive(Clone, Copy)]
struct Taps<const K: usize> {
    off: [usize; K],
    three_by_three: bool,
}

impl<const K: usize> Taps<K> {
    fn new(lay: &Rows32, g: &Geo) -> Self {
        let mut off = [0usize; K];
        off.copy_from_slice(&lay.offs[..K]);
        Taps {
            off,
            three_by_three: K == 9 && g.ci == 1 && g.kh == 3,
        }
    }

    /// Conv rows `2r` and `2r + 1` for `r` in `r0..r0 + R` of one channel, per pair its four
    /// vectors: row `2r`'s first and second half (even and odd columns, or columns 0–15 and
    /// 16–31), then row `2r + 1`'s; each element a chain of K FMAs from the bias in tap
    /// order ([`conv_rows`], or [`conv_rows_3x3`] where it applies).
    #[inline(always)]
    unsafe fn row_pairs<const R: usize>(
        &self,
        col: &[f32],
        cw: &ChannelWeights<K>,
        r0: usize,
    ) -> [[__m512; 4]; R] {
        if self.three_by_three {
            conv_rows_3x3::<K, R>(col, &self.off, cw, r0)
        } else {
            conv_rows::<K, R>(col, &self.off, cw, r0)
        }
    }
}

/// [`Taps::row_pairs`] in general: per tap, the four vectors of each pair of rows.
#[inline(always)]
unsafe fn conv_rows<const K: usize, const R: usize>(
    col: &[f32],
    off: &[usize; K],
    cw: &ChannelWeights<K>,
    r0: usize,
) -> [[__m512; 4]; R] {
    let cp = col.as_ptr();
    let mut a = [[cw.bias; 4]; R];
    for k in 0..K {
        for (q, acc) in a.iter_mut().enumerate() {
            let t = cp.add(off[k] + 2 * (r0 + q) * ROW);
            acc[0] = _mm512_fmadd_ps(cw.w[k], _mm512_loadu_ps(t), acc[0]);
            acc[1] = _mm512_fmadd_ps(cw.w[k], _mm512_loadu_ps(t.add(16)), acc[1]);
            acc[2] = _mm512_fmadd_ps(cw.w[k], _mm512_loadu_ps(t.add(ROW)), acc[2]);
            acc[3] = _mm512_fmadd_ps(cw.w[k], _mm512_loadu_ps(t.add(ROW + 16)), acc[3]);
        }
    }
    a
}

/// [`Taps::row_pairs`] for one input channel and a 3×3 kernel (K = 9): each vector of a
/// padded input row is loaded once and used by the (up to) three conv rows it is a tap of,
/// half the loads. Each element still runs its taps in order: rows `d` ascending are taps
/// `i = d − ρ` ascending, and `j` ascending within.
#[inline(always)]
unsafe fn conv_rows_3x3<const K: usize, const R: usize>(
    col: &[f32],
    off: &[usize; K],
    cw: &ChannelWeights<K>,
    r0: usize,
) -> [[__m512; 4]; R] {
    debug_assert!(K == 9);
    let cp = col.as_ptr();
    let mut a = [[cw.bias; 4]; R];
    // Padded row 2·r0 + d feeds conv rows 2·r0 + d − i, i = 0, 1, 2.
    for d in 0..2 * R + 2 {
        for j in 0..3 {
            for half in 0..2 {
                let v = _mm512_loadu_ps(cp.add(off[j] + (2 * r0 + d) * ROW + 16 * half));
                for i in 0..3 {
                    if d >= i && d - i < 2 * R {
                        let row = d - i;
                        let acc = &mut a[row / 2][2 * (row % 2) + half];
                        *acc = _mm512_fmadd_ps(cw.w[3 * i + j], v, *acc);
                    }
                }
            }
        }
    }
    a
}
