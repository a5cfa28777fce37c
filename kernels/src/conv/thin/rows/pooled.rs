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
//! `v` NaN), so the maximum and its index are the ones `crate::pool` gives. The ReLU
//! (`max(0, v)`, which keeps −0 and NaN as `v < 0 → 0` does) follows, then two stores of
//! `ow/2` lanes: the pooled row and its arg-max.
//!
//! # What bounds it
//!
//! The two ports that run 512-bit FMAs also run the compares and blends: per pooled row of a
//! channel 4·K FMAs (36 for 3×3) and about 15 pool operations, three of them a dependent
//! chain. For `ow` = 28 an eighth of the lanes are padding. Memory is the input (3 KB per
//! 28×28 image) and the pooled output and its arg-max, a quarter of the conv's size each.

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
    y.par_chunks_mut(pooled)
        .zip(argmax.par_chunks_mut(pooled))
        .zip(x.par_chunks(g.in_image()))
        .enumerate()
        .for_each(|(n, ((yn, an), xn))| {
            prefetch_next_input(g, x, n);
            with_unfolded(&lay, g, xn, |col| {
                // SAFETY: the caller checked the level; col holds every tap's rows up to
                // row oh − 1 + kh − 1 < hp, w holds co·K and yn, an co pooled planes.
                unsafe { by_k!(g.k(), image(col, &lay, g, w, bias, relu, yn, an)) }
            });
        });
}

/// Pooled rows per step of [`image`]: two (eight FMA chains, two independent pools), so the
/// ports stay busy while one step's pool waits on its compares.
const STEP_ROWS: usize = 2;

/// The constants of the pool in registers.
#[derive(Clone, Copy)]
struct PoolConsts {
    /// Each lane's top-left pixel in conv row 0: `2·lane`.
    top_left: __m512i,
    /// From a window's top-left pixel to its top-right, bottom-left and bottom-right ones.
    right: __m512i,
    below: __m512i,
    below_right: __m512i,
    /// The first `ow/2` lanes.
    out: __mmask16,
}

/// One image: `y`, `argmax` (`co` pooled planes) from the unfolded `col`.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn image<const K: usize>(
    col: &[f32],
    lay: &Rows32,
    g: &Geo,
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    argmax: &mut [u32],
) {
    let (poh, pow) = (g.oh / 2, g.ow / 2);
    debug_assert!(w.len() >= g.co * K && y.len().min(argmax.len()) >= g.co * poh * pow);
    let taps = Taps::<K>::new(lay, g);
    let ow = g.ow as i32;
    let pc = PoolConsts {
        top_left: _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
        right: _mm512_set1_epi32(1),
        below: _mm512_set1_epi32(ow),
        below_right: _mm512_set1_epi32(ow + 1),
        out: ((1u32 << pow) - 1) as __mmask16,
    };
    for c in 0..g.co {
        let cw = ChannelWeights::<K>::of(w, bias, c);
        let plane = c * poh * pow;
        let (yc, ac) = (y.as_mut_ptr().add(plane), argmax.as_mut_ptr().add(plane));
        let mut r = 0;
        while r + STEP_ROWS <= poh {
            let a = taps.row_pairs::<STEP_ROWS>(col, &cw, r);
            pool_rows(a, r, g.ow, relu, pc, yc, ac);
            r += STEP_ROWS;
        }
        if r < poh {
            pool_rows(taps.row_pairs::<1>(col, &cw, r), r, g.ow, relu, pc, yc, ac);
        }
    }
}

/// The pool, the ReLU and the stores of pooled rows `r0..r0 + R` of one channel from their
/// windows' pixels `a` ([`Taps::row_pairs`] on even/odd rows: top-left, top-right,
/// bottom-left, bottom-right).
#[inline(always)]
unsafe fn pool_rows<const R: usize>(
    a: [[__m512; 4]; R],
    r0: usize,
    ow: usize,
    relu: bool,
    pc: PoolConsts,
    yc: *mut f32,
    ac: *mut u32,
) {
    let pow = ow / 2;
    for (q, [top_left, top_right, bottom_left, bottom_right]) in a.into_iter().enumerate() {
        let r = r0 + q;
        // The first pick from −∞ always takes the top-left pixel (or keeps −∞, which is the
        // same value, with the same index); `step` is the winner's offset from it.
        let (mut best, mut step) = (top_left, _mm512_setzero_si512());
        let others = [
            (top_right, pc.right),
            (bottom_left, pc.below),
            (bottom_right, pc.below_right),
        ];
        // A NaN among the three is taken whatever it meets; without one (the usual case)
        // `v > best` alone decides, one compare per pick instead of two.
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(top_right, bottom_left)
            | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(bottom_right, bottom_right);
        if nan == 0 {
            for (v, offset) in others {
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                best = _mm512_mask_blend_ps(take, best, v);
                step = _mm512_mask_blend_epi32(take, step, offset);
            }
        } else {
            for (v, offset) in others {
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                best = _mm512_mask_blend_ps(take, best, v);
                step = _mm512_mask_blend_epi32(take, step, offset);
            }
        }
        if relu {
            // MAXPS returns its second operand unless the first is greater: v < 0 → +0,
            // and −0 and NaN stay.
            best = _mm512_max_ps(_mm512_setzero_ps(), best);
        }
        let row_start = _mm512_set1_epi32((2 * r * ow) as i32);
        let at = _mm512_add_epi32(_mm512_add_epi32(row_start, pc.top_left), step);
        _mm512_mask_storeu_ps(yc.add(r * pow), pc.out, best);
        _mm512_mask_storeu_epi32(ac.add(r * pow).cast(), pc.out, at);
    }
}
