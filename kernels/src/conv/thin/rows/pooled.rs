//! The thin conv, the 2×2/stride-2 max-pool after it and a ReLU, if asked, as one pass on
//! the even/odd rows of `mod.rs`: nothing full-size is stored, not even to a scratch.
//!
//! # Algorithm
//!
//! Per image (one task each), per output channel (its K weights and bias in registers) and
//! per pooled row: four FMA chains — conv rows `2r` and `2r + 1`, even and odd columns — run
//! over the taps in order from the bias: the thin forward's sums, bit for bit, in other
//! lanes. For one input channel and a 3×3 kernel each vector of a padded input row is loaded
//! once for the three conv rows it feeds. The four vectors are the windows' pixels, picked
//! top-left, top-right, bottom-left, bottom-right by the pool kernel's rule (`v > best` or
//! `v` NaN), so the maximum and its index are the ones `crate::pool` gives; the index is
//! picked among four vectors of window-pixel indices per pooled row, made once per call.
//! The ReLU (`max(0, v)`, which keeps −0 and NaN as `v < 0 → 0` does) follows, then two
//! stores of `ow/2` lanes: the pooled row and its arg-max.
//!
//! # What bounds it
//!
//! The two ports that run 512-bit FMAs also run the compares and blends: per pooled row of a
//! channel 4·K FMAs (36 for 3×3) and about 12 pool operations (compares, blends, the NaN
//! test, the ReLU), three of them a dependent chain. For `ow` = 28 an eighth of the lanes
//! are padding. Memory is the input (3 KB per 28×28 image) and the pooled output and its
//! arg-max, a quarter of the conv's size each.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{fits_pooled, with_unfolded, ChannelWeights, Columns, Rows32, Taps};
use crate::conv::thin::prefetch_next_input;
use crate::conv::Geo;

/// Forward (the caller has checked that the CPU runs AVX-512 and [`fits_pooled`]). y and
/// argmax hold the pooled output, `co` planes of `(oh/2)·(ow/2)` per image; `relu`: rectify
/// y.
#[allow(clippy::too_many_arguments)]
pub(in crate::conv::thin) fn forward_pool(
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    argmax: &mut [u32],
) {
    debug_assert!(fits_pooled(g));
    let pooled = g.co * (g.oh / 2) * (g.ow / 2);
    let lay = Rows32::new(g, Columns::EvenOdd);
    let windows = window_indices(g);
    y.par_chunks_mut(pooled)
        .zip(argmax.par_chunks_mut(pooled))
        .zip(x.par_chunks(g.in_image()))
        .enumerate()
        .for_each(|(n, ((yn, an), xn))| {
            prefetch_next_input(g, x, n);
            with_unfolded(&lay, g, xn, |col| {
                // SAFETY: the caller checked the level; col holds every tap's rows up to
                // row oh − 1 + kh − 1 < hp, w holds co·K, yn and an co pooled planes, and
                // windows one entry per pooled row.
                unsafe { by_k!(g.k(), image(col, &lay, g, w, bias, relu, &windows, yn, an)) }
            });
        });
}

/// One vector of sixteen `u32` lanes, aligned for `_mm512_load_si512`.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct IndexVector([u32; 16]);

/// Per pooled row `r`, the conv-plane index of each lane's window pixels: top-left
/// (`2r·ow + 2·lane`), top-right, bottom-left, bottom-right. The same for every image and
/// channel, so the pool picks its arg-max among four loads instead of computing it.
fn window_indices(g: &Geo) -> Vec<[IndexVector; 4]> {
    (0..g.oh / 2)
        .map(|r| {
            let pixel = |dy: usize, dx: usize| {
                IndexVector(std::array::from_fn(|lane| {
                    ((2 * r + dy) * g.ow + 2 * lane + dx) as u32
                }))
            };
            [pixel(0, 0), pixel(0, 1), pixel(1, 0), pixel(1, 1)]
        })
        .collect()
}

/// Pooled rows per step of [`image`]: two (eight FMA chains, two independent pools), so the
/// ports stay busy while one step's pool waits on its compares.
const STEP_ROWS: usize = 2;

/// One image: `y`, `argmax` (`co` pooled planes) from the unfolded `col`; `windows`:
/// [`window_indices`].
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn image<const K: usize>(
    col: &[f32],
    lay: &Rows32,
    g: &Geo,
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    windows: &[[IndexVector; 4]],
    y: &mut [f32],
    argmax: &mut [u32],
) {
    let (poh, pow) = (g.oh / 2, g.ow / 2);
    debug_assert!(w.len() >= g.co * K && y.len().min(argmax.len()) >= g.co * poh * pow);
    debug_assert!(windows.len() >= poh);
    let taps = Taps::<K>::new(lay, g);
    // The first `ow/2` lanes.
    let out = ((1u32 << pow) - 1) as __mmask16;
    for c in 0..g.co {
        let cw = ChannelWeights::<K>::of(w, bias, c);
        let plane = c * poh * pow;
        let (yc, ac) = (y.as_mut_ptr().add(plane), argmax.as_mut_ptr().add(plane));
        let mut r = 0;
        while r + STEP_ROWS <= poh {
            let a = taps.row_pairs::<STEP_ROWS>(col, &cw, r);
            pool_rows(a, r, pow, relu, out, windows, yc, ac);
            r += STEP_ROWS;
        }
        if r < poh {
            let a = taps.row_pairs::<1>(col, &cw, r);
            pool_rows(a, r, pow, relu, out, windows, yc, ac);
        }
    }
}

/// The pool, the ReLU and the stores of pooled rows `r0..r0 + R` of one channel (rows of
/// `pow` outputs, the lanes of `out`) from their windows' pixels `a` ([`Taps::row_pairs`] on
/// even/odd rows: top-left, top-right, bottom-left, bottom-right) and those pixels' indices
/// (`windows`, [`window_indices`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn pool_rows<const R: usize>(
    a: [[__m512; 4]; R],
    r0: usize,
    pow: usize,
    relu: bool,
    out: __mmask16,
    windows: &[[IndexVector; 4]],
    yc: *mut f32,
    ac: *mut u32,
) {
    for (q, [top_left, top_right, bottom_left, bottom_right]) in a.into_iter().enumerate() {
        let r = r0 + q;
        let index =
            |corner: usize| _mm512_load_si512(windows.get_unchecked(r)[corner].0.as_ptr().cast());
        // The first pick from −∞ always takes the top-left pixel (or keeps −∞, which is the
        // same value, with the same index).
        let (mut best, mut at) = (top_left, index(0));
        let others = [(top_right, 1), (bottom_left, 2), (bottom_right, 3)];
        // A NaN among the three is taken whatever it meets; without one (the usual case)
        // `v > best` alone decides, one compare per pick instead of two.
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(top_right, bottom_left)
            | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(bottom_right, bottom_right);
        if nan == 0 {
            for (v, corner) in others {
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                best = _mm512_mask_blend_ps(take, best, v);
                at = _mm512_mask_blend_epi32(take, at, index(corner));
            }
        } else {
            for (v, corner) in others {
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                best = _mm512_mask_blend_ps(take, best, v);
                at = _mm512_mask_blend_epi32(take, at, index(corner));
            }
        }
        if relu {
            // MAXPS returns its second operand unless the first is greater: v < 0 → +0,
            // and −0 and NaN stay.
            best = _mm512_max_ps(_mm512_setzero_ps(), best);
        }
        _mm512_mask_storeu_ps(yc.add(r * pow), out, best);
        _mm512_mask_storeu_epi32(ac.add(r * pow).cast(), out, at);
    }
}
