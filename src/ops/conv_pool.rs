//! conv2d followed by a 2×2/stride-2 max-pool, and a ReLU if asked, as one op: the layers of
//! the presets' convolutional blocks (`conv → relu → maxpool2`; ReLU and max commute, so the
//! ReLU runs on the pooled output). Where the backend fuses it (the CPU, for thin convs at
//! AVX-512 or NEON) the conv's full-size output and gradient never reach memory; elsewhere it
//! is the kernels one after the other. Values are those of
//! `relu(max_pool2d(conv2d(x, w, b), 2, 2))` bit for bit; the weight and bias gradients agree
//! with that composition's to rounding (the fused backward sums at the pooled resolution, in
//! another order).

use super::conv::{conv2d_grads, conv2d_shape};
use super::elementwise::with_node;
use super::*;
use crate::autograd::record;

/// `y = max_pool2d(conv2d(x, w, b, p), (2, 2), (2, 2))`, then ReLU if `relu`, NCHW, as
/// PyTorch's `F.max_pool2d(F.conv2d(x, w, b, …), 2)` (and `F.relu` of that).
pub fn conv2d_max_pool2(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
    relu: bool,
) -> Result<Tensor> {
    const OP: &str = "conv2d_max_pool2";
    let s = conv2d_shape(OP, x, weight, bias, p)?;
    let ps = crate::backend::pool_after(&s);
    ps.validate()
        .map_err(|e| Error::Shape(format!("{OP}: the conv output cannot be pooled: {e}")))?;
    let be = x.device().backend();
    let out_shape = [s.batch, s.out_channels, ps.out_h(), ps.out_w()];
    let y = Tensor::empty_like_shape(&out_shape, DType::F32, x.device())?;
    let argmax = Tensor::empty_like_shape(&out_shape, DType::U32, x.device())?;
    be.conv2d_pool_forward(
        &s,
        x.storage(),
        weight.storage(),
        bias.map(|b| b.storage()),
        relu,
        y.storage(),
        argmax.storage(),
    )?;

    let mut all = vec![x, weight];
    all.extend(bias);
    let (sx, sw) = (x.clone(), weight.clone());
    // The output itself, for the ReLU's backward (y > 0 exactly where the pooled value was).
    let sy = relu.then(|| y.clone());
    let has_bias = bias.is_some();
    let node = record(OP, &all, move |dy| {
        let be = dy.device().backend();
        let relu_y = sy.as_ref().map(|y| y.storage());
        if sx.requires_grad() || !sw.requires_grad() {
            // The input's gradient needs the full-size one: the ReLU's and the pool's backward
            // first.
            let dpool = match relu_y {
                Some(y) => {
                    let m = Tensor::empty_like_shape(dy.shape(), DType::F32, dy.device())?;
                    be.relu_backward(y, dy.storage(), m.storage())?;
                    m
                }
                None => dy.clone(),
            };
            let full = Tensor::empty_like_shape(
                &[s.batch, s.out_channels, s.out_h(), s.out_w()],
                DType::F32,
                dy.device(),
            )?;
            be.max_pool2d_backward(&ps, dpool.storage(), argmax.storage(), full.storage())?;
            return conv2d_grads(&s, &sx, &sw, has_bias, &full);
        }
        let dw = Tensor::empty_like_shape(sw.shape(), DType::F32, dy.device())?;
        let db = if has_bias {
            Some(Tensor::empty_like_shape(
                &[s.out_channels],
                DType::F32,
                dy.device(),
            )?)
        } else {
            None
        };
        be.conv2d_pool_backward_params(
            &s,
            sx.storage(),
            dy.storage(),
            argmax.storage(),
            relu_y,
            dw.storage(),
            db.as_ref().map(|d| d.storage()),
        )?;
        let mut out = vec![None, Some(dw)];
        if let Some(db) = db {
            out.push(Some(db));
        }
        Ok(out)
    });
    Ok(with_node(y, node))
}
