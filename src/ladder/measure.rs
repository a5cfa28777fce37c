//! Checking and timing a list of rungs, whatever they run on.
//!
//! Check: every rung against the f64 reference on every check shape; the first failure is
//! reported and the rung is not timed. Time: the shapes from the cheapest up; each call is
//! repeated until a target time is reached and the fastest repetition counts. Before a shape
//! is timed, its time is predicted from the rung's best rate so far; past the budget (2 s for
//! naive rungs) the shape is skipped and the row says so.
//!
//! A rung's `compute` and `time` are futures: a GPU rung in a browser can only learn that its
//! work is done by yielding to the page. Natively the ladder drives the same futures with
//! `pollster`, and a CPU rung's future is ready when first polled.

use std::future::Future;
use std::pin::Pin;

use web_time::Instant;

use super::reference::{Problem, Reference};
use super::report::{CheckOutcome, CheckRow, TimingRow};
use crate::Result;

/// What a rung's `compute` or `time` returns: its result, once the device has it.
pub(crate) type Step<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + 'a>>;

/// What a rung computes from a [`Problem`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// `A·B`, or the conv2d forward pass.
    Forward,
    /// The conv2d weight gradient `dW` from `x` and `dy`.
    WeightGrad,
}

/// One rung as the driver sees it; `P` is its ladder's problem type.
pub(crate) trait LadderRung<P> {
    fn name(&self) -> String;
    fn pass(&self) -> Pass {
        Pass::Forward
    }
    /// Slow by design: timed only where one call stays under the naive budget.
    fn naive(&self) -> bool {
        false
    }
    /// Stores its operands as f16: checked against the reference of f16-rounded operands.
    fn stores_f16(&self) -> bool {
        false
    }
    /// Why it cannot run here (a CPU or adapter feature it needs), if it cannot.
    fn unsupported(&self) -> Option<String> {
        None
    }
    /// Checked but not timed (a variant of a timed rung, e.g. at another SIMD level).
    fn check_only(&self) -> bool {
        false
    }
    /// The rung's output for `p`.
    fn compute<'a>(&'a mut self, p: &'a P) -> Step<'a, Vec<f32>>;
    /// Seconds taken by `reps` back-to-back calls (set-up excluded).
    fn time<'a>(&'a mut self, p: &'a P, reps: usize) -> Step<'a, f64>;
}

/// A ladder ready to run: its rungs and the shapes they are checked and timed at.
pub(crate) struct Rig<P> {
    pub device: String,
    pub rungs: Vec<Box<dyn LadderRung<P>>>,
    pub check_shapes: Vec<P>,
    pub time_shapes: Vec<P>,
    /// Most seconds one call of a non-naive rung may take before a shape is skipped.
    pub call_budget_s: f64,
    /// The f64 reference of one pass of a problem.
    pub reference: fn(&P, Pass) -> Reference,
}

/// Most seconds one call of a naive rung may take.
const NAIVE_BUDGET_S: f64 = 2.0;

pub(crate) async fn check_all<P: Problem>(
    s: &mut Rig<P>,
    log: &mut dyn FnMut(&str),
) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for rung in s.rungs.iter_mut() {
        let outcome = match rung.unsupported() {
            Some(why) => CheckOutcome::Unsupported { why },
            None => check_rung(rung.as_mut(), &s.check_shapes, s.reference).await,
        };
        log(&format!("  check {}: {outcome}", rung.name()));
        rows.push(CheckRow {
            rung: rung.name(),
            outcome,
        });
    }
    rows
}

async fn check_rung<P: Problem>(
    rung: &mut dyn LadderRung<P>,
    shapes: &[P],
    reference: fn(&P, Pass) -> Reference,
) -> CheckOutcome {
    let mut worst = 0.0f64;
    for p in shapes {
        let p = if rung.stores_f16() {
            p.rounded_to_f16()
        } else {
            p.clone()
        };
        let got = match rung.compute(&p).await {
            Ok(v) => v,
            Err(e) => {
                return CheckOutcome::Fail {
                    why: format!("{}: {e}", p.label()),
                }
            }
        };
        match reference(&p, rung.pass()).compare(&got) {
            Ok(w) => worst = worst.max(w),
            Err(e) => {
                return CheckOutcome::Fail {
                    why: format!("{}: {e}", p.label()),
                }
            }
        }
    }
    CheckOutcome::Pass {
        shapes: shapes.len(),
        worst_error: worst,
    }
}

