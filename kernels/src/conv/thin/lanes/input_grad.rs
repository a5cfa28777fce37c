//! The thin input gradient over [`Lanes`]: `dcol[K×P] = Wᵀ·dY` per image on a register tile,
//! then `dcol` folded back into dx.
//!
//! `dcol` is formed in blocks of [`DCOL_VECTORS`] vectors of pixels and groups of 3 taps
//! (12 accumulators), summing the output channels in order from zero; then single vectors,
//! then the ragged end as a partial vector. Per element: co fused multiply-adds from zero,
//! channels in order, whatever the blocking. The fold sums the taps landing on each input
//! pixel in (i, j) order: for a stride-1 "same" convolution as whole shifted rows over zeroed
//! margins ([`FlatFold`], [`flat_fold`]); otherwise with the scalar `col2im_channel`.

use rayon::prelude::*;

use super::{FlatFold, Kernels, Lanes, DCOL_VECTORS};
use crate::conv::thin::row_stride;
use crate::conv::unfold::col2im_channel;
use crate::conv::{with_scratch, Geo};

/// Pixels ahead that the first row group of a block prefetches in each dY plane.
const DCOL_PREFETCH: usize = 64;

/// Rows `k0..k0+KG` of `dcol` at pixels `o..o+N·NV` (the last vector only `last` lanes when
/// `last > 0`): `dcol_k = Σ_c w[c,k]·dY[c]` over all channels in order, from zero.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dcol_tile<V: Lanes, const KG: usize, const NV: usize>(
    w: &[f32],
    k: usize,
    k0: usize,
    dy: &[f32],
    p: usize,
    co: usize,
    o: usize,
    last: usize,
    dcol: *mut f32,
    ps: usize,
) {
    let n = V::N;
    let dp = dy.as_ptr();
    let mut a = [[V::zero(); NV]; KG];
    for c in 0..co {
        let src = dp.add(c * p + o);
        if k0 == 0 && c * p + o + DCOL_PREFETCH < dy.len() {
            V::prefetch(src.add(DCOL_PREFETCH));
        }
        let mut d = [V::zero(); NV];
        for (v, dv) in d.iter_mut().enumerate() {
            *dv = if last > 0 && v == NV - 1 {
                V::load_first(src.add(v * n), last)
            } else {
                V::load(src.add(v * n))
            };
        }
        for (r, row) in a.iter_mut().enumerate() {
            let wv = V::splat(*w.get_unchecked(c * k + k0 + r));
            for (acc, dv) in row.iter_mut().zip(d) {
                *acc = V::mul_add(wv, dv, *acc);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (v, acc) in row.iter().enumerate() {
            let dst = dcol.add((k0 + r) * ps + o + v * n);
            if last > 0 && v == NV - 1 {
                V::store_first(dst, last, *acc);
            } else {
                V::store(dst, *acc);
            }
        }
    }
}

/// `dcol[K×ps] = w[co×K]ᵀ·dY[co×P]` for one image (only the first `p` floats of each row are
/// written). `dy` may run on past this image (read only for prefetching).
#[inline(always)]
pub(super) unsafe fn dcol_image<V: Lanes>(
    k: usize,
    w: &[f32],
    dy: &[f32],
    p: usize,
    co: usize,
    dcol: &mut [f32],
    ps: usize,
) {
    debug_assert!(dcol.len() >= (k - 1) * ps + p && w.len() >= co * k && dy.len() >= co * p);
    let n = V::N;
    let op = dcol.as_mut_ptr();
    macro_rules! groups {
        ($nv:literal, $o:expr, $last:expr) => {
            for k0 in (0..k).step_by(3) {
                match k - k0 {
                    1 => dcol_tile::<V, 1, $nv>(w, k, k0, dy, p, co, $o, $last, op, ps),
                    2 => dcol_tile::<V, 2, $nv>(w, k, k0, dy, p, co, $o, $last, op, ps),
                    _ => dcol_tile::<V, 3, $nv>(w, k, k0, dy, p, co, $o, $last, op, ps),
                }
            }
        };
    }
    let mut o = 0;
    while o + DCOL_VECTORS * n <= p {
        groups!(4, o, 0);
        o += DCOL_VECTORS * n;
    }
    while o + n <= p {
        groups!(1, o, 0);
        o += n;
    }
    if o < p {
        groups!(1, o, p - o);
    }
}

/// `dx[P] = Σ_t rows[starts[t] + q]` for every pixel `q`, taps in order from zero (the
/// [`FlatFold`] of a stride-1 "same" convolution: every start and `start + P` lie inside
/// `rows`).
#[inline(always)]
pub(super) unsafe fn flat_fold<V: Lanes>(starts: &[usize], rows: &[f32], p: usize, dx: &mut [f32]) {
    debug_assert!(dx.len() >= p && starts.iter().all(|&s| s + p <= rows.len()));
    let n = V::N;
    let (rp, xp) = (rows.as_ptr(), dx.as_mut_ptr());
    let mut o = 0;
    while o + n <= p {
        let mut acc = V::zero();
        for &s in starts {
            acc = V::add(acc, V::load(rp.add(s + o)));
        }
        V::store(xp.add(o), acc);
        o += n;
    }
    if o < p {
        let mut acc = V::zero();
        for &s in starts {
            acc = V::add(acc, V::load_first(rp.add(s + o), p - o));
        }
        V::store_first(xp.add(o), p - o, acc);
    }
}

/// Input gradient at level `V` (dx overwritten).
pub(in crate::conv) fn backward_input<V: Kernels>(g: &Geo, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (k, p) = (g.k(), g.p());
    if g.sh == 1 && g.sw == 1 && g.oh == g.h && g.ow == g.w {
        let fl = FlatFold::new(g);
        let starts = fl.tap_starts(g);
        let starts = &starts[..g.kh * g.kw];
        dx.par_chunks_mut(g.in_image())
            .enumerate()
            .for_each(|(n, dxn)| {
                let dyn_ = &dy[n * g.out_image()..];
                with_scratch(k * fl.rs, |dcol| {
                    // SAFETY: the caller checked the level; dcol holds k rows of rs ≥ p.
                    unsafe { V::dcol_image(k, w, dyn_, p, g.co, &mut dcol[fl.front..], fl.rs) }
                    let per = g.kh * g.kw * fl.rs;
                    for (d, r) in dxn.chunks_exact_mut(p).zip(dcol.chunks_exact_mut(per)) {
                        fl.clear_unused(g, r);
                        // SAFETY: the caller checked the level; r holds kh·kw rows of rs.
                        unsafe { V::flat_fold(starts, r, p, d) }
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
            let dyn_ = &dy[n * g.out_image()..];
            with_scratch(k * ps, |dcol| {
                // SAFETY: the caller checked the level; dcol holds k rows of ps ≥ p.
                unsafe { V::dcol_image(k, w, dyn_, p, g.co, dcol, ps) }
                for (d, r) in dxn.chunks_exact_mut(g.h * g.w).zip(dcol.chunks_exact(per)) {
                    col2im_channel(g, r, d, ps);
                }
            })
        });
}
