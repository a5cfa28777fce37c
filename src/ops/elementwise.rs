//! relu, add, scale, sum, mean, reshape/flatten and their gradient rules; `add_scaled_`
//! (in place, no tape).

use std::sync::Arc;

use super::*;
use crate::autograd::record;
use crate::tensor::numel;

/// `max(0, x)`. Gradient: `dy` where `x > 0`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    check_f32("relu", &[x])?;
    let be = x.device().backend();
    let y = Tensor::empty_like_shape(x.shape(), DType::F32, x.device())?;
    be.relu(x.storage(), y.storage())?;
    let saved = x.clone();
    let node = record("relu", &[x], move |dy| {
        let dx = Tensor::empty_like_shape(saved.shape(), DType::F32, saved.device())?;
        saved
            .device()
            .backend()
            .relu_backward(saved.storage(), dy.storage(), dx.storage())?;
        Ok(vec![Some(dx)])
    });
    Ok(with_node(y, node))
}

/// `a + b` (same shape). Gradient: `dy` to both.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_f32("add", &[a, b])?;
    check_same_device("add", &[a, b])?;
    if a.shape() != b.shape() {
        return Err(Error::Shape(format!(
            "add: shapes {:?} and {:?} differ",
            a.shape(),
            b.shape()
        )));
    }
    let y = Tensor::empty_like_shape(a.shape(), DType::F32, a.device())?;
    a.device()
        .backend()
        .add(a.storage(), b.storage(), y.storage())?;
    let node = record("add", &[a, b], |dy| {
        Ok(vec![Some(dy.clone()), Some(dy.clone())])
    });
    Ok(with_node(y, node))
}

/// `acc += alpha · x` in place, outside the tape (running sums of metrics).
pub fn add_scaled_(acc: &Tensor, alpha: f32, x: &Tensor) -> Result<()> {
    check_f32("add_scaled_", &[acc, x])?;
    check_same_device("add_scaled_", &[acc, x])?;
    if acc.shape() != x.shape() {
        return Err(Error::Shape(format!(
            "add_scaled_: shapes {:?} and {:?} differ",
            acc.shape(),
            x.shape()
        )));
    }
    acc.device()
        .backend()
        .axpy(alpha, x.storage(), acc.storage())
}

/// `s · x`. Gradient: `s · dy`.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    check_f32("scale", &[x])?;
    let y = Tensor::empty_like_shape(x.shape(), DType::F32, x.device())?;
    x.device().backend().scale(x.storage(), s, y.storage())?;
    let node = record("scale", &[x], move |dy| {
        let dx = Tensor::empty_like_shape(dy.shape(), DType::F32, dy.device())?;
        dy.device().backend().scale(dy.storage(), s, dx.storage())?;
        Ok(vec![Some(dx)])
    });
    Ok(with_node(y, node))
}

/// `Σ x` as a one-element tensor of shape `[]`. Gradient: `dy` broadcast.
pub fn sum(x: &Tensor) -> Result<Tensor> {
    reduce_all("sum", x, 1.0)
}

/// `Σ x / n` as a one-element tensor of shape `[]`. Gradient: `dy / n` broadcast.
pub fn mean(x: &Tensor) -> Result<Tensor> {
    check_nonempty("mean", x)?;
    reduce_all("mean", x, 1.0 / x.numel() as f32)
}

fn reduce_all(name: &'static str, x: &Tensor, factor: f32) -> Result<Tensor> {
    check_f32(name, &[x])?;
    let be = x.device().backend();
    let total = Tensor::empty_like_shape(&[], DType::F32, x.device())?;
    be.sum(x.storage(), total.storage())?;
    let y = if factor != 1.0 {
        let y = Tensor::empty_like_shape(&[], DType::F32, x.device())?;
        be.scale(total.storage(), factor, y.storage())?;
        y
    } else {
        total
    };
    let shape = x.shape().to_vec();
    let node = record(name, &[x], move |dy| {
        let be = dy.device().backend();
        let ones = Tensor::empty_like_shape(&shape, DType::F32, dy.device())?;
        be.fill(ones.storage(), factor)?;
        let dx = Tensor::empty_like_shape(&shape, DType::F32, dy.device())?;
        be.scale_by(ones.storage(), dy.storage(), dx.storage())?;
        Ok(vec![Some(dx)])
    });
    Ok(with_node(y, node))
}

/// The same values under a new shape with as many elements (shares the buffer).
pub fn reshape(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if numel(shape) != x.numel() {
        return Err(Error::Shape(format!(
            "reshape: {:?} ({} elements) cannot become {:?}",
            x.shape(),
            x.numel(),
            shape
        )));
    }
    let from = x.shape().to_vec();
    let node = record("reshape", &[x], move |dy| Ok(vec![Some(view(dy, &from))]));
    Ok(Tensor::from_parts(
        x.storage_arc().clone(),
        shape.to_vec(),
        x.dtype(),
        x.device().clone(),
        node,
    ))
}

/// `[N, d1, d2, …] → [N, d1·d2·…]`, in NCHW order (as PyTorch's `flatten(1)`).
pub fn flatten(x: &Tensor) -> Result<Tensor> {
    if x.shape().is_empty() {
        return Err(Error::Shape("flatten: needs at least one dimension".into()));
    }
    let n = x.shape()[0];
    let rest = x.numel() / n.max(1);
    reshape(x, &[n, rest])
}

/// A no-grad view of `t` under another shape.
pub(crate) fn view(t: &Tensor, shape: &[usize]) -> Tensor {
    Tensor::from_parts(
        Arc::clone(t.storage_arc()),
        shape.to_vec(),
        t.dtype(),
        t.device().clone(),
        None,
    )
}

pub(crate) fn with_node(y: Tensor, node: Option<crate::autograd::Node>) -> Tensor {
    match node {
        None => y,
        Some(node) => Tensor::from_parts(
            y.storage_arc().clone(),
            y.shape().to_vec(),
            y.dtype(),
            y.device().clone(),
            Some(node),
        ),
    }
}
