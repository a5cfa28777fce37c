//! A thin convolution and the 2×2/stride-2 max-pool after it, as one pass per image over
//! [`Lanes`](super::Lanes): `y = max_pool2d_2x2(conv2d(x, w, b))`, then a ReLU if asked, and,
//! backward, the weight and bias gradients from the gradient of `y`.
//!
//! # Algorithm
//!
//! Forward, per image (one task each): unfold the image ([`ColLayout`]), run the thin forward
//! ([`super::forward::fwd_image`]) into a scratch of `co·P` floats, and pool that scratch plane
//! by plane ([`crate::pool::pool_2x2`]) into y and the arg-max; the ReLU rectifies y in place.
//! (ReLU and max commute, so this is also the pool of the rectified conv output.)
//!
//! Backward (weights and bias), per image of a batch chunk, two output channels at a time:
//! route their pooled gradient to the arg-max (zero where the ReLU output is not positive,
//! if there is a ReLU) in two full-size planes ([`crate::pool::unpool_plane`], 6 KB for
//! 28×28, in L1), then run the thin weight gradient's accumulators over them and, in the same
//! pass, the bias's plane sums ([`super::weight_grad::wgrad_bias_channels`]). Chunks, lanes
//! and images are summed in the same order as the two-kernel path
//! ([`super::weight_grad::backward_weight`], [`crate::conv::conv2d_backward_bias`]: eight
//! lanes of pixels `≡ l` mod 8, [`super::Lanes::Octet`]), and the ReLU's tests are the ReLU
//! kernels' (`x < 0` forward, `y > 0` backward), so both give the same bits.
//!
//! # What bounds it
//!
//! The unfused layer writes the full-size conv output (the teacher's conv1: 25.7 MB at batch
//! 128) and reads it back in the pool, and backward writes the full-size gradient and reads it
//! twice (bias, weights): four passes over DRAM. Here the full-size planes live only in
//! scratch (forward: one image's, 200 KB, in L2; backward: two planes in L1), so what reaches
//! memory is the input, the pooled output and its arg-max, a quarter of the size; the compute
//! is that of the two kernels. Backward, the unpool waits on the reads of the pooled gradient,
//! arg-max and output (three streams from memory), and the dense weight-gradient FMAs run over
//! the zeros of the three pixels of each window that were not its maximum.

use rayon::prelude::*;

use super::{by_k_for, sum_lanes, ColLayout, Kernels};
use crate::conv::thin::prefetch_next_input;
use crate::conv::{plane_sum_finish, with_scratch, BatchChunks, Geo};
use crate::pool::{pool_2x2, unpool_plane};
use crate::simd::SimdLevel;
use crate::Pool2dShape;

/// The 2×2/stride-2 pool of the conv output planes of `g`.
fn pool_shape(g: &Geo) -> Pool2dShape {
    Pool2dShape {
        batch: 1,
        channels: g.co,
        in_h: g.oh,
        in_w: g.ow,
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
    }
}

/// Forward at level `V` (`level`: the same level, for the pool). y and argmax hold the pooled
/// output, `co` planes of `(oh/2)·(ow/2)` per image; `relu`: rectify y.
#[allow(clippy::too_many_arguments)]
pub(in crate::conv) fn forward_pool<V: Kernels>(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    argmax: &mut [u32],
) {
    let (k, p) = (g.k(), g.p());
    let ps = pool_shape(g);
    let (poh, pow) = (ps.out_h(), ps.out_w());
    let pooled = g.co * poh * pow;
    let lay = ColLayout::new(g);
    y.par_chunks_mut(pooled)
        .zip(argmax.par_chunks_mut(pooled))
        .zip(x.par_chunks(g.in_image()))
        .enumerate()
        .for_each(|(n, ((yn, an), xn))| {
            prefetch_next_input(g, x, n);
            with_scratch(lay.len + g.co * p, |buf| {
                let (col, full) = buf.split_at_mut(lay.len);
                lay.unfold(g, xn, col);
                // SAFETY: the caller checked the level; every row of col holds p floats at
                // its offset, w holds co·K and full co·P.
                unsafe {
                    by_k_for!(
                        k,
                        V,
                        fwd_image(col, &lay.offs, p, w, bias, full, g.co, false)
                    )
                }
                for ((plane, yp), ap) in full
                    .chunks_exact(p)
                    .zip(yn.chunks_exact_mut(poh * pow))
                    .zip(an.chunks_exact_mut(poh * pow))
                {
                    pool_2x2(level, plane, g.ow, poh, pow, yp, ap);
                    if relu {
                        for v in yp.iter_mut() {
                            *v = if *v < 0.0 { 0.0 } else { *v };
                        }
                    }
                }
            });
        });
}

