//! conv2d followed by a 2×2/stride-2 max-pool (and a ReLU, if asked), as one kernel where the
//! thin kernels run at a level with the vector-type kernels (AVX-512, NEON): the full-size
//! conv output never reaches memory (`thin/lanes/pooled.rs` has the forward's algorithm,
//! `thin/lanes/pooled_grad.rs` the backward's). Elsewhere the caller runs conv2d, max_pool2d
//! (and relu) one after the other ([`conv2d_pool_fuses`] says which): the forward gives the
//! same bits both ways, the backward the same gradients to rounding (it sums at the pooled
//! resolution, in another order).

use super::{uses_thin_kernels, BatchChunks, Geo};
use crate::simd::SimdLevel;
use crate::{Conv2dShape, Pool2dShape};

/// Whether [`conv2d_pool_forward_at`] and [`conv2d_pool_backward_params_at`] run `s` at
/// `level`: a thin conv (see [`super::uses_thin_kernels`]) at AVX-512 or NEON,
/// with an output of at least 2×2.
pub fn conv2d_pool_fuses(level: SimdLevel, s: &Conv2dShape) -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let pools = super::thin::pools_at(level);
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let pools = false;
    pools && uses_thin_kernels(level, s) && s.out_h() >= 2 && s.out_w() >= 2
}

/// The pool that follows the conv `s`: 2×2, stride 2, over its output planes.
pub fn pool_after(s: &Conv2dShape) -> Pool2dShape {
    Pool2dShape {
        batch: s.batch,
        channels: s.out_channels,
        in_h: s.out_h(),
        in_w: s.out_w(),
        kernel_h: 2,
        kernel_w: 2,
        stride_h: 2,
        stride_w: 2,
    }
}

/// `y = max_pool2d_2x2(conv2d(x, w, bias))`, rectified if `relu` (as
/// [`crate::elementwise::relu`] would), with the pool's arg-max (each winner's index inside
/// its conv output plane, as [`crate::pool::max_pool2d_forward`] gives). Panics unless
/// [`conv2d_pool_fuses`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_forward_at(
    level: SimdLevel,
    s: &Conv2dShape,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    argmax: &mut [u32],
) {
    assert!(
        conv2d_pool_fuses(level, s),
        "conv2d_pool: no fused path for this shape at {}",
        level.name()
    );
    let (g, pooled) = (Geo::new(s), pool_after(s).output_len());
    assert!(x.len() >= s.input_len(), "conv2d_pool_forward: x too short");
    assert!(
        w.len() >= s.weight_len(),
        "conv2d_pool_forward: w too short"
    );
    assert!(
        y.len() >= pooled && argmax.len() >= pooled,
        "conv2d_pool_forward: y or argmax too short"
    );
    if let Some(b) = bias {
        assert!(b.len() >= g.co, "conv2d_pool_forward: bias too short");
    }
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    super::thin::forward_pool(
        level,
        &g,
        &x[..s.input_len()],
        &w[..s.weight_len()],
        bias.map(|b| &b[..g.co]),
        relu,
        &mut y[..pooled],
        &mut argmax[..pooled],
    );
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = relu;
}

/// The weight gradient (overwritten) and, if `db` is given, the bias gradient of
/// [`conv2d_pool_forward_at`], from `dy` (the gradient of its output), its `argmax` and, where
/// it rectified, its output `relu_y`: the gradients of [`crate::elementwise::relu_backward`],
/// [`crate::pool::max_pool2d_backward`], then [`super::conv2d_backward_weight_at`] and
/// [`super::conv2d_backward_bias`], summed in another order (so equal to rounding), the same
/// bits whatever the thread count. Panics unless [`conv2d_pool_fuses`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_backward_params_at(
    level: SimdLevel,
    s: &Conv2dShape,
    x: &[f32],
    dy: &[f32],
    argmax: &[u32],
    relu_y: Option<&[f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
) {
    assert!(
        conv2d_pool_fuses(level, s),
        "conv2d_pool: no fused path for this shape at {}",
        level.name()
    );
    let (g, pooled) = (Geo::new(s), pool_after(s).output_len());
    assert!(
        x.len() >= s.input_len(),
        "conv2d_pool_backward: x too short"
    );
    assert!(
        dy.len() >= pooled && argmax.len() >= pooled && relu_y.is_none_or(|y| y.len() >= pooled),
        "conv2d_pool_backward: dy, argmax or y too short"
    );
    assert!(
        dw.len() >= s.weight_len(),
        "conv2d_pool_backward: dw too short"
    );
    let db = db.map(|db| {
        assert!(db.len() >= g.co, "conv2d_pool_backward: db too short");
        &mut db[..g.co]
    });
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    super::thin::backward_params_pool(
        level,
        &g,
        &x[..s.input_len()],
        &dy[..pooled],
        &argmax[..pooled],
        relu_y.map(|y| &y[..pooled]),
        &mut dw[..s.weight_len()],
        db,
        BatchChunks::new(s.batch),
    );
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = (g, db, relu_y, BatchChunks::new(s.batch));
}
