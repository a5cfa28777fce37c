//! Teacher ensembles: several teachers' logits combined into one row of soft targets per
//! image, so the cache and the KD kernel stay those of one teacher.
//!
//! Probability averaging (the default, Hinton et al. 2015): the target is
//! `p̄ = (1/K) Σ_k softmax(z_k / T)`. The KD kernel consumes logits `t` and takes
//! `softmax(t / T)`; storing `t = T · log p̄` gives `softmax(log p̄) = p̄ / Σ p̄ = p̄` exactly, so
//! the cache holds one row of `classes` values per image whatever the number of teachers.
//! `log p̄` is taken as a log-sum-exp of the teachers' log-probabilities in f64, so a class no
//! teacher believes in stays finite. Logit averaging stores `(1/K) Σ_k z_k`.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How several teachers' outputs become one soft target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensemble {
    /// The mean of the teachers' tempered probabilities.
    #[default]
    Probabilities,
    /// The mean of the teachers' logits.
    Logits,
}

impl std::str::FromStr for Ensemble {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "probabilities" | "probs" => Ok(Ensemble::Probabilities),
            "logits" => Ok(Ensemble::Logits),
            other => Err(format!(
                "unknown ensemble '{other}': expected probabilities (probs) or logits"
            )),
        }
    }
}

impl std::fmt::Display for Ensemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ensemble::Probabilities => "probabilities",
            Ensemble::Logits => "logits",
        })
    }
}

/// The logits, at temperature `temperature`, whose softmax is the ensemble's soft target:
/// one `[n, classes]` row-major table from each teacher's. One teacher's table comes back
/// unchanged.
pub fn combine(
    teachers: &[Vec<f32>],
    classes: usize,
    temperature: f32,
    mode: Ensemble,
) -> Result<Vec<f32>> {
    let first = teachers
        .first()
        .ok_or_else(|| Error::InvalidArgument("an ensemble needs at least one teacher".into()))?;
    if classes == 0 || teachers.iter().any(|t| t.len() != first.len()) || first.len() % classes != 0
    {
        return Err(Error::Shape(format!(
            "ensemble: the teachers' logits ({:?} values) are not equal tables of {classes} classes",
            teachers.iter().map(Vec::len).collect::<Vec<_>>()
        )));
    }
    if teachers.len() == 1 {
        return Ok(first.clone());
    }
    let k = teachers.len() as f64;
    let t = temperature as f64;
    let mut out = vec![0f32; first.len()];
    let mut log_p = vec![0f64; teachers.len() * classes];
    for (r, row) in out.chunks_exact_mut(classes).enumerate() {
        let span = r * classes..(r + 1) * classes;
        match mode {
            Ensemble::Logits => {
                for (j, o) in row.iter_mut().enumerate() {
                    let sum: f64 = teachers.iter().map(|z| z[span.start + j] as f64).sum();
                    *o = (sum / k) as f32;
                }
            }
            Ensemble::Probabilities => {
                for (lp, z) in log_p.chunks_exact_mut(classes).zip(teachers) {
                    log_softmax_f64(&z[span.clone()], 1.0 / t, lp);
                }
                for (j, o) in row.iter_mut().enumerate() {
                    let m = (0..teachers.len())
                        .map(|i| log_p[i * classes + j])
                        .fold(f64::NEG_INFINITY, f64::max);
                    let s: f64 = (0..teachers.len())
                        .map(|i| (log_p[i * classes + j] - m).exp())
                        .sum();
                    *o = (t * (m + s.ln() - k.ln())) as f32;
                }
            }
        }
    }
    Ok(out)
}

/// `out = log_softmax(z · inv_t)` in f64.
fn log_softmax_f64(z: &[f32], inv_t: f64, out: &mut [f64]) {
    let m = z
        .iter()
        .map(|&v| v as f64 * inv_t)
        .fold(f64::NEG_INFINITY, f64::max);
    let lse = m + z
        .iter()
        .map(|&v| (v as f64 * inv_t - m).exp())
        .sum::<f64>()
        .ln();
    for (o, &v) in out.iter_mut().zip(z) {
        *o = v as f64 * inv_t - lse;
    }
}

/// Accuracy of the ensemble's prediction (the arg-max of its combined row) against `labels`.
pub fn accuracy(combined: &[f32], labels: &[u32], classes: usize) -> f64 {
    let correct = combined
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, &l)| crate::train::argmax(row) == l as usize)
        .count();
    correct as f64 / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for e in [Ensemble::Probabilities, Ensemble::Logits] {
            assert_eq!(e.to_string().parse::<Ensemble>(), Ok(e));
        }
    }
}
