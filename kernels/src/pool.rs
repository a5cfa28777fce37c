//! max_pool2d over NCHW: forward with arg-max, backward by routing through the arg-max.
//! Any window and stride, no padding, floor mode (windows that would run past the edge are
//! dropped).
//!
//! # Algorithm
//!
//! Forward: one rayon task per group of (n, c) planes; inside a plane, each output row scans
//! its window rows in order, left to right, keeping the running maximum and its index
//! `ih·in_w + iw` inside the plane. A value replaces the running maximum when it is strictly
//! greater, or when it is NaN — PyTorch's CPU rule — so ties keep the *first* maximum, a NaN
//! anywhere in the window makes the output NaN (its index is the *last* NaN of the window),
//! and a window of all −∞ reports its first element.
//!
//! Backward: one task per group of planes zeroes its dx planes, then adds each `dy` into
//! `dx[argmax]` in output order. With overlapping windows (kernel > stride) one input can
//! collect several gradients; as each plane belongs to one task and is visited in a fixed
//! order, the sums are bit-for-bit deterministic.
//!
//! # What bounds it
//!
//! Memory. A 2×2/2 pool does 3 compares per output and moves 4 input floats in, one float
//! plus one u32 out: 24 bytes per 3 ops. On teacher pool1 (batch 128, 64×28×28) that is
//! 25.7 MB read and 12.8 MB written per forward, ~3 ms at ~13 GB/s, against well under a
//! millisecond of compares; the backward writes 25.7 MB of dx (mostly zeros) and reads
//! 12.8 MB of dy + arg-max. So the loops are kept simple and the parallelism coarse (planes
//! are grouped so a task moves at least ~64 KB).

use rayon::prelude::*;

use crate::Pool2dShape;

/// Planes per rayon task: enough that a task touches at least `TARGET` input floats.
fn planes_per_task(plane_len: usize) -> usize {
    const TARGET: usize = 16 * 1024;
    TARGET.div_ceil(plane_len.max(1)).max(1)
}

/// `y` = max over each window; `argmax` = index of the winner inside its input plane
/// (`ih·in_w + iw`), first maximum on ties.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let (ih, iw) = (s.in_h, s.in_w);
    let (oh, ow) = (s.out_h(), s.out_w());
    let (kh, kw, sh, sw) = (s.kernel_h, s.kernel_w, s.stride_h, s.stride_w);
    let planes = s.batch * s.channels;
    let (in_plane, out_plane) = (ih * iw, oh * ow);
    assert!(x.len() >= s.input_len(), "max_pool2d_forward: x too short");
    assert!(y.len() >= s.output_len(), "max_pool2d_forward: y too short");
    assert!(
        argmax.len() >= s.output_len(),
        "max_pool2d_forward: argmax too short"
    );
    assert!(
        u32::try_from(in_plane).is_ok(),
        "max_pool2d_forward: plane too large for u32 indices"
    );
    let g = planes_per_task(in_plane);
    let x = &x[..planes * in_plane];
    y[..planes * out_plane]
        .par_chunks_mut(g * out_plane)
        .zip(argmax[..planes * out_plane].par_chunks_mut(g * out_plane))
        .zip(x.par_chunks(g * in_plane))
        .for_each(|((ys, args), xs)| {
            for ((yp, ap), xp) in ys
                .chunks_exact_mut(out_plane)
                .zip(args.chunks_exact_mut(out_plane))
                .zip(xs.chunks_exact(in_plane))
            {
                for r in 0..oh {
                    let yrow = &mut yp[r * ow..(r + 1) * ow];
                    let arow = &mut ap[r * ow..(r + 1) * ow];
                    for (c, (yv, av)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
                        let (r0, c0) = (r * sh, c * sw);
                        let mut best = f32::NEG_INFINITY;
                        let mut at = r0 * iw + c0;
                        for wr in r0..r0 + kh {
                            let row = &xp[wr * iw + c0..wr * iw + c0 + kw];
                            for (dc, &v) in row.iter().enumerate() {
                                if v > best || v.is_nan() {
                                    best = v;
                                    at = wr * iw + c0 + dc;
                                }
                            }
                        }
                        *yv = best;
                        *av = at as u32;
                    }
                }
            }
        });
}

/// `dx` (overwritten) = `dy` routed to each window's arg-max; overlapping windows add.
pub fn max_pool2d_backward(s: &Pool2dShape, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let planes = s.batch * s.channels;
    let (in_plane, out_plane) = (s.in_h * s.in_w, s.out_h() * s.out_w());
    assert!(
        dy.len() >= s.output_len(),
        "max_pool2d_backward: dy too short"
    );
    assert!(
        argmax.len() >= s.output_len(),
        "max_pool2d_backward: argmax too short"
    );
    assert!(
        dx.len() >= s.input_len(),
        "max_pool2d_backward: dx too short"
    );
    let g = planes_per_task(in_plane);
    dx[..planes * in_plane]
        .par_chunks_mut(g * in_plane)
        .zip(dy[..planes * out_plane].par_chunks(g * out_plane))
        .zip(argmax[..planes * out_plane].par_chunks(g * out_plane))
        .for_each(|((dxs, dys), args)| {
            dxs.fill(0.0);
            for ((dxp, dyp), ap) in dxs
                .chunks_exact_mut(in_plane)
                .zip(dys.chunks_exact(out_plane))
                .zip(args.chunks_exact(out_plane))
            {
                for (&g, &a) in dyp.iter().zip(ap) {
                    dxp[a as usize] += g;
                }
            }
        });
}
