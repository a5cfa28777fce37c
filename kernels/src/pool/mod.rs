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
//! The presets' 2×2/stride-2 window has its own path: compares become selects (which
//! element wins is data-dependent, so branches mispredict), and per SIMD level a vector of
//! outputs at a time — even and odd input columns de-interleaved, then four compare-and-blend
//! steps carrying value and index: eight outputs on AVX2 (`avx2.rs`), sixteen on AVX-512
//! (`avx512.rs`), four on NEON (`neon.rs`). The ragged end of a row (the presets' rows are 14
//! and 7 outputs wide) is one masked vector on AVX2 and AVX-512, the scalar loop on NEON.
//! AVX2, measured on teacher pool1 (batch 128): 10.1 ms
//! branchy; 4.6 ms with AVX2 and a scalar ragged end; 1.0 ms (38 GB/s, memory speed) with the
//! masked end. Teacher pool2 (7 outputs a row): 5.2 ms → 1.4 ms.
//!
//! Backward: one task per group of planes zeroes its dx planes, then adds each `dy` into
//! `dx[argmax]` in output order. The 2×2/stride-2 window instead writes every input pixel
//! once (its window's gradient or zero), as windows that do not overlap allow. With overlapping windows (kernel > stride) one input can
//! collect several gradients; as each plane belongs to one task and is visited in a fixed
//! order, the sums are bit-for-bit deterministic.
//!
//! # What bounds it
//!
//! Memory. A 2×2/2 pool does 3 compares per output and moves 4 input floats in, one float
//! plus one u32 out: 24 bytes per 3 ops. On teacher pool1 (batch 128, 64×28×28) that is
//! 25.7 MB read and 12.8 MB written per forward, ~3 ms at ~13 GB/s, against well under a
//! millisecond of compares (the scalar loop is slower than that: see the 2×2 path above); the backward writes 25.7 MB of dx (mostly zeros) and reads
//! 12.8 MB of dy + arg-max. So the loops are kept simple and the parallelism coarse (planes
//! are grouped so a task moves at least ~64 KB).

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use rayon::prelude::*;

use crate::simd::{self, SimdLevel};
use crate::Pool2dShape;

/// Planes per rayon task: enough that a task touches at least `TARGET` input floats.
fn planes_per_task(plane_len: usize) -> usize {
    const TARGET: usize = 16 * 1024;
    TARGET.div_ceil(plane_len.max(1)).max(1)
}

/// `y` = max over each window; `argmax` = index of the winner inside its input plane
/// (`ih·in_w + iw`), first maximum on ties.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    max_pool2d_forward_at(simd::level(), s, x, y, argmax)
}

/// [`max_pool2d_forward`] with its 2×2/stride-2 path on an explicit SIMD level (every level
/// gives the same results: the compares are exact).
pub fn max_pool2d_forward_at(
    level: SimdLevel,
    s: &Pool2dShape,
    x: &[f32],
    y: &mut [f32],
    argmax: &mut [u32],
) {
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
                if (kh, kw, sh, sw) == (2, 2, 2, 2) {
                    pool_2x2(level, xp, iw, oh, ow, yp, ap);
                    continue;
                }
                for r in 0..oh {
                    let yrow = &mut yp[r * ow..(r + 1) * ow];
                    let arow = &mut ap[r * ow..(r + 1) * ow];
                    for (c, (yv, av)) in yrow.iter_mut().zip(arow.iter_mut()).enumerate() {
                        let (r0, c0) = (r * sh, c * sw);
                        let mut best = f32::NEG_INFINITY;
                        let mut at = (r0 * iw + c0) as u32;
                        for wr in r0..r0 + kh {
                            let base = wr * iw + c0;
                            for (dc, &v) in xp[base..base + kw].iter().enumerate() {
                                // Selects, not branches: on real activations which element
                                // wins is unpredictable, and a mispredicted branch per
                                // element costs more than the whole comparison.
                                let take = v > best || v.is_nan();
                                best = if take { v } else { best };
                                at = if take { (base + dc) as u32 } else { at };
                            }
                        }
                        *yv = best;
                        *av = at;
                    }
                }
            }
        });
}

/// The common 2×2, stride-2 window of one plane, on the SIMD path of `level` (same results as
/// the general loop: row-major scan, first maximum on ties, NaN wins). A level without a path
/// of its own, or one the CPU cannot run, takes the scalar loop.
pub(crate) fn pool_2x2(
    level: SimdLevel,
    xp: &[f32],
    iw: usize,
    oh: usize,
    ow: usize,
    yp: &mut [f32],
    ap: &mut [u32],
) {
    assert!(
        oh == 0 || ((2 * oh - 1) * iw + 2 * ow <= xp.len() && oh * ow <= yp.len().min(ap.len())),
        "pool_2x2: plane too short"
    );
    if !level.is_supported() {
        return pool_2x2_rows(xp, iw, 0..oh, 0, ow, yp, ap);
    }
    match level {
        // SAFETY (each arm): the CPU runs the level (checked above); the plane holds the
        // 2·oh rows of iw ≥ 2·ow floats read, y and argmax oh·ow (asserted above).
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma => unsafe { avx2::pool_2x2_avx2(xp, iw, oh, ow, yp, ap) },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::pool_2x2_avx512(xp, iw, oh, ow, yp, ap) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::pool_2x2_neon(xp, iw, oh, ow, yp, ap) },
        _ => pool_2x2_rows(xp, iw, 0..oh, 0, ow, yp, ap),
    }
}

