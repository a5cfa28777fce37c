//! softmax with temperature, log-softmax, cross-entropy and the Hinton KD loss, with their
//! gradient rules. The losses compute their gradient in the same fused kernel as the loss
//! (it costs almost nothing there); backward only scales it by the upstream gradient.

use super::elementwise::with_node;
use super::*;
use crate::autograd::record;
use crate::backend::{Backend, Storage};

/// The label of a row with soft targets only (a transfer-set image): see [`kd_loss`].
pub use distill_kernels::softmax::NO_LABEL;

fn rows_cols(op: &str, x: &Tensor) -> Result<(usize, usize)> {
    check_rank(op, "logits", x, 2)?;
    check_nonempty(op, x)?;
    Ok((x.shape()[0], x.shape()[1]))
}

fn check_temperature(op: &str, t: f32) -> Result<()> {
    if !(t.is_finite() && t > 0.0) {
        return Err(Error::InvalidArgument(format!(
            "{op}: temperature must be finite and > 0, got {t}"
        )));
    }
    Ok(())
}

fn check_labels(op: &str, labels: &Tensor, rows: usize) -> Result<()> {
    if labels.dtype() != DType::U32 || labels.shape() != [rows] {
        return Err(Error::Shape(format!(
            "{op}: labels must be u32 of shape [{rows}], got {:?} {:?}",
            labels.dtype(),
            labels.shape()
        )));
    }
    Ok(())
}

/// `softmax(x / T)` over the last dimension of `[rows, cols]`.
/// Gradient: `dx = y ⊙ (dy − Σ dy⊙y) / T`.
pub fn softmax_t(x: &Tensor, temperature: f32) -> Result<Tensor> {
    row_normalise(
        "softmax",
        x,
        temperature,
        |b, r, c, x, t, y| b.softmax(r, c, x, t, y),
        |b, r, c, y, dy, t, dx| b.softmax_backward(r, c, y, dy, t, dx),
    )
}

/// `log_softmax(x / T)` over the last dimension. Gradient: `dx = (dy − softmax · Σ dy) / T`.
pub fn log_softmax(x: &Tensor, temperature: f32) -> Result<Tensor> {
    row_normalise(
        "log_softmax",
        x,
        temperature,
        |b, r, c, x, t, y| b.log_softmax(r, c, x, t, y),
        |b, r, c, y, dy, t, dx| b.log_softmax_backward(r, c, y, dy, t, dx),
    )
}

type RowForward = fn(&dyn Backend, usize, usize, &Storage, f32, &Storage) -> Result<()>;
type RowBackward = fn(&dyn Backend, usize, usize, &Storage, &Storage, f32, &Storage) -> Result<()>;

/// softmax and log-softmax share everything but their two kernels: both save their output
/// `y`, and their backward kernels take `(y, dy)`.
fn row_normalise(
    name: &'static str,
    x: &Tensor,
    temperature: f32,
    forward: RowForward,
    backward: RowBackward,
) -> Result<Tensor> {
    check_f32(name, &[x])?;
    check_temperature(name, temperature)?;
    let (rows, cols) = rows_cols(name, x)?;
    let y = Tensor::empty_like_shape(x.shape(), DType::F32, x.device())?;
    forward(
        x.device().backend(),
        rows,
        cols,
        x.storage(),
        temperature,
        y.storage(),
    )?;
    let sy = y.clone();
    let node = record(name, &[x], move |dy| {
        let dx = Tensor::empty_like_shape(dy.shape(), DType::F32, dy.device())?;
        backward(
            dy.device().backend(),
            rows,
            cols,
            sy.storage(),
            dy.storage(),
            temperature,
            dx.storage(),
        )?;
        Ok(vec![Some(dx)])
    });
    Ok(with_node(y, node))
}

