//! Kernel throughput against the machine's own measured peak, on the CPU and on every GPU.
//!
//! `cargo bench --bench kernels` (harness = false). Two sections, one table and one JSON file
//! (`$CARGO_TARGET_DIR/bench-kernels.json`, or `target/bench-kernels.json`):
//!
//! 1. **CPU kernels against the CPU's peak.** Measures this CPU's f32 FMA peak in the same
//!    process (one thread and all rayon threads) with an AVX2+FMA loop — the SIMD level the CPU
//!    kernels use (where the CPU has AVX-512 the same loop on zmm registers is measured too
//!    and printed beside it, for reference only) — then `distill-kernels` GEMM (256–2048, NN/NT/TN) and conv2d (the teacher's
//!    and student's layers) as GFLOP/s and % of that peak. Every figure is the best of many
//!    calls, taken round-robin over all workloads (peaks included) for a fixed time budget: on
//!    a shared machine the best call is the one least disturbed by other work, and a quiet
//!    spell benefits every figure alike.
//! 2. **Every kernel through the `Backend` trait**, on the CPU backend and on every adapter of
//!    `distill::backend::gpu::list_adapters()` (software ones such as lavapipe only with
//!    `DISTILL_BENCH_SOFTWARE=1`, and then with tiny shapes and few calls). The same code
//!    drives every device: matmul NN/NT/TN (256–2048; 4096 and 8192 on a hardware GPU only),
//!    conv2d forward / input grad / weight grad / bias grad and max_pool2d forward / backward
//!    for the four conv layers at batch 128, softmax / log_softmax (+ backward), cross_entropy
//!    and kd_loss (with gradients) at 128×10, 65536×10 and 4096×1000, relu / relu_backward /
//!    add / axpy / sum / column_sums at 16M elements, and SGD (momentum) / Adam steps over
//!    6.4M parameters (the teacher's size). matmul and conv report GFLOP/s; the rest GB/s of
//!    the bytes the kernel's contract reads and writes. Each kernel is warmed up, then called
//!    in batches of N back-to-back calls closed by reading back a one-element buffer (which
//!    waits for all queued work); N grows until a batch takes a tenth of the budget, so the
//!    read-back is negligible, and the figure is the best batch's mean. On a GPU with
//!    TIMESTAMP_QUERY a second pass times a few calls of each kernel with GPU timestamps
//!    (`profile_report`), shown as the `ts value` column. GPU rows get the GPU/CPU ratio
//!    against the CPU backend's row of the same kernel and shape, and GPU matmul/conv rows
//!    the % of the card's FP32 (non-tensor) peak: `DISTILL_GPU_PEAK_GFLOPS`, else a small
//!    table keyed by adapter name, else "peak unknown". CPU-backend matmul/conv rows get % of
//!    the measured all-thread FMA peak.
//!
//! `DISTILL_BENCH_SECS` (default 0.25) is the time per kernel per device in section 2; the
//! round-robin of section 1 runs 100× that (25 s by default).

mod bandwidth;
mod conv;
mod gemm;
mod output;
mod peak;
mod seam;
mod seam_jobs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use distill_kernels::rng::Rng;
use distill_kernels::simd;

use output::{fmt_opt, pct, Row};
use peak::PEAK_CHAINS;

/// Deterministic pseudo-random fill in [-1, 1) (contents only matter for being non-trivial).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// One timed workload: `run` does one call worth `flops`; `best` is its fastest call so far.
/// `run` is `None` for a kernel that panicked on its probe call (not implemented yet).
struct Job {
    row: Row,
    flops: f64,
    /// Which measured peak the figure is compared with.
    peak: PeakRef,
    /// Calls per round: more for short or headline figures.
    per_round: usize,
    run: Option<Box<dyn FnMut()>>,
    best: f64,
}

#[derive(Clone, Copy, PartialEq)]
enum PeakRef {
    One,
    All,
}

/// Section 1's figures after the round-robin: the rows (GFLOP/s and % of peak filled in), the
/// rounds run, their seconds, and the one-thread and all-thread peaks.
struct Section1 {
    rows: Vec<Row>,
    rounds: usize,
    secs: f64,
    peak1: Option<f64>,
    peak_all: Option<f64>,
}

/// Runs every job round-robin for `100 × budget` seconds (at least 3 rounds) and turns each
/// job's best call into GFLOP/s and % of the peak it is compared with.
fn round_robin(mut jobs: Vec<Job>, budget: f64) -> Section1 {
    // Round-robin over every job until the budget is spent: a quiet spell on a shared machine
    // then benefits every figure, the peaks included, instead of whichever ran at the time.
    let rr_budget = Duration::from_secs_f64(100.0 * budget);
    let bench_start = Instant::now();
    let mut rounds = 0;
    while rounds < 3 || bench_start.elapsed() < rr_budget {
        for job in jobs.iter_mut() {
            if let Some(run) = job.run.as_mut() {
                for _ in 0..job.per_round {
                    let t = Instant::now();
                    run();
                    job.best = job.best.min(t.elapsed().as_secs_f64());
                }
            }
        }
        rounds += 1;
    }
    let rr_secs = bench_start.elapsed().as_secs_f64();

    for job in jobs.iter_mut() {
        if job.run.is_some() {
            job.row.value = Some(job.flops / job.best / 1e9);
        }
    }
    let peak_of = |which: PeakRef| {
        jobs.iter()
            .find(|j| j.row.kernel == "fma-peak" && j.peak == which)
            .and_then(|j| j.row.value)
    };
    let (peak1, peak_all) = (peak_of(PeakRef::One), peak_of(PeakRef::All));
    for job in jobs.iter_mut() {
        let peak = match job.peak {
            PeakRef::One => peak1,
            PeakRef::All => peak_all,
        };
        job.row.pct_of_peak = pct(job.row.value, peak);
    }
    let rows: Vec<Row> = jobs.into_iter().map(|j| j.row).collect();
    Section1 {
        rows,
        rounds,
        secs: rr_secs,
        peak1,
        peak_all,
    }
}

