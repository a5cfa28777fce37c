//! The thin weight gradient: `dW[co×K] = Σ_n dY_n·col_nᵀ`, with K vector accumulators per
//! output channel over every pixel of every image of a batch chunk.
//!
//! Output channels go in pairs that share each `col` load; each pair runs its taps in two
//! passes so that its accumulators fit the 16 ymm registers. Each accumulator holds 8 lane
//! sums; per chunk the lanes are added in a fixed order, then the chunks in chunk order. The
//! kernel is bound by streaming dY from memory, which it prefetches [`WGRAD_AHEAD`] planes
//! ahead.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{prefetch_next_input, row_stride, ColLayout};
use crate::conv::{with_scratch, BatchChunks, Geo};
use crate::simd::mask;

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

/// Weight gradient (dw overwritten) over the fixed chunk partition `parts`.
pub(in crate::conv) fn backward_weight(
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    parts: BatchChunks,
) {
    let (k, p) = (g.k(), g.p());
    let lay = ColLayout::new(g);
    let wlen = g.co * k;
    // Per chunk: co×K×8 lane sums, reduced to co×K in a fixed order.
    let mut partials = vec![0.0f32; parts.count * wlen];
    partials
        .par_chunks_mut(wlen)
        .enumerate()
        .for_each(|(ch, out)| {
            let mut acc = vec![0.0f32; wlen * 8];
            for n in parts.images(ch) {
                let xn = &x[n * g.in_image()..(n + 1) * g.in_image()];
                // Image n's dY and everything after it (read only for prefetching).
                let dyn_ = &dy[n * g.out_image()..];
                if n + 1 < parts.images(ch).end {
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
