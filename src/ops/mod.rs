//! Ops: each op's shape rules, its forward (kernel calls through the [`Backend`] seam) and its
//! gradient rule. Files mirror `kernels/src/` and `shaders/`:
//!
//! | op file | CPU kernel | WGSL kernel |
//! |---|---|---|
//! | `matmul.rs` (matmul, linear) | `gemm/` | `matmul.wgsl` |
//! | `conv.rs` (conv2d) | `conv/` | `conv2d.wgsl` |
//! | `conv_pool.rs` (conv2d_max_pool2, with or without its ReLU) | `conv/pooled.rs` (thin convs at AVX-512 and NEON; else `conv/`, `pool/`, `elementwise/`) | `conv2d.wgsl`, `pool.wgsl`, `elementwise.wgsl` |
//! | `pool.rs` (max_pool2d) | `pool/` | `pool.wgsl` |
//! | `elementwise.rs` (relu, add, add_scaled_, scale, sum, mean, reshape) | `elementwise.rs` | `elementwise.wgsl`, `reduce.wgsl` |
//! | `softmax.rs` (softmax_t, log_softmax, cross_entropy, kd_loss) | `softmax/` | `softmax.wgsl` |
//! | `mse.rs` (mse_loss) | `mse.rs` | `mse.wgsl` (+ `reduce.wgsl`'s finish) |
//! | `optim.rs` (sgd_step_, adam_step_) | `optim.rs` | `optim.wgsl` |
//!
//! Every op validates its inputs (`Error::Shape` for shapes, `Error::InvalidArgument` for
//! other values: a temperature, a dtype); kernels never see an invalid call. Ops whose name
//! ends in `_` work in place and record nothing on the tape.
//!
//! [`Backend`]: crate::backend::Backend

mod conv;
mod conv_pool;
mod elementwise;
mod matmul;
mod mse;
mod optim;
mod pool;
mod softmax;

pub use conv::{conv2d, Conv2dParams};
pub use conv_pool::conv2d_max_pool2;
pub use elementwise::{add, add_scaled_, flatten, mean, relu, reshape, scale, sum};
pub use matmul::{linear, matmul};
pub use mse::mse_loss;
pub use optim::{adam_step_, sgd_step_};
pub use pool::max_pool2d;
pub use softmax::{accuracy_count, cross_entropy, kd_loss, log_softmax, softmax_t, NO_LABEL};

use crate::tensor::{DType, Tensor};
use crate::{Error, Result};

pub(crate) fn check_same_device(op: &str, tensors: &[&Tensor]) -> Result<()> {
    let first = tensors[0].device();
    for t in &tensors[1..] {
        if !t.device().same(first) {
            return Err(Error::Device(format!(
                "{op}: tensors on different devices ({} and {})",
                first.name(),
                t.device().name()
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_f32(op: &str, tensors: &[&Tensor]) -> Result<()> {
    for t in tensors {
        if t.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(format!(
                "{op}: expected an f32 tensor, got u32 of shape {:?}",
                t.shape()
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_nonempty(op: &str, t: &Tensor) -> Result<()> {
    if t.shape().is_empty() && t.numel() == 1 {
        return Ok(());
    }
    if t.shape().contains(&0) {
        return Err(Error::Shape(format!(
            "{op}: zero-sized dimension in shape {:?}",
            t.shape()
        )));
    }
    Ok(())
}

pub(crate) fn check_rank(op: &str, name: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.shape().len() != rank {
        return Err(Error::Shape(format!(
            "{op}: {name} must have rank {rank}, got shape {:?}",
            t.shape()
        )));
    }
    Ok(())
}
