//! Section 2: every kernel through the `Backend` trait, on the CPU backend and on every
//! adapter of `distill::backend::gpu::list_adapters()`, timed in batches of back-to-back calls
//! closed by a one-element read-back, with a second pass on GPU timestamps where the adapter
//! has them.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use distill::backend::gpu::{self, GpuBackend};
use distill::backend::DeviceKind;
use distill::Device;

use crate::output::{pct, Row, GFLOPS};
use crate::seam_jobs::{backend_jobs, Sizes};

/// Calls queued on a GPU between flushes (submits without waiting, as training does).
const FLUSH_EVERY: usize = 64;

/// Warms `run` up, then times batches of back-to-back calls closed by `sync`; the batch size
/// grows until a batch takes `budget / 10`. Returns (best seconds per call, calls in that batch).
fn time_job(
    dev: &Device,
    run: &mut dyn FnMut() -> distill::Result<()>,
    sync: &dyn Fn() -> distill::Result<()>,
    budget: f64,
    max_calls: usize,
) -> distill::Result<(f64, usize)> {
    run()?;
    sync()?;
    let min_batch = budget / 10.0;
    let start = Instant::now();
    let (mut n, mut best, mut best_n) = (1usize, f64::INFINITY, 0usize);
    loop {
        let t = Instant::now();
        for i in 0..n {
            run()?;
            if (i + 1) % FLUSH_EVERY == 0 {
                dev.0.flush()?;
            }
        }
        sync()?;
        let el = t.elapsed().as_secs_f64();
        if el >= min_batch || n >= max_calls {
            if el / n as f64 <= best {
                (best, best_n) = (el / n as f64, n);
            }
            if start.elapsed().as_secs_f64() >= budget {
                return Ok((best, best_n));
            }
        } else {
            let grow = (1.2 * min_batch / el.max(1e-7)).clamp(2.0, 1000.0);
            n = ((n as f64 * grow) as usize).min(max_calls);
        }
    }
}

/// Sum of the GPU milliseconds `profile_report` has recorded so far.
fn profiled_ms(g: &GpuBackend) -> distill::Result<f64> {
    Ok(g.profile_report()?.iter().map(|(_, _, ms)| ms).sum())
}

/// Runs every kernel of the section on one device and returns its rows.
fn bench_device(
    label: &str,
    dev: &Device,
    gpu: Option<&GpuBackend>,
    sz: &Sizes,
    budget: f64,
    max_calls: usize,
) -> Vec<Row> {
    let name = dev.name();
    let t0 = Instant::now();
    let mut jobs = match backend_jobs(dev, sz) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("{label} {name}: could not set up the kernels: {e}");
            return Vec::new();
        }
    };
    let sync_buf = match dev.0.zeros(1) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{label} {name}: {e}");
            return Vec::new();
        }
    };
    let sync = || dev.0.download_f32(&sync_buf).map(|_| ());
    let threads = (dev.kind() == DeviceKind::Cpu).then(rayon::current_num_threads);
    let mut rows = Vec::new();
    for job in jobs.iter_mut() {
        let mut r = Row::new(&job.kernel, label, job.shape.clone(), threads);
        r.device_name = name.clone();
        r.unit = job.unit;
        match catch_unwind(AssertUnwindSafe(|| {
            time_job(dev, &mut job.run, &sync, budget, max_calls)
        })) {
            Ok(Ok((secs, calls))) => {
                r.value = Some(job.work / secs / 1e9);
                r.calls = Some(calls);
            }
            Ok(Err(e)) => r.note = format!("error: {e}"),
            Err(_) => r.note = "panicked".into(),
        }
        rows.push(r);
    }
    // GPU timestamps: profiling slows every submit down, so it is a second pass.
    if let Some(g) = gpu.filter(|g| g.can_profile()) {
        match g.enable_profiling() {
            Ok(true) => {
                for (job, r) in jobs.iter_mut().zip(rows.iter_mut()) {
                    let Some(calls) = r.calls else { continue };
                    let k = calls.clamp(1, 20);
                    let res = (|| -> distill::Result<f64> {
                        let before = profiled_ms(g)?;
                        for _ in 0..k {
                            (job.run)()?;
                        }
                        sync()?;
                        Ok((profiled_ms(g)? - before) / k as f64)
                    })();
                    match res {
                        Ok(ms) if ms > 0.0 => r.value_timestamp = Some(job.work / ms / 1e6),
                        Ok(_) => {}
                        Err(e) => r.note = format!("timestamps: {e}"),
                    }
                }
            }
            Ok(false) => {}
            Err(e) => eprintln!("{label}: profiling failed: {e}"),
        }
    }
    eprintln!(
        "{label} {name}: {} kernels in {:.1} s",
        rows.len(),
        t0.elapsed().as_secs_f64()
    );
    rows
}