/// Weight gradient (overwritten) and, if asked, bias gradient at level `V` from `dy`, the
/// gradient of the forward's output, and its arg-max, over the fixed chunk partition `parts`;
/// `relu_y`: the forward's output where it rectified (its gradient passes where `y > 0`).
#[allow(clippy::too_many_arguments)]
pub(in crate::conv) fn backward_params_pool<V: Kernels>(
    level: SimdLevel,
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    argmax: &[u32],
    relu_y: Option<&[f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    parts: BatchChunks,
) {
    let (k, p) = (g.k(), g.p());
    let ps = pool_shape(g);
    let pooled_plane = ps.out_h() * ps.out_w();
    let pooled = g.co * pooled_plane;
    let lay = ColLayout::new(g);
    let wlen = g.co * k;
    let want_bias = db.is_some();
    // Per chunk: its weight partial and the plane sums of its images (image-major).
    let chunks: Vec<(Vec<f32>, Vec<f32>)> = (0..parts.count)
        .into_par_iter()
        .map(|ch| {
            let images = parts.images(ch);
            let mut acc = vec![0.0f32; wlen * V::N];
            let mut sums = Vec::with_capacity(if want_bias { images.len() * g.co } else { 0 });
            for n in images.clone() {
                let xn = &x[n * g.in_image()..(n + 1) * g.in_image()];
                let dyn_ = &dy[n * pooled..(n + 1) * pooled];
                let an = &argmax[n * pooled..(n + 1) * pooled];
                if n + 1 < images.end {
                    prefetch_next_input(g, x, n);
                }
                with_scratch(lay.len + 2 * p, |buf| {
                    let (col, planes) = buf.split_at_mut(lay.len);
                    lay.unfold(g, xn, col);
                    // Two channels at a time: their full-size gradient planes (in L1), then
                    // their weight and bias sums over those planes.
                    let mut c = 0;
                    while c < g.co {
                        let pair = (g.co - c).min(2);
                        let planes = &mut planes[..pair * p];
                        for (i, plane) in planes.chunks_exact_mut(p).enumerate() {
                            let at = (c + i) * pooled_plane..(c + i + 1) * pooled_plane;
                            let keep = relu_y.map(|y| &y[n * pooled..][at.clone()]);
                            unpool_plane(level, &ps, plane, &dyn_[at.clone()], &an[at], keep);
                        }
                        let mut lanes = [[0.0f32; 8]; 2];
                        let acc = &mut acc[c * k * V::N..(c + pair) * k * V::N];
                        let bias = want_bias.then_some(&mut lanes[..pair]);
                        // SAFETY: the caller checked the level; col rows hold p floats at
                        // their offsets, planes pair·P, acc pair·K·N.
                        unsafe {
                            by_k_for!(
                                k,
                                V,
                                wgrad_bias_channels(col, &lay.offs, p, planes, acc, bias)
                            )
                        }
                        if want_bias {
                            for (l, plane) in lanes.iter().zip(planes.chunks_exact(p)) {
                                sums.push(plane_sum_finish(l, &plane[p / 8 * 8..]));
                            }
                        }
                        c += pair;
                    }
                });
            }
            let partial = acc.chunks_exact(V::N).map(sum_lanes).collect();
            (partial, sums)
        })
        .collect();
    dw.copy_from_slice(&chunks[0].0);
    for (part, _) in &chunks[1..] {
        for (d, s) in dw.iter_mut().zip(part) {
            *d += *s;
        }
    }
    if let Some(db) = db {
        // Images summed in f64, in batch order, as conv2d_backward_bias does.
        for (c, out) in db[..g.co].iter_mut().enumerate() {
            let mut total = 0.0f64;
            for (_, sums) in &chunks {
                for image in sums.chunks_exact(g.co) {
                    total += image[c] as f64;
                }
            }
            *out = total as f32;
        }
    }
}
