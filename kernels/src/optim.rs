//! Optimiser updates in place, with PyTorch's semantics. PLACEHOLDER signatures.

/// `torch.optim.SGD` hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

/// One SGD step. `first_step` starts the momentum buffer as PyTorch does (`buf = g`).
pub fn sgd_step(
    cfg: &SgdConfig,
    first_step: bool,
    param: &mut [f32],
    grad: &[f32],
    momentum_buf: &mut [f32],
) {
    let _ = (cfg, first_step, param, grad, momentum_buf);
    todo!()
}

/// `torch.optim.Adam` (`decoupled_weight_decay = false`) / `AdamW` (`true`) hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub decoupled_weight_decay: bool,
}

/// One Adam/AdamW step; `step` counts from 1 (bias correction).
pub fn adam_step(
    cfg: &AdamConfig,
    step: u32,
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) {
    let _ = (cfg, step, param, grad, m, v);
    todo!()
}
