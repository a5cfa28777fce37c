//! The losses over rows of logits: cross-entropy, Hinton knowledge distillation (each with
//! its gradient wrt the logits) and the arg-max accuracy count.
//!
//! Each row's arithmetic runs in f64 from the row's log-sum-exp (rows are short: one entry
//! per class), the gradient is rounded to f32 once, and the per-row losses are added in row
//! order, so the loss does not depend on the number of threads. Bound by the serial `exp`
//! and add chains of each row.

use rayon::prelude::*;

use super::{
    check_labels, check_labels_or_none, check_temperature, loss_rows, row_lse, rows_per_task,
    NO_LABEL,
};
use crate::elementwise::CHUNK;
/// Mean over rows of `−log softmax(logits)[label]`; `grad` (if given) gets ∂loss/∂logits
/// `= (softmax − onehot) / rows`.
pub fn cross_entropy(
    rows: usize,
    cols: usize,
    logits: &[f32],
    labels: &[u32],
    grad: Option<&mut [f32]>,
) -> f32 {
    assert_eq!(
        logits.len(),
        rows * cols,
        "cross_entropy: logits is not rows × cols"
    );
    check_labels(labels, rows, cols, "cross_entropy");
    if let Some(g) = &grad {
        assert_eq!(
            g.len(),
            rows * cols,
            "cross_entropy: grad is not rows × cols"
        );
    }
    if rows == 0 {
        return 0.0;
    }
    let inv_rows = 1.0 / rows as f64;
    let total = loss_rows(rows, cols, grad, |r, g| {
        let x = &logits[r * cols..(r + 1) * cols];
        let label = labels[r] as usize;
        let (m, log_z) = row_lse(x, 1.0);
        if let Some(g) = g {
            for (j, (g, &v)) in g.iter_mut().zip(x).enumerate() {
                let p = (v as f64 - m - log_z).exp();
                let onehot = if j == label { 1.0 } else { 0.0 };
                *g = ((p - onehot) * inv_rows) as f32;
            }
        }
        log_z - (x[label] as f64 - m)
    });
    (total * inv_rows) as f32
}

/// Hinton KD: `α·T²·(1/rows)·Σ KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, labels)`;
/// `grad` gets ∂loss/∂student `= α·T·(softmax(s/T) − softmax(t/T))/rows + (1−α)(softmax(s) − onehot)/labelled`.
///
/// A row labelled [`NO_LABEL`] (a transfer-set image with soft targets only) has the KD term
/// alone; the CE term is the mean over the `labelled` rows (0 when none is). Each row's CE
/// part is scaled by `rows / labelled` so the one division by `rows` gives both means; with
/// every row labelled the scale is exactly 1.
#[allow(clippy::too_many_arguments)]
pub fn kd_loss(
    rows: usize,
    cols: usize,
    student: &[f32],
    teacher: &[f32],
    labels: &[u32],
    temperature: f32,
    alpha: f32,
    grad: Option<&mut [f32]>,
) -> f32 {
    assert_eq!(
        student.len(),
        rows * cols,
        "kd_loss: student is not rows × cols"
    );
    assert_eq!(
        teacher.len(),
        rows * cols,
        "kd_loss: teacher is not rows × cols"
    );
    check_labels_or_none(labels, rows, cols, "kd_loss", true);
    check_temperature(temperature, "kd_loss");
    assert!(
        alpha.is_finite(),
        "kd_loss: alpha must be finite (got {alpha})"
    );
    if let Some(g) = &grad {
        assert_eq!(g.len(), rows * cols, "kd_loss: grad is not rows × cols");
    }
    if rows == 0 {
        return 0.0;
    }
    let t = temperature as f64;
    let inv_t = 1.0 / t;
    let a = alpha as f64;
    let (kd_w, ce_w) = (a * t * t, 1.0 - a); // loss weights of KL and CE
    let (kd_gw, ce_gw) = (a * t, 1.0 - a); // gradient weights of (q − p) and (q₁ − onehot)
    let inv_rows = 1.0 / rows as f64;
    let labelled = labels.iter().filter(|&&l| l != NO_LABEL).count();
    let ce_scale = if labelled == 0 {
        0.0
    } else {
        rows as f64 / labelled as f64
    };
    let (use_kd, ce_w, ce_gw) = (alpha != 0.0, ce_w * ce_scale, ce_gw * ce_scale);
    let total = loss_rows(rows, cols, grad, |r, mut g| {
        let s = &student[r * cols..(r + 1) * cols];
        let tt = &teacher[r * cols..(r + 1) * cols];
        let label = labels[r] as usize;
        let use_ce = ce_w != 0.0 && labels[r] != NO_LABEL;
        // Soft targets at temperature T (student q, teacher p) and hard-label softmax q₁.
        let (ms, lzs) = if use_kd {
            row_lse(s, inv_t)
        } else {
            (0.0, 0.0)
        };
        let (mt, lzt) = if use_kd {
            row_lse(tt, inv_t)
        } else {
            (0.0, 0.0)
        };
        let (m1, lz1) = if !use_ce {
            (0.0, 0.0)
        } else if use_kd && temperature == 1.0 {
            (ms, lzs)
        } else {
            row_lse(s, 1.0)
        };
        let mut kl = 0.0f64;
        for j in 0..cols {
            let mut gj = 0.0f64;
            if use_kd {
                let log_q = (s[j] as f64 - ms) * inv_t - lzs;
                let log_p = (tt[j] as f64 - mt) * inv_t - lzt;
                let p = log_p.exp();
                if p > 0.0 {
                    kl += p * (log_p - log_q);
                }
                gj += kd_gw * (log_q.exp() - p);
            }
            if use_ce {
                let q1 = (s[j] as f64 - m1 - lz1).exp();
                let onehot = if j == label { 1.0 } else { 0.0 };
                gj += ce_gw * (q1 - onehot);
            }
            if let Some(g) = g.as_deref_mut() {
                g[j] = (gj * inv_rows) as f32;
            }
        }
        let kd_part = if use_kd { kd_w * kl } else { 0.0 };
        let ce_part = if use_ce {
            ce_w * (lz1 - (s[label] as f64 - m1))
        } else {
            0.0
        };
        kd_part + ce_part
    });
    (total * inv_rows) as f32
}

/// Number of rows whose arg-max (first maximum) equals the label ([`NO_LABEL`] rows never do).
pub fn count_correct(rows: usize, cols: usize, logits: &[f32], labels: &[u32]) -> u32 {
    assert_eq!(
        logits.len(),
        rows * cols,
        "count_correct: logits is not rows × cols"
    );
    check_labels_or_none(labels, rows, cols, "count_correct", true);
    if rows == 0 {
        return 0;
    }
    let count_block = |x: &[f32], l: &[u32]| -> u32 {
        let mut n = 0u32;
        for (row, &label) in x.chunks_exact(cols).zip(l) {
            let mut best = 0usize;
            for (j, &v) in row.iter().enumerate().skip(1) {
                if v > row[best] {
                    best = j;
                }
            }
            n += (best == label as usize) as u32;
        }
        n
    };
    if rows * cols <= CHUNK {
        count_block(logits, labels)
    } else {
        let rpt = rows_per_task(cols);
        logits
            .par_chunks(rpt * cols)
            .zip(labels.par_chunks(rpt))
            .map(|(x, l)| count_block(x, l))
            .sum()
    }
}