pub(crate) async fn time_all<P: Problem>(
    s: &mut Rig<P>,
    checks: &[CheckRow],
    peak_gflops: Option<f64>,
    quick: bool,
    log: &mut dyn FnMut(&str),
) -> Vec<TimingRow> {
    let mut shapes: Vec<&P> = s.time_shapes.iter().collect();
    shapes.sort_by(|a, b| a.flops().total_cmp(&b.flops()));
    let timed: Vec<usize> = (0..s.rungs.len())
        .filter(|&i| {
            !s.rungs[i].check_only() && matches!(checks[i].outcome, CheckOutcome::Pass { .. })
        })
        .collect();
    // Best rate (flop/s) of each timed rung so far: predicts the next shape's call time.
    let mut best_rate = vec![0.0f64; timed.len()];
    let mut cells: Vec<Vec<TimingRow>> = vec![Vec::new(); timed.len()];
    for p in shapes {
        let mut active = Vec::new();
        for (t, &ri) in timed.iter().enumerate() {
            let rung = &s.rungs[ri];
            let budget = if rung.naive() {
                NAIVE_BUDGET_S
            } else {
                s.call_budget_s
            };
            let predicted = p.flops() / best_rate[t];
            let mut row = TimingRow {
                rung: rung.name(),
                shape: p.label(),
                gflops: None,
                pct_peak: None,
                speedup: None,
                note: None,
            };
            if best_rate[t] > 0.0 && predicted > budget {
                row.note = Some(format!("skipped: one call would take ~{predicted:.0} s"));
            } else {
                active.push(t);
            }
            cells[t].push(row);
        }
        let active_rungs: Vec<usize> = active.iter().map(|&t| timed[t]).collect();
        let results = round_robin(&mut s.rungs, &active_rungs, p, quick).await;
        for (&t, result) in active.iter().zip(results) {
            let row = cells[t].last_mut().expect("pushed above");
            match result {
                Ok(secs) => {
                    let rate = p.flops() / secs;
                    best_rate[t] = best_rate[t].max(rate);
                    row.gflops = Some(rate / 1e9);
                    row.pct_peak = peak_gflops.map(|pk| 100.0 * rate / 1e9 / pk);
                }
                Err(e) => row.note = Some(format!("failed: {e}")),
            }
        }
        for row in cells.iter().filter_map(|c| c.last()) {
            log(&format!(
                "  time {} {}: {}",
                row.rung,
                row.shape,
                row.cell()
            ));
        }
    }
    let passes: Vec<Pass> = timed
        .iter()
        .zip(&cells)
        .flat_map(|(&ri, c)| std::iter::repeat_n(s.rungs[ri].pass(), c.len()))
        .collect();
    let mut rows: Vec<TimingRow> = cells.into_iter().flatten().collect();
    add_speedups(&mut rows, &passes);
    rows
}

/// Seconds per call of each rung in `which` on `p`: the best batch of rounds that visit every
/// rung in turn, so a quiet spell on a shared machine benefits every rung alike. The first
/// round sizes each rung's batch (about 10 ms); calls over a second run in the first round
/// only. Rounds go on for at least 2 and until the shape's time target is spent.
async fn round_robin<P: Problem>(
    rungs: &mut [Box<dyn LadderRung<P>>],
    which: &[usize],
    p: &P,
    quick: bool,
) -> Vec<Result<f64>> {
    let target = if quick { 0.2 } else { 2.0 };
    let mut best = vec![f64::INFINITY; which.len()];
    let mut reps = vec![1usize; which.len()];
    let mut failed: Vec<Option<crate::Error>> = which.iter().map(|_| None).collect();
    let start = Instant::now();
    for round in 0..50 {
        for (a, &ri) in which.iter().enumerate() {
            if failed[a].is_some() || (round > 0 && best[a] > 1.0) {
                continue;
            }
            match rungs[ri].time(p, reps[a]).await {
                Ok(t) => {
                    let per_call = (t / reps[a] as f64).max(1e-9);
                    best[a] = best[a].min(per_call);
                    reps[a] = ((0.01 / per_call).ceil() as usize).clamp(1, 1000);
                }
                Err(e) => failed[a] = Some(e),
            }
        }
        if round >= 1 && start.elapsed().as_secs_f64() >= target {
            break;
        }
    }
    best.into_iter()
        .zip(failed)
        .map(|(b, f)| match f {
            Some(e) => Err(e),
            None => Ok(b),
        })
        .collect()
}

