//! The optimiser updates as in-place ops on a parameter and its state (no tape): one fused
//! kernel per parameter. `src/optim.rs` keeps the per-parameter state and the schedule.

use super::*;
use crate::backend::{AdamConfig, SgdConfig};

/// Checks that every tensor is f32, on one device, with the parameter's shape.
fn check_state(op: &str, param: &Tensor, others: &[&Tensor]) -> Result<()> {
    let mut all = vec![param];
    all.extend_from_slice(others);
    check_f32(op, &all)?;
    check_same_device(op, &all)?;
    for t in others {
        if t.shape() != param.shape() {
            return Err(Error::Shape(format!(
                "{op}: state {:?} does not match the parameter {:?}",
                t.shape(),
                param.shape()
            )));
        }
    }
    Ok(())
}

/// One SGD step of `param` with its gradient and momentum buffer (PyTorch's semantics; the
/// first step seeds the buffer with the gradient).
pub fn sgd_step_(
    cfg: &SgdConfig,
    first_step: bool,
    param: &Tensor,
    grad: &Tensor,
    momentum: &Tensor,
) -> Result<()> {
    check_state("sgd_step", param, &[grad, momentum])?;
    param.device().backend().sgd_step(
        cfg,
        first_step,
        param.storage(),
        grad.storage(),
        momentum.storage(),
    )
}

/// One Adam/AdamW step (`step` counts from 1) of `param` with its gradient and moments.
pub fn adam_step_(
    cfg: &AdamConfig,
    step: u32,
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
) -> Result<()> {
    check_state("adam_step", param, &[grad, m, v])?;
    param.device().backend().adam_step(
        cfg,
        step,
        param.storage(),
        grad.storage(),
        m.storage(),
        v.storage(),
    )
}