/// The scalar 2×2/stride-2 loop over output rows `rows`, columns `c0..ow` of each (the
/// reference for the SIMD paths, and their ragged ends where they have no masks).
fn pool_2x2_rows(
    xp: &[f32],
    iw: usize,
    rows: std::ops::Range<usize>,
    c0: usize,
    ow: usize,
    yp: &mut [f32],
    ap: &mut [u32],
) {
    #[inline(always)]
    fn pick(best: f32, at: u32, v: f32, i: u32) -> (f32, u32) {
        let take = v > best || v.is_nan();
        (if take { v } else { best }, if take { i } else { at })
    }
    for r in rows {
        let top = &xp[2 * r * iw + 2 * c0..2 * r * iw + 2 * ow];
        let bottom = &xp[(2 * r + 1) * iw + 2 * c0..(2 * r + 1) * iw + 2 * ow];
        let yrow = &mut yp[r * ow + c0..(r + 1) * ow];
        let arow = &mut ap[r * ow + c0..(r + 1) * ow];
        let t0 = (2 * r * iw) as u32;
        let b0 = t0 + iw as u32;
        for (c, (((t, b), yv), av)) in top
            .chunks_exact(2)
            .zip(bottom.chunks_exact(2))
            .zip(yrow.iter_mut())
            .zip(arow.iter_mut())
            .enumerate()
        {
            let c2 = 2 * (c0 + c) as u32;
            let (best, at) = pick(f32::NEG_INFINITY, t0 + c2, t[0], t0 + c2);
            let (best, at) = pick(best, at, t[1], t0 + c2 + 1);
            let (best, at) = pick(best, at, b[0], b0 + c2);
            let (best, at) = pick(best, at, b[1], b0 + c2 + 1);
            *yv = best;
            *av = at;
        }
    }
}

/// `dx` (overwritten) = `dy` routed to each window's arg-max; overlapping windows add.
pub fn max_pool2d_backward(s: &Pool2dShape, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    max_pool2d_backward_at(simd::level(), s, dy, argmax, dx)
}

/// [`max_pool2d_backward`] with its 2×2/stride-2 path on an explicit SIMD level (every level
/// gives the same results: each pixel is one gradient or zero).
pub fn max_pool2d_backward_at(
    level: SimdLevel,
    s: &Pool2dShape,
    dy: &[f32],
    argmax: &[u32],
    dx: &mut [f32],
) {
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
            for ((dxp, dyp), ap) in dxs
                .chunks_exact_mut(in_plane)
                .zip(dys.chunks_exact(out_plane))
                .zip(args.chunks_exact(out_plane))
            {
                unpool_plane(level, s, dxp, dyp, ap);
            }
        });
}

/// One plane's backward: the 2×2/stride-2 window on its AVX-512 path where the CPU runs it,
/// else dx zeroed and each gradient added at its arg-max, in output order.
// `s` picks the AVX-512 path, which only x86-64 builds.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn unpool_plane(level: SimdLevel, s: &Pool2dShape, dxp: &mut [f32], dyp: &[f32], ap: &[u32]) {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512
            if (s.kernel_h, s.kernel_w, s.stride_h, s.stride_w) == (2, 2, 2, 2)
                && level.is_supported() =>
        {
            unpool_2x2_avx512(dxp, s.in_w, s.out_h(), s.out_w(), dyp, ap)
        }
        _ => {
            dxp.fill(0.0);
            for (&g, &a) in dyp.iter().zip(ap) {
                dxp[a as usize] += g;
            }
        }
    }
}

/// The backward of the 2×2/stride-2 window on one plane at AVX-512. Windows do not overlap,
/// so every input pixel is written once: its window's gradient where it was the arg-max,
/// zero elsewhere (the last row and column of an odd-sized plane, in no window, get zero).
/// No zeroing pass and no read-modify-write of dx. The other levels zero and scatter (a
/// scalar select loop measured slower than that).
#[cfg(target_arch = "x86_64")]
fn unpool_2x2_avx512(dxp: &mut [f32], iw: usize, oh: usize, ow: usize, dyp: &[f32], ap: &[u32]) {
    assert!(
        2 * oh * iw <= dxp.len() && 2 * ow <= iw && oh * ow <= dyp.len().min(ap.len()),
        "unpool_2x2: plane too short"
    );
    let (top_rows, rest) = dxp.split_at_mut(2 * oh * iw);
    rest.fill(0.0);
    for row in top_rows.chunks_exact_mut(iw) {
        row[2 * ow..].fill(0.0);
    }
    // SAFETY: the caller checked that the CPU runs AVX-512; the plane holds the 2·oh rows
    // reaching column 2·ow written, dy and argmax oh·ow (asserted above).
    unsafe { avx512::unpool_2x2_avx512(top_rows, iw, oh, ow, dyp, ap) }
}
