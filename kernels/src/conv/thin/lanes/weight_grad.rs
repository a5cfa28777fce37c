//! The thin weight gradient over [`Lanes`]: `dW[co×K] = Σ_n dY_n·col_nᵀ`, with K vector
//! accumulators per output channel over every pixel of every image of a batch chunk.
//!
//! Output channels go in pairs that share each `col` load, all K taps of the pair at once
//! (2·K ≤ 24 accumulators, 2 dY vectors and a `col` vector: 27 of the 32 registers of both
//! levels). An odd last channel runs alone. Each accumulator holds `N` lane sums; per chunk
//! the lanes are added in a fixed pairwise order ([`sum_lanes`]), then the chunks in chunk
//! order. Every plane of a pair is prefetched [`WGRAD_AHEAD`] planes ahead (the next pair's,
//! about 6 KB ahead of each stream for 28×28 planes).

use rayon::prelude::*;

use super::{by_k_for, sum_lanes, ColLayout, Kernels, Lanes};
use crate::conv::thin::prefetch_next_input;
use crate::conv::{with_scratch, BatchChunks, Geo};

/// How many dY planes ahead each channel of a pair prefetches: the next pair. Farther ahead
/// (3, 4, 8 planes) was slower; the L1 fill buffers stay busy longer.
const WGRAD_AHEAD: usize = 2;

/// `acc[co×K×N] += dY[co×P]·col[K×P]ᵀ`, lane-wise (`N` partial sums per weight). `dy` is this
/// image's dY and may run on past it (read only for prefetching).
#[inline(always)]
pub(super) unsafe fn wgrad_image<V: Lanes, const K: usize>(
    col: &[f32],
    offs: &[usize],
    p: usize,
    dy: &[f32],
    acc: &mut [f32],
    co: usize,
) {
    debug_assert!(offs.len() >= K && dy.len() >= co * p && acc.len() >= co * K * V::N);
    debug_assert!(offs[..K].iter().all(|&o| o + p <= col.len()));
    let mut off = [0usize; K];
    off.copy_from_slice(&offs[..K]);
    let cp = col.as_ptr();
    let mut c = 0;
    while c < co {
        let ahead = dy.get((c + WGRAD_AHEAD) * p..).unwrap_or(&[]);
        let (dp, ap) = (dy.as_ptr().add(c * p), acc.as_mut_ptr().add(c * K * V::N));
        if c + 2 <= co {
            wgrad_channels::<V, 2, K>(cp, &off, p, dp, ahead, ap);
        } else {
            wgrad_channels::<V, 1, K>(cp, &off, p, dp, ahead, ap);
        }
        c += 2;
    }
}

/// Output channels `c..c+CH` (dY planes at `dp`, `p` apart; accumulators at `ap`), all K
/// taps: `CH·K` vector accumulators over all pixels. `ahead`: dY from `WGRAD_AHEAD` planes
/// on, its first `CH` planes prefetched as the pixels go by (may be shorter, or empty).
#[inline(always)]
unsafe fn wgrad_channels<V: Lanes, const CH: usize, const K: usize>(
    col: *const f32,
    off: &[usize; K],
    p: usize,
    dp: *const f32,
    ahead: &[f32],
    ap: *mut f32,
) {
    let n = V::N;
    let mut a = [[V::zero(); K]; CH];
    for (ch, row) in a.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = V::load(ap.add((ch * K + j) * n));
        }
    }
    let mut o = 0;
    while o + n <= p {
        for ch in 0..CH {
            if ch * p + o < ahead.len() {
                V::prefetch(ahead.as_ptr().add(ch * p + o));
            }
        }
        let mut d = [V::zero(); CH];
        for (ch, dv) in d.iter_mut().enumerate() {
            *dv = V::load(dp.add(ch * p + o));
        }
        wgrad_step(col, off, o, &d, &mut a, |q| V::load(q));
        o += n;
    }
    if o < p {
        let mut d = [V::zero(); CH];
        for (ch, dv) in d.iter_mut().enumerate() {
            *dv = V::load_first(dp.add(ch * p + o), p - o);
        }
        wgrad_step(col, off, o, &d, &mut a, |q| V::load_first(q, p - o));
    }
    for (ch, row) in a.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            V::store(ap.add((ch * K + j) * n), *v);
        }
    }
}

/// `a[ch][j] += d[ch]·col_j` at pixel `o` for all K taps, each `col` vector (read by `load`)
/// shared by the `CH` channels.
#[inline(always)]
unsafe fn wgrad_step<V: Lanes, const CH: usize, const K: usize>(
    col: *const f32,
    off: &[usize; K],
    o: usize,
    d: &[V; CH],
    a: &mut [[V; K]; CH],
    load: impl Fn(*const f32) -> V,
) {
    for j in 0..K {
        let cv = load(col.add(off[j] + o));
        for ch in 0..CH {
            a[ch][j] = V::mul_add(d[ch], cv, a[ch][j]);
        }
    }
}

/// Weight gradient at level `V` (dw overwritten) over the fixed chunk partition `parts`.
pub(in crate::conv) fn backward_weight<V: Kernels>(
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    dw: &mut [f32],
    parts: BatchChunks,
) {
    let (k, p) = (g.k(), g.p());
    let lay = ColLayout::new(g);
    let wlen = g.co * k;
    let mut partials = vec![0.0f32; parts.count * wlen];
    partials
        .par_chunks_mut(wlen)
        .enumerate()
        .for_each(|(ch, out)| {
            let mut acc = vec![0.0f32; wlen * V::N];
            for n in parts.images(ch) {
                let xn = &x[n * g.in_image()..(n + 1) * g.in_image()];
                let dyn_ = &dy[n * g.out_image()..];
                if n + 1 < parts.images(ch).end {
                    prefetch_next_input(g, x, n);
                }
                with_scratch(lay.len, |col| {
                    lay.unfold(g, xn, col);
                    // SAFETY: the caller checked the level; col rows hold p floats at their
                    // offsets, dyn_ at least co·P, acc co·K·N.
                    unsafe { by_k_for!(k, V, wgrad_image(col, &lay.offs, p, dyn_, &mut acc, g.co)) }
                });
            }
            for (o, lanes) in out.iter_mut().zip(acc.chunks_exact(V::N)) {
                *o = sum_lanes(lanes);
            }
        });
    dw.copy_from_slice(&partials[..wlen]);
    for part in partials.chunks_exact(wlen).skip(1) {
        for (d, s) in dw.iter_mut().zip(part) {
            *d += *s;
        }
    }
}
