//! What a ladder run found, and its markdown form.

use std::fmt;

use serde::Serialize;

use super::LadderOp;

/// The result of checking one rung.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CheckOutcome {
    /// Within the error bound on every check shape; `worst_error` is the largest error as a
    /// fraction of its bound (≤ 1).
    Pass { shapes: usize, worst_error: f64 },
    /// Wrong on some shape (or failed to run): the shape and what went wrong. Not timed.
    Fail { why: String },
    /// Cannot run here (a CPU or adapter feature it needs); not a failure.
    Unsupported { why: String },
}

impl fmt::Display for CheckOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckOutcome::Pass {
                shapes,
                worst_error,
            } => write!(
                f,
                "ok on {shapes} shapes (worst error {:.0}% of its bound)",
                worst_error * 100.0
            ),
            CheckOutcome::Fail { why } => write!(f, "WRONG: {why}"),
            CheckOutcome::Unsupported { why } => write!(f, "not supported here: {why}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckRow {
    pub rung: String,
    /// As JSON, the outcome's fields sit beside `rung`: `{rung, status, …}`.
    #[serde(flatten)]
    pub outcome: CheckOutcome,
}

/// One rung timed at one shape.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimingRow {
    pub rung: String,
    pub shape: String,
    /// None when the shape was skipped or the call failed (see `note`).
    pub gflops: Option<f64>,
    /// Percent of the peak the caller passed in.
    pub pct_peak: Option<f64>,
    /// GFLOP/s over the nearest earlier rung timed at the same shape (same run).
    pub speedup: Option<f64>,
    pub note: Option<String>,
}

impl TimingRow {
    /// `12.3 · 40% · ×2.10`, or the note.
    pub fn cell(&self) -> String {
        let Some(g) = self.gflops else {
            return self.note.clone().unwrap_or_else(|| "—".into());
        };
        // Three decimals below 1 GFLOP/s (software adapters), one above.
        let mut s = if g < 1.0 {
            format!("{g:.3}")
        } else {
            format!("{g:.1}")
        };
        if let Some(p) = self.pct_peak {
            s.push_str(&format!(" · {p:.0}%"));
        }
        if let Some(x) = self.speedup {
            s.push_str(&format!(" · ×{x:.2}"));
        }
        s
    }
}

/// Everything [`run_async`](super::run_async) found.
#[derive(Clone, Debug, Serialize)]
pub struct LadderReport {
    pub op: LadderOp,
    /// The device the rungs ran on.
    pub device: String,
    pub peak_gflops: Option<f64>,
    /// One row per rung, in ladder order.
    pub checks: Vec<CheckRow>,
    /// Rung by rung, shape by shape (cheapest first); empty when only checked.
    pub timings: Vec<TimingRow>,
}

impl LadderReport {
    /// The rungs that computed a wrong result.
    pub fn failures(&self) -> Vec<&CheckRow> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, CheckOutcome::Fail { .. }))
            .collect()
    }

    /// The checks as a list, then the timings as a table: one row per rung, one column per
    /// shape, each cell `GFLOP/s · % of peak · × previous rung`.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("**{} ladder on {}**\n\n", self.op.name(), self.device);
        out.push_str("Checks against the f64 reference:\n\n");
        for c in &self.checks {
            out.push_str(&format!("- `{}`: {}\n", c.rung, c.outcome));
        }
        if self.timings.is_empty() {
            return out;
        }
        let mut shapes: Vec<&str> = Vec::new();
        let mut rungs: Vec<&str> = Vec::new();
        for t in &self.timings {
            if !shapes.contains(&t.shape.as_str()) {
                shapes.push(&t.shape);
            }
            if !rungs.contains(&t.rung.as_str()) {
                rungs.push(&t.rung);
            }
        }
        out.push_str("\nGFLOP/s");
        if let Some(p) = self.peak_gflops {
            out.push_str(&format!(" · % of {p:.0} GFLOP/s peak"));
        }
        out.push_str(" · × previous rung, same shape, same run:\n\n| rung |");
        for s in &shapes {
            out.push_str(&format!(" {s} |"));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(shapes.len()));
        out.push('\n');
        for r in &rungs {
            out.push_str(&format!("| `{r}` |"));
            for s in &shapes {
                let cell = self
                    .timings
                    .iter()
                    .find(|t| t.rung == *r && t.shape == *s)
                    .map(TimingRow::cell)
                    .unwrap_or_default();
                out.push_str(&format!(" {cell} |"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_has_one_row_per_rung_and_one_column_per_shape() {
        let row = |rung: &str, shape: &str, g: Option<f64>, x: Option<f64>| TimingRow {
            rung: rung.into(),
            shape: shape.into(),
            gflops: g,
            pct_peak: g.map(|g| g / 2.0),
            speedup: x,
            note: g
                .is_none()
                .then(|| "skipped: one call would take ~9 s".into()),
        };
        let report = LadderReport {
            op: LadderOp::Matmul,
            device: "toy".into(),
            peak_gflops: Some(200.0),
            checks: vec![
                CheckRow {
                    rung: "a".into(),
                    outcome: CheckOutcome::Pass {
                        shapes: 4,
                        worst_error: 0.01,
                    },
                },
                CheckRow {
                    rung: "b".into(),
                    outcome: CheckOutcome::Fail {
                        why: "1×1·1×1: output 0".into(),
                    },
                },
            ],
            timings: vec![
                row("a", "8", Some(1.0), None),
                row("a", "16", None, None),
                row("c", "8", Some(3.0), Some(3.0)),
                row("c", "16", Some(4.0), None),
            ],
        };
        let md = report.to_markdown();
        assert!(md.contains("- `b`: WRONG: 1×1·1×1"), "{md}");
        assert!(md.contains("| rung | 8 | 16 |"), "{md}");
        assert!(
            md.contains("| `a` | 1.0 · 0% | skipped: one call would take ~9 s |"),
            "{md}"
        );
        assert!(md.contains("| `c` | 3.0 · 2% · ×3.00 | 4.0 · 2% |"), "{md}");
        assert_eq!(report.failures().len(), 1);
    }
}
