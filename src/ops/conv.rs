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

impl Conv2dParams {
    /// The convolution of an input of shape `xs` `[N, C, H, W]` by weights of shape `ws`
    /// `[O, C, KH, KW]` with these parameters (unchecked: see [`Conv2dShape::validate`]).
    pub(crate) fn shape(self, xs: &[usize], ws: &[usize]) -> Conv2dShape {
        Conv2dShape {
            batch: xs[0],
            in_channels: xs[1],
            in_h: xs[2],
            in_w: xs[3],
            out_channels: ws[0],
            kernel_h: ws[2],
            kernel_w: ws[3],
            stride_h: self.stride.0,
            stride_w: self.stride.1,
            pad_h: self.padding.0,
            pad_w: self.padding.1,
        }
    }
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
    let s = conv2d_shape("conv2d", x, weight, bias, p)?;
    let mut all = vec![x, weight];
    all.extend(bias);
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
        conv2d_grads(&s, &sx, &sw, has_bias, dy)
    });
    Ok(with_node(y, node))
}

/// The gradients of a convolution's input, weight and (if it has one) bias from `dy`, the
/// gradient of its output; `None` where an operand needs none.
pub(super) fn conv2d_grads(
    s: &Conv2dShape,
    x: &Tensor,
    weight: &Tensor,
    has_bias: bool,
    dy: &Tensor,
) -> Result<Vec<Option<Tensor>>> {
    let be = dy.device().backend();
    let mut out = vec![None, None];
    if x.requires_grad() {
        let dx = Tensor::empty_like_shape(x.shape(), DType::F32, dy.device())?;
        be.conv2d_backward_input(s, weight.storage(), dy.storage(), dx.storage())?;
        out[0] = Some(dx);
    }
    if weight.requires_grad() {
        let dw = Tensor::empty_like_shape(weight.shape(), DType::F32, dy.device())?;
        be.conv2d_backward_weight(s, x.storage(), dy.storage(), dw.storage())?;
        out[1] = Some(dw);
    }
    if has_bias {
        let db = Tensor::empty_like_shape(&[s.out_channels], DType::F32, dy.device())?;
        be.conv2d_backward_bias(s, dy.storage(), db.storage())?;
        out.push(Some(db));
    }
    Ok(out)
}

/// The checks of a convolution's operands (dtype, device, ranks, channels, bias) and the
/// shape they make; `op` names the op in the errors.
pub(super) fn conv2d_shape(
    op: &str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    p: Conv2dParams,
) -> Result<Conv2dShape> {
    let mut all = vec![x, weight];
    all.extend(bias);
    check_f32(op, &all)?;
    check_same_device(op, &all)?;
    check_rank(op, "input", x, 4)?;
    check_rank(op, "weight", weight, 4)?;
    let (xs, ws) = (x.shape(), weight.shape());
    if xs[1] != ws[1] {
        return Err(Error::Shape(format!(
            "{op}: input has {} channels but the weight {:?} expects {}",
            xs[1], ws, ws[1]
        )));
    }
    let s = p.shape(xs, ws);
    s.validate().map_err(Error::Shape)?;
    if let Some(b) = bias {
        if b.shape() != [s.out_channels] {
            return Err(Error::Shape(format!(
                "{op}: bias shape {:?} != [{}]",
                b.shape(),
                s.out_channels
            )));
        }
    }
    Ok(s)
}
