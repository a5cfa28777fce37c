//! max_pool2d over NCHW. PLACEHOLDER signatures; implementation pending.

use crate::Pool2dShape;

/// `y` = max over each window; `argmax` = index of the winner inside its input plane
/// (`ih·in_w + iw`), first maximum on ties.
pub fn max_pool2d_forward(s: &Pool2dShape, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let _ = (s, x, y, argmax);
    todo!("max_pool2d_forward")
}

/// `dx` (overwritten) = `dy` routed to each window's arg-max; overlapping windows add.
pub fn max_pool2d_backward(s: &Pool2dShape, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let _ = (s, dy, argmax, dx);
    todo!("max_pool2d_backward")
}
