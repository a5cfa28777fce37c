//! The one timing loop of the bench, and how each figure was timed.
//!
//! [`time_calls`]: one warm-up call, then batches of N back-to-back calls closed by `sync` (a
//! one-element read-back, which waits for all queued work); N grows until a batch takes a
//! tenth of the budget, so the read-back is negligible, and the figure is the best batch's
//! mean time per call. Best, not mean: on a shared machine the fastest batch is the one least
//! disturbed by other work. [`timestamp_secs`] times a few more calls of the same workload
//! with GPU timestamp queries, where the adapter has them.

use web_time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, DeviceKind};
use crate::Result;

/// How a row's figure was timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Timing {
    /// Host wall clock around calls that run to completion (CPU backend, CPU loops).
    #[serde(rename = "wall")]
    Wall,
    /// Host wall clock around a batch of GPU calls closed by a read-back.
    #[serde(rename = "wall+readback")]
    WallReadback,
    /// GPU timestamp queries around each dispatch (summed over the workload's kernels).
    #[serde(rename = "gpu-timestamps")]
    GpuTimestamps,
}

impl Timing {
    pub fn name(self) -> &'static str {
        match self {
            Timing::Wall => "wall",
            Timing::WallReadback => "wall+readback",
            Timing::GpuTimestamps => "gpu-timestamps",
        }
    }
}

/// How long to time one workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Seconds of timed batches (the warm-up call comes on top).
    pub secs: f64,
    /// Most calls in one batch (small on slow devices so one batch cannot run for minutes).
    pub max_calls: usize,
}

/// A timed workload: the best batch's seconds per call and the calls in that batch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timed {
    pub secs_per_call: f64,
    pub calls: usize,
}

/// Calls queued on a GPU between flushes (submits without waiting, as training does).
const FLUSH_EVERY: usize = 64;

/// Times `run` (see the module header). `flush` submits queued work without waiting (a no-op
/// on the CPU); `sync` waits for all of it.
pub fn time_calls(
    run: &mut dyn FnMut() -> Result<()>,
    flush: &dyn Fn() -> Result<()>,
    sync: &dyn Fn() -> Result<()>,
    budget: Budget,
) -> Result<Timed> {
    run()?;
    sync()?;
    let max_calls = budget.max_calls.max(1);
    let min_batch = budget.secs / 10.0;
    let start = Instant::now();
    let (mut n, mut best) = (1usize, None::<Timed>);
    loop {
        let t = Instant::now();
        for i in 0..n {
            run()?;
            if (i + 1) % FLUSH_EVERY == 0 {
                flush()?;
            }
        }
        sync()?;
        let el = t.elapsed().as_secs_f64();
        if el >= min_batch || n >= max_calls {
            let per_call = el / n as f64;
            if best.is_none_or(|b| per_call <= b.secs_per_call) {
                best = Some(Timed {
                    secs_per_call: per_call,
                    calls: n,
                });
            }
            if start.elapsed().as_secs_f64() >= budget.secs {
                return Ok(best.expect("set above"));
            }
        } else {
            let grow = (1.2 * min_batch / el.max(1e-7)).clamp(2.0, 1000.0);
            n = ((n as f64 * grow) as usize).min(max_calls);
        }
    }
}

/// Seconds per call of `run` from GPU timestamps: `calls` calls, then the growth of the
/// device's summed kernel time. Profiling must be on (`set_profiling(true)`). `None` when the
/// device recorded no time.
pub fn timestamp_secs(
    be: &dyn Backend,
    run: &mut dyn FnMut() -> Result<()>,
    sync: &dyn Fn() -> Result<()>,
    calls: usize,
) -> Result<Option<f64>> {
    let total_ms = || -> Result<f64> { Ok(be.kernel_times()?.iter().map(|t| t.total_ms).sum()) };
    let calls = calls.max(1);
    let before = total_ms()?;
    for _ in 0..calls {
        run()?;
    }
    sync()?;
    let ms = (total_ms()? - before) / calls as f64;
    Ok((ms > 0.0).then_some(ms / 1e3))
}

/// Times `run` on `be` with [`time_calls`] and, when `timestamps` and the device can, again
/// with [`timestamp_secs`] (a few calls, profiling on only for them: it makes every flush
/// wait). Returns the figure the report keeps and how it was timed: GPU timestamps where
/// there are some, else the wall clock.
pub fn time_on(
    be: &dyn Backend,
    run: &mut dyn FnMut() -> Result<()>,
    sync: &dyn Fn() -> Result<()>,
    budget: Budget,
    timestamps: bool,
) -> Result<(Timed, Timing)> {
    let wall = time_calls(run, &|| be.flush(), sync, budget)?;
    let method = if be.kind() == DeviceKind::Cpu {
        Timing::Wall
    } else {
        Timing::WallReadback
    };
    if !timestamps || !be.set_profiling(true)? {
        return Ok((wall, method));
    }
    let ts = timestamp_secs(be, run, sync, wall.calls.clamp(1, 20));
    be.set_profiling(false)?;
    Ok(match ts? {
        Some(secs) => (
            Timed {
                secs_per_call: secs,
                calls: wall.calls.clamp(1, 20),
            },
            Timing::GpuTimestamps,
        ),
        None => (wall, method),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_loop_grows_batches_and_reports_the_best() {
        let calls = Cell::new(0usize);
        let syncs = Cell::new(0usize);
        let mut run = || {
            calls.set(calls.get() + 1);
            std::thread::sleep(std::time::Duration::from_micros(200));
            Ok(())
        };
        let sync = || {
            syncs.set(syncs.get() + 1);
            Ok(())
        };
        let budget = Budget {
            secs: 0.05,
            max_calls: 1000,
        };
        let t = time_calls(&mut run, &|| Ok(()), &sync, budget).unwrap();
        // A call sleeps at least 200 µs; batches grew past one call.
        assert!(t.secs_per_call >= 200e-6, "{t:?}");
        assert!(t.calls > 1, "{t:?}");
        assert!(calls.get() > t.calls && syncs.get() >= 2);
    }

    #[test]
    fn an_error_stops_the_loop() {
        let mut n = 0;
        let mut run = || {
            n += 1;
            if n == 3 {
                Err(crate::Error::Device("lost".into()))
            } else {
                Ok(())
            }
        };
        let budget = Budget {
            secs: 10.0,
            max_calls: 4,
        };
        let e = time_calls(&mut run, &|| Ok(()), &|| Ok(()), budget).unwrap_err();
        assert!(e.to_string().contains("lost"));
    }
}
