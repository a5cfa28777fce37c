//! max_pool2d and its gradient rule (route `dy` to each window's arg-max).

use super::elementwise::with_node;
use super::*;
use crate::autograd::record;
use crate::backend::Pool2dShape;

/// Max-pool over `kernel` windows moved by `stride`, no padding (PyTorch's `F.max_pool2d`
/// with `ceil_mode=False`).
pub fn max_pool2d(x: &Tensor, kernel: (usize, usize), stride: (usize, usize)) -> Result<Tensor> {
    check_f32("max_pool2d", &[x])?;
    check_rank("max_pool2d", "input", x, 4)?;
    let xs = x.shape();
    let s = Pool2dShape {
        batch: xs[0],
        channels: xs[1],
        in_h: xs[2],
        in_w: xs[3],
        kernel_h: kernel.0,
        kernel_w: kernel.1,
        stride_h: stride.0,
        stride_w: stride.1,
    };
    s.validate().map_err(Error::Shape)?;
    let be = x.device().backend();
    let out_shape = [s.batch, s.channels, s.out_h(), s.out_w()];
    let y = Tensor::empty_like_shape(&out_shape, DType::F32, x.device())?;
    let argmax = Tensor::empty_like_shape(&out_shape, DType::U32, x.device())?;
    be.max_pool2d_forward(&s, x.storage(), y.storage(), argmax.storage())?;
    let in_shape = xs.to_vec();
    let node = record("max_pool2d", &[x], move |dy| {
        let dx = Tensor::empty_like_shape(&in_shape, DType::F32, dy.device())?;
        dy.device().backend().max_pool2d_backward(
            &s,
            dy.storage(),
            argmax.storage(),
            dx.storage(),
        )?;
        Ok(vec![Some(dx)])
    });
    Ok(with_node(y, node))
}
