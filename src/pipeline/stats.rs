//! What the report measures besides accuracy: each model's size and inference speed on the
//! run's device, and the mean ± std over seeds.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checkpoint::StoreDtype;
use crate::model_file::model_bytes;
use crate::nn::{ArchSpec, Sequential};
use crate::{no_grad, Device, Error, Result, Tensor};

/// Size and speed of one architecture on the run's device.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelStats {
    pub arch: String,
    pub parameters: usize,
    pub bytes_f32: usize,
    pub bytes_f16: usize,
    /// Mean wall time of one forward pass at batch 1.
    pub latency_ms_batch1: f64,
    /// Images per second of forward passes at batch 256.
    pub throughput_batch256: f64,
}

/// Mean and (sample) standard deviation.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Parameters, bytes, batch-1 latency and batch-256 throughput of a model on `device`.
/// `images` holds normalised test images (at least one): real data, so the activations and
/// the work they cause are those of inference, not of a synthetic input.
pub fn model_stats(
    model: &Sequential,
    spec: &ArchSpec,
    device: &Device,
    images: &[f32],
) -> Result<ModelStats> {
    let image_len = spec.in_channels * spec.height * spec.width;
    if images.len() < image_len || !images.len().is_multiple_of(image_len) {
        return Err(Error::InvalidArgument(format!(
            "model_stats: {} values are not whole images of {image_len}",
            images.len()
        )));
    }
    let shape1 = [1, spec.in_channels, spec.height, spec.width];
    let shape256 = [256, spec.in_channels, spec.height, spec.width];
    let batch256: Vec<f32> = images
        .iter()
        .copied()
        .cycle()
        .take(256 * image_len)
        .collect();
    let x1 = Tensor::from_f32(&images[..image_len], &shape1, device)?;
    let x256 = Tensor::from_f32(&batch256, &shape256, device)?;
    let time = |x: &Tensor, min_iters: usize, budget: f64| -> Result<f64> {
        no_grad(|| {
            model.forward(x)?.to_vec()?; // warm-up: pipelines, pools, caches
            let t0 = Instant::now();
            let mut iters = 0;
            while iters < min_iters || t0.elapsed().as_secs_f64() < budget {
                model.forward(x)?.to_vec()?;
                iters += 1;
                if iters >= 10_000 {
                    break;
                }
            }
            Ok(t0.elapsed().as_secs_f64() / iters as f64)
        })
    };
    let latency = time(&x1, 5, 0.5)?;
    let per_batch = time(&x256, 2, 1.0)?;
    Ok(ModelStats {
        arch: spec.arch.clone(),
        parameters: spec.num_parameters(),
        bytes_f32: model_bytes(spec, StoreDtype::F32),
        bytes_f16: model_bytes(spec, StoreDtype::F16),
        latency_ms_batch1: latency * 1e3,
        throughput_batch256: 256.0 / per_batch,
    })
}
