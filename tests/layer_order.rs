//! The model's forward pass, with its fusions and reordering (a Linear and its ReLU as one
//! GEMM; a ReLU then a max-pool run as the pool then the ReLU), against its layers run one by
//! one in the order listed: the same loss and the same gradient for every parameter, on the
//! CPU and, where there is one, the GPU.

use distill::backend::gpu;
use distill::nn::ArchSpec;
use distill::rng::Rng;
use distill::{ops, Device, Tensor};

/// Loss and parameter gradients of `net` (built from `spec` with seed 5) on a fixed batch,
/// through `forward`.
fn loss_and_grads(
    device: &Device,
    spec: &ArchSpec,
    unfused: bool,
) -> (f32, Vec<(String, Vec<f32>)>) {
    let net = spec.build(device, 5).unwrap();
    let mut rng = Rng::new(11);
    // Inputs centred on 0, so that many pre-activations are negative and whole pool windows
    // are below zero (the case where the order could matter).
    let x: Vec<f32> = (0..3 * 28 * 28).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let x = Tensor::from_f32(&x, &[3, 1, 28, 28], device).unwrap();
    let target: Vec<f32> = (0..3 * 10).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let target = Tensor::from_f32(&target, &[3, 10], device).unwrap();
    let logits = if unfused {
        net.forward_unfused(&x).unwrap()
    } else {
        net.forward(&x).unwrap()
    };
    let loss = ops::mse_loss(&logits, &target).unwrap();
    loss.backward().unwrap();
    let grads = net
        .parameters()
        .into_iter()
        .map(|(name, p)| (name, p.grad().unwrap().to_vec().unwrap()))
        .collect();
    (loss.item().unwrap(), grads)
}

/// The same loss, and the same gradient for every parameter: bit for bit, except where the
/// CPU fuses conv1 with its pool (a thin conv at AVX-512 or NEON), whose weight and bias
/// gradients the fused backward sums in another order: there within `1e-5` of the largest
/// element.
fn assert_same_as_layer_by_layer(device: &Device) {
    for arch in ["student", "c3-c5-f7"] {
        let spec = ArchSpec::named(arch, 1, 28, 28, 10).unwrap();
        let (loss, grads) = loss_and_grads(device, &spec, false);
        let (loss_ref, grads_ref) = loss_and_grads(device, &spec, true);
        assert_eq!(loss, loss_ref, "{arch} on {}: loss", device.name());
        for ((name, g), (_, r)) in grads.iter().zip(&grads_ref) {
            assert_eq!(g.len(), r.len());
            let worst = g
                .iter()
                .zip(r)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let fused = device.is_cpu() && name.starts_with("conv1.");
            let scale = r.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let allowed = if fused { 1e-5 * scale } else { 0.0 };
            assert!(
                worst <= allowed,
                "{arch} on {}: {name} differs by up to {worst} (allowed {allowed})",
                device.name()
            );
            assert!(
                g.iter().any(|v| *v != 0.0),
                "{arch}: {name} has no gradient"
            );
        }
    }
}

#[test]
fn the_fused_forward_matches_the_layers_one_by_one_on_the_cpu() {
    assert_same_as_layer_by_layer(&Device::cpu());
}

#[test]
fn the_fused_forward_matches_the_layers_one_by_one_on_the_gpu() {
    match gpu::open_best() {
        Ok(device) => assert_same_as_layer_by_layer(&device),
        Err(e) if std::env::var("DISTILL_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("GPU tests required (DISTILL_REQUIRE_GPU=1) but no adapter: {e}")
        }
        Err(e) => eprintln!("skipping the GPU half: {e}"),
    }
}
