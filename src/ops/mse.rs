//! Mean squared error, the loss of feature (hint) distillation, with its gradient rule. As the
//! other losses, its kernel writes the gradient in the same pass as the loss (it costs one
//! store per element there); backward only scales it by the upstream gradient.

use super::elementwise::with_node;
use super::*;
use crate::autograd::{record, should_record};

/// `mean((a − b)²)` over every element, as a `[]` tensor. `a` and `b` have the same shape.
/// Gradient: `2(a − b)/n · dloss` to `a`, its negative to `b`.
pub fn mse_loss(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_f32("mse_loss", &[a, b])?;
    check_same_device("mse_loss", &[a, b])?;
    if a.shape() != b.shape() {
        return Err(Error::Shape(format!(
            "mse_loss: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        )));
    }
    check_nonempty("mse_loss", a)?;
    let n = a.numel();
    let device = a.device();
    let loss = Tensor::empty_like_shape(&[], DType::F32, device)?;
    let grad = should_record(&[a, b])
        .then(|| Tensor::empty_like_shape(a.shape(), DType::F32, device))
        .transpose()?;
    device.backend().mse_loss(
        n,
        a.storage(),
        b.storage(),
        loss.storage(),
        grad.as_ref().map(|g| g.storage()),
    )?;
    let (a_needs, b_needs) = (a.requires_grad(), b.requires_grad());
    let node = grad.and_then(|g| {
        record("mse_loss", &[a, b], move |dloss| {
            let be = g.device().backend();
            let da = Tensor::empty_like_shape(g.shape(), DType::F32, g.device())?;
            be.scale_by(g.storage(), dloss.storage(), da.storage())?;
            let db = if b_needs {
                let db = Tensor::empty_like_shape(g.shape(), DType::F32, g.device())?;
                be.scale(da.storage(), -1.0, db.storage())?;
                Some(db)
            } else {
                None
            };
            Ok(vec![a_needs.then_some(da), db])
        })
    });
    Ok(with_node(loss, node))
}
