//! The memory bandwidth of each device, measured in-process: a streaming copy between two
//! buffers far larger than the last-level cache (CPU: `distill_kernels::bench::copy` on all
//! threads; GPU: the `copy` kernel of shaders/bench.wgsl). GB/s rows (bytes read + written)
//! are read against it, their roofline, as GFLOP/s rows are read against the FMA peak.
//! Shapes that fit in cache can pass 100%.

use std::cell::Cell;

use super::report::{Peak, Row, Unit};
use super::timing::{time_calls, time_on, Budget, Timing};
use crate::backend::gpu::GpuBackend;
use crate::backend::Backend;
use crate::Result;

fn mib(bytes: usize) -> String {
    format!("{} MiB", bytes >> 20)
}

/// The CPU's streaming copy of `bytes` per buffer: its row and the peak.
pub(crate) fn cpu_bandwidth(bytes: usize, budget: Budget) -> (Row, Option<Peak>) {
    let threads = rayon::current_num_threads();
    let shape = format!("{} -> {}, {threads} threads", mib(bytes), mib(bytes));
    let mut row = Row::new("cpu", "bandwidth", "stream copy", &shape, Unit::Gbps);
    row.threads = Some(threads);
    let n = bytes / 4;
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    let moved = Cell::new(0.0);
    let mut run = || {
        moved.set(distill_kernels::bench::copy(&mut dst, &src));
        Ok(())
    };
    match time_calls(&mut run, &|| Ok(()), &|| Ok(()), budget) {
        Ok(t) => {
            let gbs = moved.get() / t.secs_per_call / 1e9;
            row.value = Some(gbs);
            row.calls = Some(t.calls as u64);
            let peak = Peak {
                label: format!("cpu stream copy {}", mib(bytes)),
                value: gbs,
            };
            (row, Some(peak))
        }
        Err(e) => {
            row.error = Some(e.to_string());
            (row, None)
        }
    }
}

/// A GPU's streaming copy of up to `bytes` per buffer (less where the device's buffers are
/// smaller): its row and the peak.
pub(crate) fn gpu_bandwidth(
    id: &str,
    g: &GpuBackend,
    bytes: usize,
    budget: Budget,
    timestamps: bool,
) -> (Row, Option<Peak>) {
    let max = usize::try_from(g.max_buffer_bytes()).unwrap_or(usize::MAX);
    let bytes = bytes.min(max) / 16 * 16;
    let shape = format!("{} -> {}", mib(bytes), mib(bytes));
    let mut row = Row::new(id, "bandwidth", "stream copy", &shape, Unit::Gbps);
    match time_gpu_copy(g, bytes / 4, budget, timestamps) {
        Ok((gbs, calls, timing)) => {
            row.value = Some(gbs);
            row.calls = Some(calls as u64);
            row.timing = timing;
            let peak = Peak {
                label: format!("{id} stream copy {}", mib(bytes)),
                value: gbs,
            };
            (row, Some(peak))
        }
        Err(e) => {
            row.error = Some(e.to_string());
            row.timing = Timing::WallReadback;
            (row, None)
        }
    }
}

fn time_gpu_copy(
    g: &GpuBackend,
    len: usize,
    budget: Budget,
    timestamps: bool,
) -> Result<(f64, usize, Timing)> {
    let src = g.zeros(len)?;
    let dst = g.zeros(len)?;
    let probe = g.zeros(1)?;
    let moved = Cell::new(0.0);
    let mut run = || {
        moved.set(g.bench_copy(&src, &dst, len)?);
        Ok(())
    };
    let sync = || g.download_f32(&probe).map(|_| ());
    let (t, timing) = time_on(g, &mut run, &sync, budget, timestamps)?;
    Ok((moved.get() / t.secs_per_call / 1e9, t.calls, timing))
}