/// Mean cross-entropy of `logits[rows, classes]` against u32 `labels[rows]` (shape `[]`).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    check_f32("cross_entropy", &[logits])?;
    check_same_device("cross_entropy", &[logits, labels])?;
    let (rows, cols) = rows_cols("cross_entropy", logits)?;
    check_labels("cross_entropy", labels, rows)?;
    let be = logits.device().backend();
    let loss = Tensor::empty_like_shape(&[], DType::F32, logits.device())?;
    let grad = crate::autograd::should_record(&[logits])
        .then(|| Tensor::empty_like_shape(logits.shape(), DType::F32, logits.device()))
        .transpose()?;
    be.cross_entropy(
        rows,
        cols,
        logits.storage(),
        labels.storage(),
        loss.storage(),
        grad.as_ref().map(|g| g.storage()),
    )?;
    let node = grad.and_then(|g| {
        record("cross_entropy", &[logits], move |dloss| {
            Ok(vec![Some(scaled(&g, dloss)?)])
        })
    });
    Ok(with_node(loss, node))
}

/// Hinton et al.'s distillation loss, as a `[]` tensor:
/// `α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y)`, KL averaged over the batch.
/// The teacher's logits get no gradient (pass them detached or computed under `no_grad`).
///
/// Transfer sets: a row labelled [`NO_LABEL`] has no label, only the teacher's soft targets;
/// it adds its KD term and nothing to the CE term, which is the mean over the batch's
/// labelled rows (0 in a batch without one), as PyTorch's `ignore_index`. The mask lives in
/// the labels, so it costs no buffer and the kernel seam is unchanged.
pub fn kd_loss(
    student: &Tensor,
    teacher: &Tensor,
    labels: &Tensor,
    temperature: f32,
    alpha: f32,
) -> Result<Tensor> {
    check_f32("kd_loss", &[student, teacher])?;
    check_same_device("kd_loss", &[student, teacher, labels])?;
    check_temperature("kd_loss", temperature)?;
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::InvalidArgument(format!(
            "kd_loss: alpha must be in [0, 1], got {alpha}"
        )));
    }
    let (rows, cols) = rows_cols("kd_loss", student)?;
    if teacher.shape() != student.shape() {
        return Err(Error::Shape(format!(
            "kd_loss: teacher logits {:?} != student logits {:?}",
            teacher.shape(),
            student.shape()
        )));
    }
    check_labels("kd_loss", labels, rows)?;
    let be = student.device().backend();
    let loss = Tensor::empty_like_shape(&[], DType::F32, student.device())?;
    let grad = crate::autograd::should_record(&[student])
        .then(|| Tensor::empty_like_shape(student.shape(), DType::F32, student.device()))
        .transpose()?;
    be.kd_loss(
        rows,
        cols,
        student.storage(),
        teacher.storage(),
        labels.storage(),
        temperature,
        alpha,
        loss.storage(),
        grad.as_ref().map(|g| g.storage()),
    )?;
    let node = grad.and_then(|g| {
        record("kd_loss", &[student], move |dloss| {
            Ok(vec![Some(scaled(&g, dloss)?)])
        })
    });
    Ok(with_node(loss, node))
}

/// `g · dloss[0]`, leaving `g` (saved by the forward) untouched.
fn scaled(g: &Tensor, dloss: &Tensor) -> Result<Tensor> {
    let out = Tensor::empty_like_shape(g.shape(), DType::F32, g.device())?;
    g.device()
        .backend()
        .scale_by(g.storage(), dloss.storage(), out.storage())?;
    Ok(out)
}

/// Adds to the u32 counter `correct[0]` the rows whose arg-max equals the label (stays on
/// the device; read it once per epoch).
pub fn accuracy_count(logits: &Tensor, labels: &Tensor, correct: &Tensor) -> Result<()> {
    let (rows, cols) = rows_cols("accuracy", logits)?;
    check_labels("accuracy", labels, rows)?;
    if correct.dtype() != DType::U32 || correct.numel() != 1 {
        return Err(Error::Shape(
            "accuracy: the counter must be a one-element u32 tensor".into(),
        ));
    }
    logits.device().backend().count_correct(
        rows,
        cols,
        logits.storage(),
        labels.storage(),
        correct.storage(),
    )
}
