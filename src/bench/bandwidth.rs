//! The memory bandwidth of each device, measured in-process: a streaming copy between two
//! buffers far larger than the last-level cache (CPU: `distill_kernels::bench::copy` on all
//! threads; GPU: the `copy` kernel of shaders/bench.wgsl), and on the CPU the same copy at
//! smaller footprints that stay in the caches. GB/s rows (bytes read + written) are read
//! against the bandwidth of the level their data lives in, their roofline, as GFLOP/s rows are
//! read against the FMA peak.
//!
//! The CPU's copies form a ladder of footprints (both buffers together): half of the threads'
//! L2s together, then ×4 steps while they fit in half the L3 (and half the L3 itself), then
//! main memory. Bandwidth falls as the footprint grows, so the copy of the largest footprint
//! that is no larger than a row's working set is an upper bound for that row: its roofline
//! ([`super::report::DeviceReport::bandwidth_for`]). Measuring the steps rather than trusting
//! the cache sizes matters on virtual machines, which may report a large L3 that their
//! neighbours share. Each thread copies its own chunk many times inside one fork, so the
//! thread pool's fork and join do not count. A kernel that only reads can still pass 100%:
//! a read stream is faster than a copy. GPUs do not report their cache sizes, so their GB/s
//! rows are read against the main-memory copy alone.

use std::cell::Cell;
use std::sync::Mutex;

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
    row.working_set_bytes = Some(2 * bytes as u64);
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
            let mut peak = Peak::new(format!("cpu stream copy {}", mib(bytes)), gbs);
            peak.footprint_bytes = Some(2 * bytes as u64);
            (row, Some(peak))
        }
        Err(e) => {
            row.error = Some(e.to_string());
            (row, None)
        }
    }
}

/// `bytes` as `512 KiB` or `8 MiB`.
fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        mib(bytes)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// The cache copies' footprints (name of the level, bytes of both buffers together) for
/// `threads` threads with `l2` bytes of L2 each and `l3` bytes of shared L3, below a
/// main-memory copy of `dram` bytes: half the L2s, then ×4 steps up to half the L3 (and half
/// the L3 itself when it is well past the last step), each at most half of `dram`.
pub(crate) fn cache_levels(
    threads: usize,
    l2: usize,
    l3: usize,
    dram: usize,
) -> Vec<(&'static str, usize)> {
    let first = threads.max(1) * l2 / 2;
    let cap = dram / 2;
    if l2 < 4 << 10 || first > cap {
        return Vec::new();
    }
    let mut levels = vec![("L2", first)];
    let top = (l3 / 2).min(cap);
    let mut f = first * 4;
    while f <= top {
        levels.push(("L3", f));
        f *= 4;
    }
    let last = levels.last().map_or(0, |l| l.1);
    if top > first && 2 * top > 3 * last {
        levels.push(("L3", top));
    }
    levels
}

/// The CPU's copy in each cache level ([`cache_levels`] of this machine): a row per level and
/// its peak, whose `footprint_bytes` is the copy's footprint.
/// `dram`: the footprint of the main-memory copy.
pub(crate) fn cpu_cache_bandwidths(dram: usize, budget: Budget) -> (Vec<Row>, Vec<Peak>) {
    let threads = rayon::current_num_threads();
    let c = distill_kernels::simd::cache_sizes();
    let mut rows = Vec::new();
    let mut peaks = Vec::new();
    for (level, footprint) in cache_levels(threads, c.l2, c.l3, dram) {
        let shape = format!("{level}: {} in all, {threads} threads", size(footprint));
        let mut row = Row::new("cpu", "bandwidth", "cache copy", &shape, Unit::Gbps);
        row.threads = Some(threads);
        row.working_set_bytes = Some(footprint as u64);
        let (gbs, calls) = time_resident_copy(footprint, threads, budget);
        row.value = Some(gbs);
        row.calls = Some(calls as u64);
        peaks.push(Peak {
            label: format!("cpu copy in {level} ({})", size(footprint)),
            value: gbs,
            footprint_bytes: Some(footprint as u64),
        });
        rows.push(row);
    }
    (rows, peaks)
}

/// GB/s of copying `footprint / 2` bytes on `threads` threads, one chunk per thread, each
/// chunk copied repeatedly inside one `rayon::broadcast` (64 MiB moved per call).
fn time_resident_copy(footprint: usize, threads: usize, budget: Budget) -> (f64, usize) {
    let n = (footprint / 8).max(threads);
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    let chunk = n.div_ceil(threads);
    let parts: Vec<Mutex<(&mut [f32], &[f32])>> = dst
        .chunks_mut(chunk)
        .zip(src.chunks(chunk))
        .map(Mutex::new)
        .collect();
    let bytes_per_copy = 8 * n; // read + written
    let reps = ((64usize << 20) / bytes_per_copy).max(1);
    let mut run = || {
        rayon::broadcast(|ctx| {
            if let Some(part) = parts.get(ctx.index()) {
                let mut guard = part.lock().unwrap_or_else(|e| e.into_inner());
                let (d, s) = &mut *guard;
                for _ in 0..reps {
                    d.copy_from_slice(s);
                    std::hint::black_box(&mut **d);
                }
            }
        });
        Ok(())
    };
    match time_calls(&mut run, &|| Ok(()), &|| Ok(()), budget) {
        Ok(t) => (
            (reps * bytes_per_copy) as f64 / t.secs_per_call / 1e9,
            t.calls,
        ),
        Err(_) => (0.0, 0),
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
            let peak = Peak::new(format!("{id} stream copy {}", mib(bytes)), gbs);
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

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;

    #[test]
    fn the_copies_step_from_the_l2s_through_the_l3() {
        // 2 threads, 512 KiB L2 each, 32 MiB L3, a 512 MiB main-memory copy.
        assert_eq!(
            cache_levels(2, 512 * KIB, 32 * MIB, 512 * MIB),
            [
                ("L2", 512 * KIB),
                ("L3", 2 * MIB),
                ("L3", 8 * MIB),
                ("L3", 16 * MIB)
            ]
        );
        // A large L3 stops at half the main-memory copy.
        assert_eq!(
            cache_levels(2, 2 * MIB, 260 * MIB, 256 * MIB),
            [
                ("L2", 2 * MIB),
                ("L3", 8 * MIB),
                ("L3", 32 * MIB),
                ("L3", 128 * MIB)
            ]
        );
        // No L3 beyond the L2s; no usable L2.
        assert_eq!(cache_levels(4, MIB, 2 * MIB, 256 * MIB), [("L2", 2 * MIB)]);
        assert!(cache_levels(2, 0, 32 * MIB, 256 * MIB).is_empty());
    }

    #[test]
    fn a_resident_copy_measures_a_rate() {
        let budget = Budget {
            secs: 0.01,
            max_calls: 3,
        };
        let (gbs, calls) = time_resident_copy(256 * KIB, rayon::current_num_threads(), budget);
        assert!(gbs > 0.0 && calls >= 1, "{gbs} GB/s in {calls} calls");
    }
}