/// FP32 (non-tensor) peak of a GPU: `DISTILL_GPU_PEAK_GFLOPS`, else a table keyed by name.
fn gpu_peak(name: &str) -> Option<(f64, String)> {
    if let Some(v) = std::env::var("DISTILL_GPU_PEAK_GFLOPS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
    {
        return Some((v, "DISTILL_GPU_PEAK_GFLOPS".into()));
    }
    // Vendor FP32 figures (boost clock, no tensor cores). First match wins: specific first.
    const TABLE: [(&str, f64); 7] = [
        ("H200", 66_900.0),
        ("H100 PCIe", 51_200.0),
        ("H100", 66_900.0),
        ("A100", 19_500.0),
        ("L40S", 91_600.0),
        ("RTX 4090", 82_600.0),
        ("RTX 3090", 35_600.0),
    ];
    TABLE
        .iter()
        .find(|(key, _)| name.contains(key))
        .map(|&(key, v)| (v, format!("table: {key}")))
}

/// One adapter's rows: (label, device name, FP32 peak and its source, rows).
pub type GpuRows = (String, String, Option<(f64, String)>, Vec<Row>);

/// What the sweep measured, and which adapters it ran or skipped (for the JSON file).
pub struct Sweep {
    pub cpu_dev: Device,
    pub cpu_rows: Vec<Row>,
    pub gpu_rows: Vec<GpuRows>,
    pub adapters: Vec<serde_json::Value>,
    pub skipped: Vec<serde_json::Value>,
}

/// Runs the section on the CPU backend (GFLOP/s rows against the all-thread peak `peak_all`,
/// GB/s rows against the streaming bandwidth `stream_gbs`) and on every adapter (software ones
/// only with `software`), `budget` seconds per kernel.
pub fn sweep(budget: f64, software: bool, peak_all: Option<f64>, stream_gbs: f64) -> Sweep {
    let cpu_dev = Device::cpu();
    let mut cpu_rows = bench_device("cpu", &cpu_dev, None, &Sizes::cpu(), budget, 1_000_000);
    for r in cpu_rows.iter_mut() {
        r.pct_of_peak = if r.unit == GFLOPS {
            pct(r.value, peak_all)
        } else {
            pct(r.value, Some(stream_gbs))
        };
    }
    let mut gpu_rows = Vec::new();
    let mut adapters = Vec::new();
    let mut skipped = Vec::new();
    for (a, opened) in gpu::adapters_to_bench(software) {
        let label = format!("gpu:{}", a.index);
        let is_software = a.device_type == "software";
        let g = match opened {
            Ok(g) => g,
            Err(reason) => {
                eprintln!(
                    "{label} {} ({}): skipped: {reason} (software adapters need DISTILL_BENCH_SOFTWARE=1)",
                    a.name, a.backend
                );
                skipped
                    .push(serde_json::json!({"index": a.index, "name": a.name, "reason": reason}));
                continue;
            }
        };
        let dev = g.device();
        let peak = gpu_peak(&a.name).or_else(|| gpu_peak(&dev.name()));
        let (sizes, b, max_calls) = if is_software {
            (Sizes::software_gpu(), budget.min(0.05), 20)
        } else {
            (Sizes::hardware_gpu(), budget, 20_000)
        };
        let mut rs = bench_device(&label, &dev, Some(&g), &sizes, b, max_calls);
        for r in rs.iter_mut().filter(|r| r.unit == GFLOPS) {
            r.pct_of_peak = pct(r.value, peak.as_ref().map(|p| p.0));
        }
        for r in rs.iter_mut() {
            r.ratio_vs_cpu = cpu_rows
                .iter()
                .find(|c| c.kernel == r.kernel && c.shape == r.shape)
                .and_then(|c| Some(r.value? / c.value?));
        }
        adapters.push(serde_json::json!({
            "label": label,
            "name": dev.name(),
            "adapter": a.name,
            "device_type": a.device_type,
            "backend": a.backend,
            "timestamp_query": a.timestamp_query,
            "fp32_peak_gflops": peak.as_ref().map(|p| p.0),
            "fp32_peak_source": peak.as_ref().map(|p| p.1.clone()),
        }));
        gpu_rows.push((label, dev.name(), peak, rs));
    }
    Sweep {
        cpu_dev,
        cpu_rows,
        gpu_rows,
        adapters,
        skipped,
    }
}
