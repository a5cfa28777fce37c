//! The f32 peak of each device, measured in-process, so every GFLOP/s figure reads as a % of
//! what this device does rather than of a vendor sheet.
//!
//! CPU: the FMA-chain loop of `distill_kernels::bench` at every SIMD level the CPU has, on one
//! thread and on all threads. The reference peak is the widest level's on all threads (the
//! machine's true f32 peak); the narrower levels' rows stay beside it, so a kernel that runs
//! at AVX2 can be read against both. GPU: the `fma_chain` kernel of shaders/bench.wgsl.

use std::cell::Cell;

use distill_kernels::{bench as cpu_bench, simd, SimdLevel};

use super::report::{Peak, Row, Unit};
use super::timing::{time_calls, time_on, Budget, Timing};
use crate::backend::gpu::GpuBackend;
use crate::backend::{Backend, DeviceKind};
use crate::Device;
use crate::Result;

/// The reference f32 peak of `device`, measured now in about a second: the widest SIMD level
/// on all threads, or the GPU's FMA-chain kernel. `None` where it cannot be measured.
pub fn device_peak(device: &Device) -> Option<Peak> {
    let budget = Budget {
        secs: 0.3,
        max_calls: 1000,
    };
    match device.backend().as_gpu() {
        None => cpu_peaks(budget).1,
        Some(g) => {
            let software = device.kind() == DeviceKind::SoftwareGpu;
            gpu_peak(&device.name(), g, software, budget, false).1
        }
    }
}

/// Steps of one CPU burst (~2 ms at AVX2 on a 3 GHz core): short, so the best of many bursts
/// is an undisturbed one on a shared machine.
const CPU_BURST_STEPS: u64 = 500_000;

/// The CPU peak rows and the reference peak (the widest level on all threads).
pub(crate) fn cpu_peaks(budget: Budget) -> (Vec<Row>, Option<Peak>) {
    let threads = rayon::current_num_threads();
    let mut rows = Vec::new();
    let mut reference = None;
    for level in simd::available() {
        let mut counts = vec![1];
        if threads > 1 {
            counts.push(threads);
        }
        for t in counts {
            let shape = format!(
                "{}, {t} thread{}",
                level.name(),
                if t == 1 { "" } else { "s" }
            );
            let mut row = Row::new("cpu", "peak", "fma-chain", &shape, Unit::Gflops);
            row.threads = Some(t);
            match time_cpu_burst(level, t, budget) {
                Ok((gflops, calls)) => {
                    row.value = Some(gflops);
                    row.calls = Some(calls as u64);
                    if t == threads {
                        // available() runs narrowest first: the last level is the widest.
                        reference = Some(Peak::new(format!("cpu fma-chain {shape}"), gflops));
                    }
                }
                Err(e) => row.error = Some(e.to_string()),
            }
            rows.push(row);
        }
    }
    (rows, reference)
}

/// GFLOP/s of the FMA-chain loop at `level` on `threads` threads (1 = this thread).
fn time_cpu_burst(level: SimdLevel, threads: usize, budget: Budget) -> Result<(f64, usize)> {
    let flops = Cell::new(0.0);
    let mut run = || {
        let f = if threads == 1 {
            cpu_bench::fma_chain(level, CPU_BURST_STEPS).unwrap_or(0.0)
        } else {
            rayon::broadcast(|_| cpu_bench::fma_chain(level, CPU_BURST_STEPS).unwrap_or(0.0))
                .iter()
                .sum()
        };
        flops.set(f);
        Ok(())
    };
    let t = time_calls(&mut run, &|| Ok(()), &|| Ok(()), budget)?;
    Ok((flops.get() / t.secs_per_call / 1e9, t.calls))
}

/// The workgroups and steps of one `fma_chain` dispatch: ~2 ms on a large GPU, ~5 ms on a
/// software one.
fn gpu_fma_size(software: bool) -> (u32, u32) {
    if software {
        (16, 1000)
    } else {
        (8192, 2000)
    }
}

/// The GPU's FMA-chain peak: its row and the peak. `profiled`: time it again with GPU
/// timestamps and report those.
pub(crate) fn gpu_peak(
    id: &str,
    g: &GpuBackend,
    software: bool,
    budget: Budget,
    profiled: bool,
) -> (Row, Option<Peak>) {
    let (groups, iters) = gpu_fma_size(software);
    let shape = format!("{groups} wg x 256 x {iters} steps x 8 vec4 chains");
    let mut row = Row::new(id, "peak", "fma-chain", &shape, Unit::Gflops);
    match time_gpu_fma(g, groups, iters, budget, profiled) {
        Ok((gflops, calls, timing)) => {
            row.value = Some(gflops);
            row.calls = Some(calls as u64);
            row.timing = timing;
            let peak = Peak::new(format!("{id} fma-chain"), gflops);
            (row, Some(peak))
        }
        Err(e) => {
            row.error = Some(e.to_string());
            row.timing = Timing::WallReadback;
            (row, None)
        }
    }
}

fn time_gpu_fma(
    g: &GpuBackend,
    groups: u32,
    iters: u32,
    budget: Budget,
    profiled: bool,
) -> Result<(f64, usize, Timing)> {
    let src = g.upload_f32(&[1.0; 4])?;
    let dst = g.zeros(4 * 65_536)?;
    let flops = Cell::new(0.0);
    let mut run = || {
        flops.set(g.bench_fma_chain(&src, &dst, groups, iters)?);
        Ok(())
    };
    let sync = || g.download_f32(&src).map(|_| ());
    let (t, timing) = time_on(g, &mut run, &sync, budget, profiled)?;
    Ok((flops.get() / t.secs_per_call / 1e9, t.calls, timing))
}
