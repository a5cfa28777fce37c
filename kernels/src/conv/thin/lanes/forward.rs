//! The thin forward over [`Lanes`]: `y[co×P] = bias + w[co×K]·col[K×P]` per image.
//!
//! Per output channel its K weights and bias are broadcast into registers, then
//! [`FWD_VECTORS`] independent FMA chains run over the K taps of the column matrix (in L1),
//! one vector of pixels each; then single vectors; then the ragged end as one partial vector.
//! Per element: K fused multiply-adds from the bias, taps in order. The kernel is bound by
//! writing y: outputs from [`STREAM_MIN_BYTES`] on are written with streaming stores, and
//! each plane first touches the output's pages [`PAGE_AHEAD`] floats on, so their page walks
//! start before the stores reach them (the AVX2 forward's reasons, `../forward.rs`).

use rayon::prelude::*;

use super::{by_k_for, ColLayout, Kernels, Lanes, FWD_VECTORS};
use crate::conv::thin::prefetch_next_input;
use crate::conv::{with_scratch, Geo};

/// Outputs from this size on are written with streaming stores.
const STREAM_MIN_BYTES: usize = 8 << 20;

/// How far ahead of the plane being written the forward touches the output's pages (2 pages
/// of 4 KB, in floats).
const PAGE_AHEAD: usize = 2048;

/// `y[co×P] = bias + w[co×K]·col` for one image (tap `k`'s row of `col` at `offs[k]`);
/// `nt`: write whole vectors with streaming stores where a plane is 16-byte aligned.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn fwd_image<V: Lanes, const K: usize>(
    col: &[f32],
    offs: &[usize],
    p: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    co: usize,
    nt: bool,
) {
    debug_assert!(offs.len() >= K && w.len() >= co * K && y.len() >= co * p);
    debug_assert!(offs[..K].iter().all(|&o| o + p <= col.len()));
    let n = V::N;
    let cp = col.as_ptr();
    let mut off = [0usize; K];
    off.copy_from_slice(&offs[..K]);
    for c in 0..co {
        let mut wk = [V::zero(); K];
        for (k, v) in wk.iter_mut().enumerate() {
            *v = V::splat(w[c * K + k]);
        }
        let b = V::splat(bias.map_or(0.0, |b| b[c]));
        let yp = y.as_mut_ptr().add(c * p);
        // The pages PAGE_AHEAD on (past the end of y for the last planes: a prefetch never
        // faults, and the pointer is never dereferenced).
        for page in (0..p).step_by(1024) {
            V::prefetch(yp.wrapping_add(PAGE_AHEAD + page));
        }
        let stream = nt && (yp as usize).is_multiple_of(16);
        let store = |dst: *mut f32, v: V| {
            if stream {
                V::store_stream(dst, v)
            } else {
                V::store(dst, v)
            }
        };
        let mut o = 0;
        while o + FWD_VECTORS * n <= p {
            let mut a = [b; FWD_VECTORS];
            for k in 0..K {
                let r = cp.add(off[k] + o);
                for (u, acc) in a.iter_mut().enumerate() {
                    *acc = V::mul_add(wk[k], V::load(r.add(u * n)), *acc);
                }
            }
            for (u, acc) in a.iter().enumerate() {
                store(yp.add(o + u * n), *acc);
            }
            o += FWD_VECTORS * n;
        }
        while o + n <= p {
            let mut a = b;
            for k in 0..K {
                a = V::mul_add(wk[k], V::load(cp.add(off[k] + o)), a);
            }
            store(yp.add(o), a);
            o += n;
        }
        if o < p {
            let mut a = b;
            for k in 0..K {
                a = V::mul_add(wk[k], V::load_first(cp.add(off[k] + o), p - o), a);
            }
            V::store_first(yp.add(o), p - o, a);
        }
    }
}

/// Forward at level `V` (the caller has checked that the CPU runs it and `K ≤ THIN_MAX_K`).
pub(in crate::conv) fn forward<V: Kernels>(
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) {
    let (k, p) = (g.k(), g.p());
    let lay = ColLayout::new(g);
    let nt = y.len() * 4 >= STREAM_MIN_BYTES;
    y.par_chunks_mut(g.out_image())
        .zip(x.par_chunks(g.in_image()))
        .enumerate()
        .for_each(|(n, (yn, xn))| {
            prefetch_next_input(g, x, n);
            with_scratch(lay.len, |col| {
                lay.unfold(g, xn, col);
                // SAFETY: the caller checked the level; every row of col holds p floats at
                // its offset, w holds co·K and yn co·P.
                unsafe { by_k_for!(k, V, fwd_image(col, &lay.offs, p, w, bias, yn, g.co, nt)) }
            });
            if nt {
                // SAFETY: the caller checked the level. Orders this thread's streaming
                // stores before whatever it does next (the join that hands y back).
                unsafe { V::stream_fence() };
            }
        });
}
