//! A batch too large for the GPU adapter's limits is a clear error, not a crash: a training
//! step whose first activation needs a buffer over the adapter's max storage buffer binding
//! size returns an `Err` that names the layer, the tensor, the limit and the way out (a
//! smaller batch size), and the same device then trains a small batch exactly as the CPU does.
//!
//! The batch is picked from the limit the device reports, so the test means the same thing on
//! lavapipe (128 MiB) as on a hardware adapter. Nothing over the limit is ever allocated: the
//! pool refuses it before asking the driver. Without an adapter the test prints one line and
//! passes; with `DISTILL_REQUIRE_GPU=1` a missing adapter fails it.

mod common;

use distill::backend::gpu::GpuBackend;
use distill::nn::{ArchSpec, Sequential};
use distill::ops;
use distill::optim::{OptimConfig, Optimizer};
use distill::rng::Rng;
use distill::{Device, Result, Tensor};

const SEED: u64 = 7;

fn open_gpu() -> Option<std::sync::Arc<GpuBackend>> {
    common::gpu_backend_or_skip()
}

/// Forward, cross-entropy, backward and an Adam step on `batch` images; the loss.
fn train_step(model: &Sequential, opt: &mut Optimizer, x: &[f32], batch: usize) -> Result<f32> {
    let dev = model.parameters()[0].1.device().clone();
    let xb = Tensor::from_f32(x, &[batch, 1, 28, 28], &dev)?;
    let labels: Vec<u32> = (0..batch as u32).map(|i| i % 10).collect();
    let yb = Tensor::from_u32(&labels, &[batch], &dev)?;
    let loss = ops::cross_entropy(&model.forward(&xb)?, &yb)?;
    opt.zero_grad();
    loss.backward()?;
    opt.step()?;
    loss.item()
}

fn images(batch: usize) -> Vec<f32> {
    let mut rng = Rng::new(SEED);
    (0..batch * 784).map(|_| rng.uniform(0.0, 1.0)).collect()
}

#[test]
fn a_batch_over_the_binding_limit_is_a_clear_error_and_the_device_survives() {
    let Some(gpu) = open_gpu() else { return };
    let device = gpu.device();
    let spec = ArchSpec::preset("student", 1, 28, 28, 10).unwrap();
    let model = spec.build(&device, SEED).unwrap();
    let mut opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), model.parameters()).unwrap();

    // conv1's output, [batch, c1, 28, 28] f32, is the largest activation of the student; one
    // image more than fits under the binding limit.
    let limit = gpu.limits().max_storage_buffer_binding_size;
    assert!(limit <= gpu.limits().max_buffer_size, "{:?}", gpu.limits());
    let c1 = spec.conv_channels[0];
    let per_image = (c1 * 28 * 28 * 4) as u64;
    let batch = (limit / per_image + 1) as usize;
    let input_bytes = (batch * 784 * 4) as u64;
    assert!(
        input_bytes < limit,
        "the input itself must fit: {input_bytes} bytes"
    );

    let err = train_step(&model, &mut opt, &images(batch), batch)
        .expect_err("a batch whose activations exceed the binding limit must fail");
    let msg = err.to_string();
    for needle in [
        "conv1".to_string(),
        format!("[{batch}, {c1}, 28, 28]"),
        format!("{}", batch as u64 * per_image),
        "max_storage_buffer_binding_size".to_string(),
        limit.to_string(),
        "a smaller batch size".to_string(),
    ] {
        assert!(msg.contains(&needle), "the error names {needle:?}: {msg}");
    }
    assert!(
        !msg.contains("--"),
        "the library names no command-line flag: {msg}"
    );

    // The same device and model then train a small batch exactly as the CPU does.
    let small = 8;
    let x = images(small);
    let gpu_loss = train_step(&model, &mut opt, &x, small).unwrap();
    let cpu_model = spec.build(&Device::cpu(), SEED).unwrap();
    let mut cpu_opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), cpu_model.parameters()).unwrap();
    let cpu_loss = train_step(&cpu_model, &mut cpu_opt, &x, small).unwrap();
    assert!(
        (gpu_loss - cpu_loss).abs() <= 1e-4 * cpu_loss.abs().max(1.0),
        "small batch after the error: GPU loss {gpu_loss}, CPU loss {cpu_loss}"
    );
    for ((name, g), (_, c)) in model.parameters().iter().zip(cpu_model.parameters()) {
        let (g, c) = (g.to_vec().unwrap(), c.to_vec().unwrap());
        let scale = c.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = g
            .iter()
            .zip(&c)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= 1e-4 * scale.max(1.0),
            "{name} after one step: max |GPU - CPU| = {diff}"
        );
    }
}
