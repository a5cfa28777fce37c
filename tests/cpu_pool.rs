//! A steady-state training loop on the CPU backend allocates nothing after its first steps:
//! every buffer comes back from the pool. (Its own test binary: the CPU device is one per
//! process, and other tests running beside it would allocate too.)

use distill::nn::ArchSpec;
use distill::ops;
use distill::optim::{OptimConfig, Optimizer};
use distill::{Device, Tensor};

#[test]
fn training_steps_reuse_pooled_buffers() {
    let dev = Device::cpu();
    let spec = ArchSpec::preset("student", 1, 12, 12, 4).unwrap();
    let model = spec.build(&dev, 3).unwrap();
    let mut opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), model.parameters()).unwrap();
    let x: Vec<f32> = (0..16 * 144)
        .map(|i| ((i * 37) % 101) as f32 / 101.0)
        .collect();
    let labels: Vec<u32> = (0..16).map(|i| i % 4).collect();
    let mut counts = Vec::new();
    let mut losses = Vec::new();
    for _ in 0..6 {
        let xb = Tensor::from_f32(&x, &[16, 1, 12, 12], &dev).unwrap();
        let yb = Tensor::from_u32(&labels, &[16], &dev).unwrap();
        let loss = ops::cross_entropy(&model.forward(&xb).unwrap(), &yb).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        opt.step().unwrap();
        losses.push(loss.item().unwrap());
        drop(loss);
        counts.push(dev.backend().fresh_allocations());
    }
    assert!(counts[0] > 0);
    assert_eq!(
        counts[2], counts[5],
        "fresh allocations per step: {counts:?}"
    );
    // Reused buffers are fully overwritten: training still makes progress on one batch.
    assert!(losses[5] < losses[0], "losses {losses:?}");
}
