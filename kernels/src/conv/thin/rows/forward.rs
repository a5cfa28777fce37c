//! The thin forward on the in-order rows of `mod.rs`: `y[co×P] = bias + w[co×K]·col` per
//! image, for output rows of 17 to 32 pixels.
//!
//! # Algorithm
//!
//! Per image (one task each), per output channel (its K weights and bias in registers), two
//! pairs of conv rows at a time: eight FMA chains — each row as two 16-float halves — over
//! the taps in order from the bias, the thin forward's sums, bit for bit; for one input
//! channel and a 3×3 kernel each vector of a padded input row is loaded once for the three
//! conv rows it feeds (`Taps::row_pairs`). All loads are aligned and none straddles two rows
//! (the flat layout of the other thin forward loads at offsets of `ow` floats, most of them
//! split across two cache lines). Each row is stored as its first 16 floats and the rest.
//!
//! # What bounds it
//!
//! Writing y, as for the other thin forwards: 2·K flops per 4-byte output. Outputs of
//! [`STREAM_MIN_BYTES`] and more go out with streaming stores where every row starts on a
//! 16-byte boundary (`ow` a multiple of 4), and each plane first touches the output's pages
//! [`PAGE_AHEAD`] floats on, so their page walks start before the stores reach them.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{with_unfolded, ChannelWeights, Columns, Rows32, Taps};
use crate::conv::thin::prefetch_next_input;
use crate::conv::Geo;

/// Outputs from this size on are written with streaming stores.
const STREAM_MIN_BYTES: usize = 8 << 20;

/// How far ahead of the plane being written the forward touches the output's pages (2 pages
/// of 4 KB, in floats).
const PAGE_AHEAD: usize = 2048;

/// Row pairs per step (eight FMA chains).
const STEP_PAIRS: usize = 2;

/// Forward (the caller has checked that the CPU runs AVX-512 and [`super::fits`]).
pub(in crate::conv::thin) fn forward(
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let lay = Rows32::new(g, Columns::Natural);
    let nt = y.len() * 4 >= STREAM_MIN_BYTES && g.ow.is_multiple_of(4);
    y.par_chunks_mut(g.out_image())
        .zip(x.par_chunks(g.in_image()))
        .enumerate()
        .for_each(|(n, (yn, xn))| {
            prefetch_next_input(g, x, n);
            with_unfolded(&lay, g, xn, |col| {
                // SAFETY: the caller checked the level; col holds every tap's rows up to
                // row oh + kh − 1 ≤ hp (the spare zero row), w holds co·K and yn co·P.
                unsafe { by_k!(g.k(), image(col, &lay, g, w, bias, yn, nt)) }
            });
            if nt {
                // SAFETY: SSE is part of x86-64. Orders this thread's streaming stores
                // before whatever it does next (the join that hands y back).
                unsafe { _mm_sfence() };
            }
        });
}

/// One image: `y[co×P]` from the unfolded `col`; `nt`: streaming stores where a plane starts
/// on a 16-byte boundary.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn image<const K: usize>(
    col: &[f32],
    lay: &Rows32,
    g: &Geo,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    nt: bool,
) {
    debug_assert!(w.len() >= g.co * K && y.len() >= g.co * g.p());
    let taps = Taps::<K>::new(lay, g);
    let pairs = g.oh.div_ceil(2);
    let p = g.p();
    for c in 0..g.co {
        let cw = ChannelWeights::<K>::of(w, bias, c);
        let yc = y.as_mut_ptr().add(c * p);
        // The pages PAGE_AHEAD on (past the end of y for the last planes: a prefetch never
        // faults, and the pointer is never dereferenced).
        for page in (0..p).step_by(1024) {
            _mm_prefetch::<_MM_HINT_T0>(yc.wrapping_add(PAGE_AHEAD + page).cast());
        }
        let out = RowStore {
            plane: yc,
            oh: g.oh,
            ow: g.ow,
            stream: nt && (yc as usize).is_multiple_of(16),
        };
        let mut r = 0;
        while r + STEP_PAIRS <= pairs {
            out.pairs(r, taps.row_pairs::<STEP_PAIRS>(col, &cw, r));
            r += STEP_PAIRS;
        }
        if r < pairs {
            out.pairs(r, taps.row_pairs::<1>(col, &cw, r));
        }
    }
}

/// Where one output plane's rows go.
#[derive(Clone, Copy)]
struct RowStore {
    plane: *mut f32,
    oh: usize,
    ow: usize,
    /// Streaming stores (the plane starts on a 16-byte boundary and `ow % 4 == 0`).
    stream: bool,
}

impl RowStore {
    /// Stores conv rows `2r` and `2r + 1` for `r` in `r0..r0 + R` (a row past `oh` is
    /// dropped).
    #[inline(always)]
    unsafe fn pairs<const R: usize>(self, r0: usize, a: [[__m512; 4]; R]) {
        for (q, rows) in a.iter().enumerate() {
            for (half, row) in [2 * (r0 + q), 2 * (r0 + q) + 1].into_iter().enumerate() {
                if row < self.oh {
                    self.row(row, rows[2 * half], rows[2 * half + 1]);
                }
            }
        }
    }

    /// Stores row `row`: `first` (columns 0–15), then the `ow − 16` columns of `second`.
    #[inline(always)]
    unsafe fn row(self, row: usize, first: __m512, second: __m512) {
        let dst = self.plane.add(row * self.ow);
        let rest = self.ow - 16;
        if self.stream {
            // Four floats at a time: 16-byte streaming stores need only 16-byte alignment.
            _mm_stream_ps(dst, _mm512_castps512_ps128(first));
            _mm_stream_ps(dst.add(4), _mm512_extractf32x4_ps::<1>(first));
            _mm_stream_ps(dst.add(8), _mm512_extractf32x4_ps::<2>(first));
            _mm_stream_ps(dst.add(12), _mm512_extractf32x4_ps::<3>(first));
            let quarters = [
                _mm512_castps512_ps128(second),
                _mm512_extractf32x4_ps::<1>(second),
                _mm512_extractf32x4_ps::<2>(second),
                _mm512_extractf32x4_ps::<3>(second),
            ];
            for (i, v) in quarters.into_iter().take(rest / 4).enumerate() {
                _mm_stream_ps(dst.add(16 + 4 * i), v);
            }
        } else {
            _mm512_storeu_ps(dst, first);
            _mm512_mask_storeu_ps(dst.add(16), ((1u32 << rest) - 1) as __mmask16, second);
        }
    }
}
