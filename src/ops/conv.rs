//! conv2d and its gradient rule: the input gradient, weight gradient and bias gradient are
//! one kernel call each.

use super::elementwise::with_node;
use super::*;
use crate::autograd::record;
use crate::backend::Conv2dShape;

/// Stride and zero padding of a convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
        }
    }
}

/// `y = conv2d(x[N,C,H,W], w[O,C,KH,KW]) + b[O]`, NCHW, as PyTorch's `F.conv2d`.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Tensor> {
    let mut all = vec![x, weight];
    all.extend(bias);
    check_f32("conv2d", &all)?;
    check_same_device("conv2d", &all)?;
    check_rank("conv2d", "input", x, 4)?;
    check_rank("conv2d", "weight", weight, 4)?;
    let (xs, ws) = (x.shape(), weight.shape());
    if xs[1] != ws[1] {
        return Err(Error::Shape(format!(
            "conv2d: input has {} channels but the weight {:?} expects {}",
            xs[1], ws, ws[1]
        )));
    }
    let s = Conv2dShape {
        batch: xs[0],
        in_channels: xs[1],
        in_h: xs[2],
        in_w: xs[3],
        out_channels: ws[0],
        kernel_h: ws[2],
        kernel_w: ws[3],
        stride_h: p.stride.0,
        stride_w: p.stride.1,
        pad_h: p.padding.0,
        pad_w: p.padding.1,
    };
    s.validate().map_err(Error::Shape)?;
    if let Some(b) = bias {
        if b.shape() != [s.out_channels] {
            return Err(Error::Shape(format!(
                "conv2d: bias shape {:?} != [{}]",
                b.shape(),
                s.out_channels
            )));
        }
    }
    let be = x.device().backend();
    let y = Tensor::empty_like_shape(
        &[s.batch, s.out_channels, s.out_h(), s.out_w()],
        DType::F32,
        x.device(),
    )?;
    be.conv2d_forward(
        &s,
        x.storage(),
        weight.storage(),
        bias.map(|b| b.storage()),
        y.storage(),
    )?;

    let (sx, sw) = (x.clone(), weight.clone());
    let has_bias = bias.is_some();
    let node = record("conv2d", &all, move |dy| {
        let be = dy.device().backend();
        let mut out = vec![None, None];
        if sx.requires_grad() {
            let dx = Tensor::empty_like_shape(sx.shape(), DType::F32, dy.device())?;
            be.conv2d_backward_input(&s, sw.storage(), dy.storage(), dx.storage())?;
            out[0] = Some(dx);
        }
        if sw.requires_grad() {
            let dw = Tensor::empty_like_shape(sw.shape(), DType::F32, dy.device())?;
            be.conv2d_backward_weight(&s, sx.storage(), dy.storage(), dw.storage())?;
            out[1] = Some(dw);
        }
        if has_bias {
            let db = Tensor::empty_like_shape(&[s.out_channels], DType::F32, dy.device())?;
            be.conv2d_backward_bias(&s, dy.storage(), db.storage())?;
            out.push(Some(db));
        }
        Ok(out)
    });
    Ok(with_node(y, node))
}
