//! A thin convolution and the 2×2/stride-2 max-pool after it, forward, as one pass per image
//! over [`Lanes`](super::Lanes): `y = max_pool2d_2x2(conv2d(x, w, b))`, then a ReLU if asked.
//! (Its backward is `pooled_grad.rs`.)
//!
//! # Algorithm
//!
//! Per image (one task each): unfold the image ([`ColLayout`]), run the thin forward
//! ([`super::forward::fwd_image`]) into a scratch of `co·P` floats, and pool that scratch plane
//! by plane ([`crate::pool::pool_2x2`]) into y and the arg-max; the ReLU rectifies y in place
//! with the ReLU kernel's test (`x < 0`). (ReLU and max commute, so this is also the pool of
//! the rectified conv output.) The same bits as conv2d, max_pool2d and relu one after the
//! other.
//!
//! # What bounds it
//!
//! The unfused layer writes the full-size conv output (the teacher's conv1: 25.7 MB at batch
//! 128) and reads it back in the pool. Here the full-size planes live only in scratch (one
//! image's, 200 KB, in L2), so what reaches memory is the input, the pooled output and its
//! arg-max, a quarter of the size; the compute is that of the two kernels.

use rayon::prelude::*;

use super::{by_k_for, ColLayout, Kernels};
use crate::conv::thin::prefetch_next_input;
use crate::conv::{with_scratch, Geo};
use crate::pool::pool_2x2;
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
