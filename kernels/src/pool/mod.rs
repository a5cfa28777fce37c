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
//! element wins is data-dependent, so branches mispredict), and on AVX2 eight outputs at a
//! time — even and odd input columns de-interleaved, then four compare-and-blend steps
//! carrying value and index; the ragged end of a row (the presets' rows are 14 and 7
//! outputs wide) is one masked vector. Measured on teacher pool1 (batch 128): 10.1 ms
//! branchy; 4.6 ms with AVX2 and a scalar ragged end; 1.0 ms (38 GB/s, memory speed) with the
//! masked end. Teacher pool2 (7 outputs a row): 5.2 ms → 1.4 ms.
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
//! millisecond of compares (the scalar loop is slower than that: see the 2×2 path above); the backward writes 25.7 MB of dx (mostly zeros) and reads
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
                if (kh, kw, sh, sw) == (2, 2, 2, 2) {
                    pool_2x2(xp, iw, oh, ow, yp, ap);
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

/// The common 2×2, stride-2 window of one plane, written without bounds checks or branches in
/// the inner loop so it runs at memory speed (same results as the general loop: row-major
/// scan, first maximum on ties, NaN wins).
fn pool_2x2(xp: &[f32], iw: usize, oh: usize, ow: usize, yp: &mut [f32], ap: &mut [u32]) {
    #[inline(always)]
    fn pick(best: f32, at: u32, v: f32, i: u32) -> (f32, u32) {
        let take = v > best || v.is_nan();
        (if take { v } else { best }, if take { i } else { at })
    }
    #[cfg(target_arch = "x86_64")]
    if crate::simd::level().at_least_avx2() {
        // SAFETY: the process level is AVX2+FMA or AVX-512 only when the CPU has AVX2.
        unsafe { pool_2x2_avx2(xp, iw, oh, ow, yp, ap) };
        return;
    }
    for r in 0..oh {
        let top = &xp[2 * r * iw..2 * r * iw + 2 * ow];
        let bottom = &xp[(2 * r + 1) * iw..(2 * r + 1) * iw + 2 * ow];
        let yrow = &mut yp[r * ow..(r + 1) * ow];
        let arow = &mut ap[r * ow..(r + 1) * ow];
        let t0 = (2 * r * iw) as u32;
        let b0 = t0 + iw as u32;
        for (c, (((t, b), yv), av)) in top
            .chunks_exact(2)
            .zip(bottom.chunks_exact(2))
            .zip(yrow.iter_mut())
            .zip(arow.iter_mut())
            .enumerate()
        {
            let c2 = 2 * c as u32;
            let (best, at) = pick(f32::NEG_INFINITY, t0 + c2, t[0], t0 + c2);
            let (best, at) = pick(best, at, t[1], t0 + c2 + 1);
            let (best, at) = pick(best, at, b[0], b0 + c2);
            let (best, at) = pick(best, at, b[1], b0 + c2 + 1);
            *yv = best;
            *av = at;
        }
    }
}

/// [`pool_2x2`] eight outputs at a time: de-interleave the even and odd columns of the two
/// input rows, then four compare-and-blend steps carry the maximum and its index.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pool_2x2_avx2(
    xp: &[f32],
    iw: usize,
    oh: usize,
    ow: usize,
    yp: &mut [f32],
    ap: &mut [u32],
) {
    use std::arch::x86_64::*;
    let lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    // The ragged end of a row (ow = 7 or 14 in the presets) is a masked vector, not a
    // scalar loop (which cost more than the full vectors put together).
    use crate::simd::mask::first;
    let one = _mm256_set1_epi32(1);
    for r in 0..oh {
        let (t0, b0) = (2 * r * iw, (2 * r + 1) * iw);
        assert!(b0 + 2 * ow <= xp.len() && (r + 1) * ow <= yp.len() && (r + 1) * ow <= ap.len());
        let mut c = 0;
        while c < ow {
            // Outputs c..c+n of this row read inputs 2c..2c+2n of the two rows.
            let n = (ow - c).min(8);
            let (mask_lo, mask_hi) = (first(2 * n), first((2 * n).saturating_sub(8)));
            let load_pairs = |at: usize| {
                let p = xp.as_ptr().add(at);
                let (lo, hi) = if n == 8 {
                    (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
                } else {
                    // Masked-off lanes read nothing (no fault past the plane) and load 0.
                    (
                        _mm256_maskload_ps(p, mask_lo),
                        _mm256_maskload_ps(p.add(8), mask_hi),
                    )
                };
                // shuffle_ps works within 128-bit halves; the permute restores column order.
                let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)),
                ));
                let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)),
                ));
                (even, odd)
            };
            let (te, to) = load_pairs(t0 + 2 * c);
            let (be, bo) = load_pairs(b0 + 2 * c);
            let base_t = _mm256_add_epi32(_mm256_set1_epi32((t0 + 2 * c) as i32), lanes);
            let base_b = _mm256_add_epi32(_mm256_set1_epi32((b0 + 2 * c) as i32), lanes);
            let mut best = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut at = base_t;
            for (v, idx) in [
                (te, base_t),
                (to, _mm256_add_epi32(base_t, one)),
                (be, base_b),
                (bo, _mm256_add_epi32(base_b, one)),
            ] {
                // take = v > best || v is NaN, exactly the scalar rule.
                let take = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                );
                best = _mm256_blendv_ps(best, v, take);
                at = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(at),
                    _mm256_castsi256_ps(idx),
                    take,
                ));
            }
            let (yo, ao) = (
                yp.as_mut_ptr().add(r * ow + c),
                ap.as_mut_ptr().add(r * ow + c),
            );
            if n == 8 {
                _mm256_storeu_ps(yo, best);
                _mm256_storeu_si256(ao as *mut __m256i, at);
            } else {
                let out = first(n);
                _mm256_maskstore_ps(yo, out, best);
                _mm256_maskstore_epi32(ao as *mut i32, out, at);
            }
            c += n;
        }
    }
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