fn main() {
    let started = Instant::now();
    let budget = bench_secs();
    let software = std::env::var("DISTILL_BENCH_SOFTWARE").is_ok_and(|v| v == "1");
    let threads = rayon::current_num_threads();
    let level = match simd::requested_level() {
        Ok(level) => level,
        Err(e) => {
            eprintln!("distill kernel bench: {e}");
            std::process::exit(2);
        }
    };
    let cpu = format!("cpu ({})", level.name());
    println!(
        "distill kernel bench: {threads} rayon threads, SIMD level {}",
        level.name()
    );
    println!("  gemm blocking {}", distill_kernels::gemm::blocking(level));
    let pool1 = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("one-thread pool"),
    );
    let mut jobs: Vec<Job> = peak::jobs(&cpu, threads);
    let have_peak = !jobs.is_empty();
    gemm::push_jobs(&mut jobs, &cpu, threads, &pool1);
    // Silence the panic messages of not-yet-implemented kernels; they show as "n/a".
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    conv::push_jobs(&mut jobs, &cpu, threads);
    let Section1 {
        mut rows,
        rounds,
        secs: rr_secs,
        peak1,
        peak_all,
    } = round_robin(jobs, budget);

    // The memory roofline: GB/s rows are read against the streaming copy bandwidth.
    let stream_gbs = bandwidth::stream_copy_gbs();

    // Section 2: the `Backend` trait on the CPU backend and on every adapter.
    let seam::Sweep {
        cpu_dev,
        cpu_rows,
        gpu_rows,
        adapters,
        skipped,
    } = seam::sweep(budget, software, peak_all, stream_gbs);
    std::panic::set_hook(hook);

    if have_peak {
        println!(
            "\nf32 peak, AVX2+FMA loop ({PEAK_CHAINS} ymm chains; 2 flop/lane/FMA; % of peak is \
             against it): 1 thread {} GFLOP/s, {threads} threads {} GFLOP/s",
            fmt_opt(peak1, 1, ""),
            fmt_opt(peak_all, 1, ""),
        );
        if let Some(v) = rows
            .iter()
            .find(|r| r.kernel == "fma-peak-avx512")
            .and_then(|r| r.value)
        {
            println!(
                "  (this CPU also has AVX-512, which the GEMM uses at the avx512 level: {} \
                 GFLOP/s on {threads} threads with zmm FMAs)",
                fmt_opt(Some(v), 1, "")
            );
        }
    } else {
        println!("\nf32 peak: n/a (no AVX2+FMA on this CPU); % of peak not reported");
    }
    println!(
        "memory: streaming copy {stream_gbs:.1} GB/s (bytes read + written, {threads} threads); \
         % peak of GB/s rows is against it (their DRAM roofline; shapes that fit in cache \
         can pass 100%)"
    );
    println!(
        "section 1 (distill-kernels direct): best of {rounds} rounds over {rr_secs:.1} s; \
         % peak is against the peak at the same thread count"
    );
    println!(
        "section 2 (Backend trait): {budget} s per kernel per device (DISTILL_BENCH_SECS); \
         best batch of N calls + one read-back; cpu % peak vs the {threads}-thread FMA peak \
         (GFLOP/s rows) or the streaming bandwidth (GB/s rows)"
    );
    println!("  cpu   = {}", cpu_dev.name());
    for (label, name, peak, _) in &gpu_rows {
        let p = match peak {
            Some((v, src)) => format!("FP32 peak {v:.0} GFLOP/s ({src})"),
            None => "FP32 peak unknown (set DISTILL_GPU_PEAK_GFLOPS)".into(),
        };
        println!(
            "  {label:<5} = {name}; {p}; x cpu = GPU value / cpu value, same kernel and shape"
        );
    }
    rows.extend(cpu_rows);
    rows.extend(gpu_rows.into_iter().flat_map(|(_, _, _, rs)| rs));

    output::print_table(&rows);

    let json = serde_json::json!({
        "bench": "kernels",
        "threads": threads,
        "simd_level": level.name(),
        "peak_note": "f32 peak measured in-process with an AVX2+FMA loop (2 flop/lane/FMA); \
                      pct_of_peak is against the peak at the same thread count (cpu GFLOP/s \
                      rows), the streaming copy bandwidth (cpu GB/s rows) or the adapter's FP32 \
                      non-tensor peak (gpu rows)",
        "peak_gflops_1t": peak1,
        "peak_gflops_all": peak_all,
        "stream_copy_gbs": stream_gbs,
        "rounds": rounds,
        "backend_secs_per_kernel": budget,
        "units": "value in GFLOP/s (matmul, conv) or GB/s of bytes read + written by the \
                  kernel's contract; value_timestamp is the same from GPU timestamps; \
                  ratio_vs_cpu = gpu value / cpu-backend value for the same kernel and shape",
        "adapters": adapters,
        "skipped_adapters": skipped,
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
    });
    output::write_json(&json);
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}

/// `DISTILL_BENCH_SECS`: seconds per kernel per device in section 2 (default 0.25).
fn bench_secs() -> f64 {
    std::env::var("DISTILL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(0.25)
}
