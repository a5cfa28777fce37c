//! Using a trained model: test-set metrics (loss, accuracy, confusion matrix), its logits over
//! a split (offline KD's cache), and top-k class probabilities for new images.

use std::sync::Arc;

use serde::Serialize;

use super::trainer::batches_of;
use crate::data::InputSpec;
use crate::data::Split;
use crate::nn::Sequential;
use crate::{no_grad, ops, Device, Error, Result, Tensor};

/// Test-set metrics.
pub struct Evaluation {
    pub loss: f64,
    pub accuracy: f64,
    /// `confusion[true][predicted]`, when asked for.
    pub confusion: Option<Vec<Vec<u64>>>,
}

impl Evaluation {
    /// Accuracy of each true class (its row of the confusion matrix), when one was made.
    pub fn per_class_accuracy(&self) -> Option<Vec<f64>> {
        self.confusion.as_ref().map(|c| {
            c.iter()
                .enumerate()
                .map(|(i, row)| row[i] as f64 / row.iter().sum::<u64>().max(1) as f64)
                .collect()
        })
    }
}

/// Mean cross-entropy and accuracy of `model` on `split` (no tape, in order, no augmentation).
/// [`evaluate_async`] waited for on this thread.
#[cfg(not(target_arch = "wasm32"))]
pub fn evaluate(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    batch_size: usize,
    confusion: bool,
) -> Result<Evaluation> {
    pollster::block_on(evaluate_async(
        model, device, split, input, batch_size, confusion,
    ))
}

/// [`evaluate`] as a future: the metrics stay on the device until the end (the confusion
/// matrix, when asked for, reads each batch's logits).
pub async fn evaluate_async(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    batch_size: usize,
    confusion: bool,
) -> Result<Evaluation> {
    let classes = input.class_names.len();
    let loss_sum = Tensor::zeros(&[], device)?; // a scalar, as the losses are
    let correct = Tensor::from_u32(&[0], &[1], device)?;
    let mut matrix = confusion.then(|| vec![vec![0u64; classes]; classes]);
    let mut n = 0usize;
    for batch in batches_of(split, input, &input.batch_config(batch_size), 0)? {
        let rows = batch.len();
        let logits = no_grad(|| {
            let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
            let y = Tensor::from_u32(&batch.labels, &[rows], device)?;
            let logits = model.forward(&x)?;
            if logits.shape() != [rows, classes] {
                return Err(Error::Shape(format!(
                    "model outputs {:?} but the data has {classes} classes",
                    logits.shape()
                )));
            }
            let loss = ops::cross_entropy(&logits, &y)?;
            ops::add_scaled_(&loss_sum, rows as f32, &loss)?;
            ops::accuracy_count(&logits, &y, &correct)?;
            Ok(logits)
        })?;
        if let Some(m) = matrix.as_mut() {
            let l = logits.read().await?;
            for (r, &label) in batch.labels.iter().enumerate() {
                m[label as usize][argmax(&l[r * classes..(r + 1) * classes])] += 1;
            }
        }
        n += rows;
    }
    if n == 0 {
        return Err(Error::Data("evaluation split is empty".into()));
    }
    Ok(Evaluation {
        loss: loss_sum.read().await?[0] as f64 / n as f64,
        accuracy: correct.read_u32().await?[0] as f64 / n as f64,
        confusion: matrix,
    })
}

/// The model's logits for every image of `split`, `[n, classes]` row-major (offline KD).
#[cfg(not(target_arch = "wasm32"))]
pub fn predict_logits(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    batch_size: usize,
) -> Result<Vec<f32>> {
    pollster::block_on(predict_logits_async(
        model, device, split, input, batch_size,
    ))
}

/// [`predict_logits`] as a future.
pub async fn predict_logits_async(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    batch_size: usize,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(split.len() * input.class_names.len());
    for batch in batches_of(split, input, &input.batch_config(batch_size), 0)? {
        let logits = no_grad(|| {
            let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
            model.forward(&x)
        })?;
        out.extend(logits.read().await?);
    }
    Ok(out)
}

/// Index of the first maximum.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// One class of a prediction.
#[derive(Clone, Debug, Serialize)]
pub struct ClassProbability {
    pub class: String,
    pub index: usize,
    pub probability: f64,
}

/// The `k` most probable classes of each image of `split` (planar bytes, as the model's input
/// spec says), most probable first; ties go to the lower class index. The probabilities are
/// the engine's softmax (temperature 1) of the logits.
#[cfg(not(target_arch = "wasm32"))]
pub fn top_k(
    model: &Sequential,
    device: &Device,
    split: &Arc<Split>,
    input: &InputSpec,
    k: usize,
) -> Result<Vec<Vec<ClassProbability>>> {
    let classes = input.class_names.len();
    let probabilities = no_grad(|| {
        let mut out = Vec::with_capacity(split.len() * classes);
        for batch in batches_of(split, input, &input.batch_config(256), 0)? {
            let x = Tensor::from_f32(&batch.images, &batch.shape, device)?;
            out.extend(ops::softmax_t(&model.forward(&x)?, 1.0)?.to_vec()?);
        }
        Ok(out)
    })?;
    Ok(probabilities
        .chunks(classes)
        .map(|row| {
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&x, &y| row[y].total_cmp(&row[x]).then(x.cmp(&y)));
            order
                .into_iter()
                .take(k)
                .map(|c| ClassProbability {
                    class: input.class_names[c].clone(),
                    index: c,
                    probability: row[c] as f64,
                })
                .collect()
        })
        .collect())
}
