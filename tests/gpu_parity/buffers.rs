//! The GPU backend's buffers: round trips, ordering of recycled buffers, the size limit,
//! foreign tensors, and a steady-state loop that allocates nothing.

use distill::backend::gpu::GpuBackend;
use distill::backend::{Device, GemmBias, GemmShape, SgdConfig, Trans};

use crate::{gpu_or_skip, shared_gpu, Rng, TestData};

#[test]
fn uploads_downloads_and_zeros_round_trip() {
    let Some(gpu) = gpu_or_skip() else { return };
    let be = gpu.backend();
    assert!(!gpu.is_cpu());
    assert!(
        gpu.name().contains('('),
        "name names the backend: {}",
        gpu.name()
    );
    let data: Vec<f32> = (0..1234).map(|i| i as f32 * 0.5 - 3.0).collect();
    let s = be.upload_f32(&data).unwrap();
    assert_eq!(s.len(), 1234);
    assert_eq!(be.download_f32(&s).unwrap(), data);
    let u: Vec<u32> = (0..77u32)
        .map(|i| i.wrapping_mul(3_000_000_007).wrapping_mul(i))
        .collect();
    assert_eq!(be.download_u32(&be.upload_u32(&u).unwrap()).unwrap(), u);
    // A recycled buffer comes back zeroed from zeros(), even if it held data before.
    drop(s);
    be.flush().unwrap();
    let z = be.zeros(1234).unwrap();
    assert!(be.download_f32(&z).unwrap().iter().all(|&v| v == 0.0));
    let empty = be.zeros(0).unwrap();
    assert!(be.download_f32(&empty).unwrap().is_empty());
}

#[test]
fn upload_after_pending_use_of_a_recycled_buffer_is_ordered() {
    // x is used by a pending (unsubmitted) op, then dropped; a new upload of the same size
    // must not overwrite it before that op runs.
    let Some(gpu) = gpu_or_skip() else { return };
    let be = gpu.backend();
    let n = 4096;
    let x = be.upload_f32(&vec![2.0; n]).unwrap();
    let y = be.zeros(n).unwrap();
    be.scale(&x, 3.0, &y).unwrap();
    drop(x);
    let x2 = be.upload_f32(&vec![-1.0; n]).unwrap();
    let y2 = be.zeros(n).unwrap();
    be.scale(&x2, 1.0, &y2).unwrap();
    assert!(be.download_f32(&y).unwrap().iter().all(|&v| v == 6.0));
    assert!(be.download_f32(&y2).unwrap().iter().all(|&v| v == -1.0));
}

#[test]
fn a_tensor_over_the_device_limit_is_a_clear_error() {
    let Some(_) = gpu_or_skip() else { return };
    let g = shared_gpu().as_ref().unwrap();
    let max = g.max_buffer_bytes();
    let words = (max / 4 + 1) as usize;
    let Err(err) = g.device().backend().zeros(words) else {
        panic!("a tensor over the limit must fail");
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&(words as u64 * 4).to_string()) && msg.contains(&max.to_string()),
        "error names the size and the limit: {msg}"
    );
    // The device is still usable afterwards.
    let be = g.device();
    let s = be.backend().upload_f32(&[1.0, 2.0]).unwrap();
    assert_eq!(be.backend().download_f32(&s).unwrap(), vec![1.0, 2.0]);
}

#[test]
fn cpu_tensors_are_rejected_not_a_panic() {
    let Some(gpu) = gpu_or_skip() else { return };
    let cpu = Device::cpu();
    let x = cpu.backend().upload_f32(&[1.0]).unwrap();
    let y = gpu.backend().zeros(1).unwrap();
    assert!(gpu.backend().relu(&x, &y).is_err());
    assert!(gpu.backend().download_f32(&x).is_err());
}

#[test]
fn steady_state_loop_reuses_pooled_buffers() {
    let Some(_) = gpu_or_skip() else { return };
    // A private device, so other tests running in parallel do not disturb the counters.
    let g = GpuBackend::open_best().unwrap();
    let dev = g.device();
    let be = dev.backend();
    let mut rng = Rng::new(8);
    let (batch, feat, classes) = (16, 32, 10);
    let w = be.upload_f32(&rng.vec(feat * classes)).unwrap();
    let bias = be.upload_f32(&rng.vec(classes)).unwrap();
    let opt = SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    let mom = be.zeros(feat * classes).unwrap();
    let mut history = Vec::new();
    for step in 0..5 {
        let x = be.upload_f32(&rng.vec(batch * feat)).unwrap();
        let labels = be.upload_u32(&rng.labels(batch, classes)).unwrap();
        let logits = be.zeros(batch * classes).unwrap();
        let sh = GemmShape {
            ta: Trans::N,
            tb: Trans::N,
            m: batch,
            n: classes,
            k: feat,
        };
        be.gemm(sh, &x, &w, &logits, GemmBias::PerCol(&bias), false, false)
            .unwrap();
        let loss = be.zeros(1).unwrap();
        let dlogits = be.zeros(batch * classes).unwrap();
        be.cross_entropy(batch, classes, &logits, &labels, &loss, Some(&dlogits))
            .unwrap();
        let dw = be.zeros(feat * classes).unwrap();
        let sh = GemmShape {
            ta: Trans::T,
            tb: Trans::N,
            m: feat,
            n: classes,
            k: batch,
        };
        be.gemm(sh, &x, &dlogits, &dw, GemmBias::None, false, false)
            .unwrap();
        be.sgd_step(&opt, step == 0, &w, &dw, &mom).unwrap();
        let l = be.download_f32(&loss).unwrap()[0];
        assert!(l.is_finite());
        history.push((g.pool_stats().fresh_allocations, g.cache_stats().1));
    }
    let (first, _) = history[1];
    assert!(
        history[1..].iter().all(|&(a, _)| a == first),
        "fresh allocations grow in a steady-state loop: {history:?}"
    );
    assert!(g.pool_stats().reuses > 0);
}