/// The speed-up of each row over the nearest earlier rung of the same pass timed at the same
/// shape.
fn add_speedups(rows: &mut [TimingRow], passes: &[Pass]) {
    for i in 0..rows.len() {
        let Some(now) = rows[i].gflops else { continue };
        let prev = rows[..i]
            .iter()
            .zip(passes)
            .rev()
            .filter(|(r, pass)| {
                r.shape == rows[i].shape && r.rung != rows[i].rung && **pass == passes[i]
            })
            .find_map(|(r, _)| r.gflops);
        rows[i].speedup = prev.map(|p| now / p);
    }
}

/// Runs `f` `reps` times and returns the seconds it took.
pub(crate) fn seconds(reps: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..reps {
        f();
    }
    start.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::matmul_cpu::{check_problems, matmul_reference};
    use crate::ladder::reference::MatmulProblem;
    use pollster::block_on;

    /// A correct GEMM, or one that drops the last depth (a classic tile-edge bug).
    struct Toy {
        name: &'static str,
        drop_last_depth: bool,
    }

    impl Toy {
        fn product(&self, p: &MatmulProblem) -> Vec<f32> {
            let MatmulProblem { m, k, n, a, b } = p;
            let depth = if self.drop_last_depth { k - 1 } else { *k };
            let mut c = vec![0.0; m * n];
            for i in 0..*m {
                for j in 0..*n {
                    c[i * n + j] = (0..depth).map(|q| a[i * k + q] * b[q * n + j]).sum();
                }
            }
            c
        }
    }

    impl LadderRung<MatmulProblem> for Toy {
        fn name(&self) -> String {
            self.name.into()
        }
        fn compute<'a>(&'a mut self, p: &'a MatmulProblem) -> Step<'a, Vec<f32>> {
            Box::pin(async move { Ok(self.product(p)) })
        }
        fn time<'a>(&'a mut self, p: &'a MatmulProblem, reps: usize) -> Step<'a, f64> {
            Box::pin(async move {
                Ok(seconds(reps, || {
                    self.product(p);
                }))
            })
        }
    }

    fn rig(rungs: Vec<Box<dyn LadderRung<MatmulProblem>>>) -> Rig<MatmulProblem> {
        Rig {
            device: "toy".into(),
            rungs,
            check_shapes: check_problems(),
            time_shapes: vec![
                MatmulProblem::new(8, 8, 8, 1),
                MatmulProblem::new(16, 16, 16, 3),
            ],
            call_budget_s: 10.0,
            reference: matmul_reference,
        }
    }

    #[test]
    fn a_wrong_rung_is_reported_and_not_timed() {
        let mut s = rig(vec![
            Box::new(Toy {
                name: "good",
                drop_last_depth: false,
            }),
            Box::new(Toy {
                name: "bad",
                drop_last_depth: true,
            }),
            Box::new(Toy {
                name: "good_again",
                drop_last_depth: false,
            }),
        ]);
        let checks = block_on(check_all(&mut s, &mut |_| {}));
        assert!(matches!(
            checks[0].outcome,
            CheckOutcome::Pass { shapes: 4, .. }
        ));
        let CheckOutcome::Fail { why } = &checks[1].outcome else {
            panic!("the bad rung passed: {:?}", checks[1]);
        };
        assert!(why.starts_with("1×1·1×1"), "{why}");
        let rows = block_on(time_all(&mut s, &checks, Some(1.0), true, &mut |_| {}));
        assert!(rows.iter().all(|r| r.rung != "bad"));
        assert_eq!(rows.len(), 4);
        for r in &rows {
            let g = r.gflops.expect("timed");
            assert!(g > 0.0 && (r.pct_peak.unwrap() - 100.0 * g).abs() <= 1e-9 * g);
        }
        // good_again's speed-up is over good (the wrong rung in between has no timing).
        let later = &rows[2];
        assert_eq!(later.rung, "good_again");
        let ratio = later.gflops.unwrap() / rows[0].gflops.unwrap();
        assert!((later.speedup.unwrap() - ratio).abs() < 1e-12);
        assert!(rows[0].speedup.is_none());
    }

    #[test]
    fn shapes_past_the_budget_are_skipped_and_say_so() {
        let mut s = rig(vec![Box::new(Toy {
            name: "good",
            drop_last_depth: false,
        })]);
        s.call_budget_s = 1e-12;
        let checks = block_on(check_all(&mut s, &mut |_| {}));
        let rows = block_on(time_all(&mut s, &checks, None, true, &mut |_| {}));
        // The cheapest shape is always timed (nothing to predict from); the next is skipped.
        assert!(rows[0].gflops.is_some());
        assert!(rows[1].gflops.is_none());
        assert!(rows[1].note.as_deref().unwrap().starts_with("skipped"));
    }
}
