//! conv2d over NCHW: forward, input gradient, weight gradient, bias gradient.
//! PLACEHOLDER signatures; implementation pending.

use crate::Conv2dShape;

/// `y[n, co, oh, ow] = bias[co] + Σ_{ci,kh,kw} w[co, ci, kh, kw] · x[n, ci, oh·s−p+kh, ow·s−p+kw]`.
pub fn conv2d_forward(s: &Conv2dShape, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let _ = (s, x, w, bias, y);
    todo!("conv2d_forward")
}

/// `dx = ∂L/∂x` given `dy = ∂L/∂y` (overwrites dx).
pub fn conv2d_backward_input(s: &Conv2dShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let _ = (s, w, dy, dx);
    todo!("conv2d_backward_input")
}

/// `dw = ∂L/∂w` summed over the batch (overwrites dw).
pub fn conv2d_backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let _ = (s, x, dy, dw);
    todo!("conv2d_backward_weight")
}

/// `db[co] = Σ_{n,oh,ow} dy[n, co, oh, ow]` (overwrites db).
pub fn conv2d_backward_bias(s: &Conv2dShape, dy: &[f32], db: &mut [f32]) {
    let _ = (s, dy, db);
    todo!("conv2d_backward_bias")
}
