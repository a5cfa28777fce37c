//! Training and inference throughput of the seed architectures on every device.
//!
//! `cargo bench --bench train` (harness = false). For the CPU backend and every GPU adapter
//! (`distill::backend::gpu::list_adapters()`, opened with `open_index`; software adapters such
//! as lavapipe only with `DISTILL_BENCH_SOFTWARE=1`), and for the `teacher` and `student`
//! presets on 1×28×28 inputs with 10 classes, measures:
//!
//! - training throughput (images/s) of a full step at batch 128: forward, cross-entropy,
//!   backward, Adam step, zero_grad;
//! - inference throughput (images/s) at batch 256 and latency (ms, median) at batch 1, both
//!   forward only under `no_grad`.
//!
//! Inputs are random and uploaded once (a ring of two batches per device), so the figures are
//! the engine's and not the data pipeline's. Each measurement warms up first (on a GPU that
//! builds pipelines and fills the buffer pool), then runs as many iterations as fit in
//! `DISTILL_BENCH_SECS` seconds (default 2). GPU throughput runs submit each step without
//! waiting and read a value back at the end, so the clock stops only when the work is done;
//! latency reads the logits back every call. Prints a table with the student/teacher speed-up
//! and GPU/CPU ratios, and writes the rows to `$CARGO_TARGET_DIR/bench-train.json` (or
//! `target/bench-train.json`). On an adapter with TIMESTAMP_QUERY it then prints the kernels
//! that take the most GPU time in one teacher training step.

use std::time::{Duration, Instant};

use distill::backend::gpu::{self, GpuBackend};
use distill::nn::{ArchSpec, Sequential};
use distill::ops;
use distill::optim::{OptimConfig, Optimizer};
use distill::rng::Rng;
use distill::{no_grad, Device, Result, Tensor};

const CHANNELS: usize = 1;
const SIDE: usize = 28;
const CLASSES: usize = 10;
const TRAIN_BATCH: usize = 128;
const INFER_BATCH: usize = 256;
const ARCHS: [&str; 2] = ["student", "teacher"];

/// One device × architecture.
struct Row {
    device: String,
    kind: String,
    arch: String,
    params: usize,
    train_ips: f64,
    train_iters: usize,
    infer_ips: f64,
    infer_iters: usize,
    latency_ms: f64,
    latency_iters: usize,
}

impl Row {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "device": self.device,
            "kind": self.kind,
            "arch": self.arch,
            "params": self.params,
            "input": [CHANNELS, SIDE, SIDE],
            "classes": CLASSES,
            "train_batch": TRAIN_BATCH,
            "train_images_per_s": self.train_ips,
            "train_iters": self.train_iters,
            "infer_batch": INFER_BATCH,
            "infer_images_per_s": self.infer_ips,
            "infer_iters": self.infer_iters,
            "latency_batch1_ms_median": self.latency_ms,
            "latency_iters": self.latency_iters,
        })
    }
}

fn budget() -> Duration {
    let secs = std::env::var("DISTILL_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(2.0);
    Duration::from_secs_f64(secs)
}

/// Iterations that fit in `budget` given one iteration took `one` (at least 2, at most 10 000).
fn iters_for(one: Duration, budget: Duration) -> usize {
    let one = one.as_secs_f64().max(1e-6);
    ((budget.as_secs_f64() / one) as usize).clamp(2, 10_000)
}

/// `n` random input images and labels on `dev`.
fn batch(dev: &Device, rng: &mut Rng, n: usize) -> Result<(Tensor, Tensor)> {
    let x: Vec<f32> = (0..n * CHANNELS * SIDE * SIDE)
        .map(|_| rng.normal())
        .collect();
    let y: Vec<u32> = (0..n).map(|_| rng.below(CLASSES) as u32).collect();
    Ok((
        Tensor::from_f32(&x, &[n, CHANNELS, SIDE, SIDE], dev)?,
        Tensor::from_u32(&y, &[n], dev)?,
    ))
}

/// One full training step; the loss stays on the device. Submits the step's work.
fn train_step(model: &Sequential, opt: &mut Optimizer, x: &Tensor, y: &Tensor) -> Result<Tensor> {
    let loss = ops::cross_entropy(&model.forward(x)?, y)?;
    loss.backward()?;
    opt.step()?;
    opt.zero_grad();
    x.device().backend().flush()?;
    Ok(loss)
}

/// Runs `step` to warm up, calibrates, then times as many calls as fit in the budget;
/// `finish` waits for the device. Returns (seconds per call, calls timed).
fn time_loop(
    mut step: impl FnMut(usize) -> Result<Option<Tensor>>,
    budget: Duration,
) -> Result<(f64, usize)> {
    let finish = |last: Option<Tensor>| -> Result<()> {
        if let Some(t) = last {
            t.to_vec()?;
        }
        Ok(())
    };
    // Warm-up (pipelines, buffer pool, caches), then one timed call to size the run.
    finish(step(0)?)?;
    finish(step(1)?)?;
    let t = Instant::now();
    finish(step(2)?)?;
    let n = iters_for(t.elapsed(), budget);
    let t = Instant::now();
    let mut last = None;
    for i in 0..n {
        last = step(i)?;
    }
    finish(last)?;
    Ok((t.elapsed().as_secs_f64() / n as f64, n))
}

fn measure(dev: &Device, arch: &str, budget: Duration) -> Result<Row> {
    let spec = ArchSpec::preset(arch, CHANNELS, SIDE, SIDE, CLASSES)?;
    let model = spec.build(dev, 0)?;
    let mut opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), model.parameters())?;
    let mut rng = Rng::new(1);
    let train: Vec<(Tensor, Tensor)> = (0..2)
        .map(|_| batch(dev, &mut rng, TRAIN_BATCH))
        .collect::<Result<_>>()?;
    let infer: Vec<(Tensor, Tensor)> = (0..2)
        .map(|_| batch(dev, &mut rng, INFER_BATCH))
        .collect::<Result<_>>()?;
    let single: Vec<(Tensor, Tensor)> = (0..2)
        .map(|_| batch(dev, &mut rng, 1))
        .collect::<Result<_>>()?;

    let (train_s, train_iters) = time_loop(
        |i| {
            let (x, y) = &train[i % 2];
            train_step(&model, &mut opt, x, y).map(Some)
        },
        budget,
    )?;
    let (infer_s, infer_iters) = time_loop(
        |i| {
            let y = no_grad(|| model.forward(&infer[i % 2].0))?;
            dev.backend().flush()?;
            Ok(Some(y))
        },
        budget,
    )?;

    // Latency: every call returns its logits to the host; median over the calls.
    let once = |i: usize| -> Result<Duration> {
        let t = Instant::now();
        let logits = no_grad(|| model.forward(&single[i % 2].0))?.to_vec()?;
        debug_assert_eq!(logits.len(), CLASSES);
        Ok(t.elapsed())
    };
    for i in 0..3 {
        once(i)?;
    }
    let n = iters_for(once(0)?, budget).min(2_000);
    let mut times: Vec<Duration> = (0..n).map(once).collect::<Result<_>>()?;
    times.sort();
    let latency_ms = times[n / 2].as_secs_f64() * 1e3;

    Ok(Row {
        device: dev.name(),
        kind: format!("{:?}", dev.kind()),
        arch: arch.into(),
        params: spec.num_parameters(),
        train_ips: TRAIN_BATCH as f64 / train_s,
        train_iters,
        infer_ips: INFER_BATCH as f64 / infer_s,
        infer_iters,
        latency_ms,
        latency_iters: n,
    })
}

/// Top kernels by GPU time over one teacher training step (after a warm-up step).
fn profile_teacher_step(g: &std::sync::Arc<GpuBackend>) -> Result<Vec<(String, u64, f64)>> {
    let dev = g.device();
    let model = ArchSpec::preset("teacher", CHANNELS, SIDE, SIDE, CLASSES)?.build(&dev, 0)?;
    let mut opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), model.parameters())?;
    let (x, y) = batch(&dev, &mut Rng::new(2), TRAIN_BATCH)?;
    train_step(&model, &mut opt, &x, &y)?.to_vec()?;
    if !g.enable_profiling()? {
        return Ok(Vec::new());
    }
    train_step(&model, &mut opt, &x, &y)?.to_vec()?;
    g.profile_report()
}

fn print_rows(rows: &[Row]) {
    println!();
    println!(
        "{:<44} {:<8} {:>10} {:>14} {:>14} {:>12}",
        "device", "arch", "params", "train img/s", "infer img/s", "lat b1 ms"
    );
    for r in rows {
        println!(
            "{:<44} {:<8} {:>10} {:>14.1} {:>14.1} {:>12.3}",
            truncate(&r.device, 44),
            r.arch,
            r.params,
            r.train_ips,
            r.infer_ips,
            r.latency_ms
        );
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

/// Ratios: student over teacher on each device, each GPU over the CPU for each arch.
fn ratios(rows: &[Row]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let find = |dev: &str, arch: &str| rows.iter().find(|r| r.device == dev && r.arch == arch);
    let mut devices: Vec<&str> = Vec::new();
    for r in rows {
        if !devices.contains(&r.device.as_str()) {
            devices.push(&r.device);
        }
    }
    println!();
    println!(
        "{:<44} {:<20} {:>10} {:>10} {:>10}",
        "device", "ratio", "train", "infer", "latency"
    );
    for d in &devices {
        if let (Some(s), Some(t)) = (find(d, "student"), find(d, "teacher")) {
            let (tr, inf, lat) = (
                s.train_ips / t.train_ips,
                s.infer_ips / t.infer_ips,
                t.latency_ms / s.latency_ms,
            );
            println!(
                "{:<44} {:<20} {:>9.2}x {:>9.2}x {:>9.2}x",
                truncate(d, 44),
                "student / teacher",
                tr,
                inf,
                lat
            );
            out.push(serde_json::json!({"device": d, "ratio": "student_over_teacher", "train": tr, "infer": inf, "latency": lat}));
        }
    }
    let cpu = rows
        .iter()
        .find(|r| r.kind == "Cpu")
        .map(|r| r.device.clone());
    if let Some(cpu) = cpu {
        for d in devices.iter().filter(|d| **d != cpu) {
            for arch in ARCHS {
                if let (Some(g), Some(c)) = (find(d, arch), find(&cpu, arch)) {
                    let (tr, inf, lat) = (
                        g.train_ips / c.train_ips,
                        g.infer_ips / c.infer_ips,
                        c.latency_ms / g.latency_ms,
                    );
                    println!(
                        "{:<44} {:<20} {:>9.2}x {:>9.2}x {:>9.2}x",
                        truncate(d, 44),
                        format!("gpu / cpu ({arch})"),
                        tr,
                        inf,
                        lat
                    );
                    out.push(serde_json::json!({"device": d, "ratio": "gpu_over_cpu", "arch": arch, "train": tr, "infer": inf, "latency": lat}));
                }
            }
        }
    }
    println!("(ratios > 1 mean faster; for latency, the inverse ratio of times)");
    out
}

fn run_device(dev: &Device, budget: Duration, rows: &mut Vec<Row>) {
    for arch in ARCHS {
        let t = Instant::now();
        match measure(dev, arch, budget) {
            Ok(r) => {
                eprintln!("  {arch:<8} train {:>9.1} img/s  infer {:>9.1} img/s  latency {:>8.3} ms  ({:.1} s)", r.train_ips, r.infer_ips, r.latency_ms, t.elapsed().as_secs_f64());
                rows.push(r);
            }
            Err(e) => eprintln!("  {arch}: failed: {e}"),
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let budget = budget();
    let software = std::env::var("DISTILL_BENCH_SOFTWARE").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut profiles = Vec::new();

    let cpu = Device::cpu();
    eprintln!("{}", cpu.name());
    run_device(&cpu, budget, &mut rows);

    for (a, opened) in gpu::adapters_to_bench(software) {
        let g = match opened {
            Ok(g) => g,
            Err(reason) => {
                eprintln!(
                    "gpu:{} {} ({}): skipped: {reason} (software adapters need DISTILL_BENCH_SOFTWARE=1)",
                    a.index, a.name, a.backend
                );
                skipped
                    .push(serde_json::json!({"index": a.index, "name": a.name, "reason": reason}));
                continue;
            }
        };
        let dev = g.device();
        eprintln!("gpu:{} {}", a.index, dev.name());
        run_device(&dev, budget, &mut rows);
        // Profiling slows every submit down, so it comes after the timings.
        if a.timestamp_query {
            match profile_teacher_step(&g) {
                Ok(report) if !report.is_empty() => {
                    let total: f64 = report.iter().map(|(_, _, ms)| ms).sum();
                    println!("\ngpu:{} {}: top kernels of one teacher training step (batch {TRAIN_BATCH}), {total:.3} ms of GPU time", a.index, dev.name());
                    for (name, calls, ms) in report.iter().take(10) {
                        println!(
                            "  {name:<28} {calls:>5} calls {ms:>10.3} ms {:>6.1}%",
                            100.0 * ms / total.max(1e-12)
                        );
                    }
                    profiles.push(serde_json::json!({
                        "device": dev.name(),
                        "kernels": report.iter().map(|(n, c, ms)| serde_json::json!({"kernel": n, "calls": c, "ms": ms})).collect::<Vec<_>>(),
                    }));
                }
                Ok(_) => {}
                Err(e) => eprintln!("  profiling failed: {e}"),
            }
        }
    }

    print_rows(&rows);
    let ratios = ratios(&rows);
    println!("\n{:.1} s in all", started.elapsed().as_secs_f64());

    let dir = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = std::path::Path::new(&dir).join("bench-train.json");
    let json = serde_json::json!({
        "bench": "train",
        "budget_s_per_measurement": budget.as_secs_f64(),
        "note": "inputs uploaded once; train = forward + cross-entropy + backward + Adam + zero_grad; \
                 infer and latency under no_grad; latency includes reading the logits back",
        "rows": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        "ratios": ratios,
        "skipped_adapters": skipped,
        "profiles": profiles,
    });
    let text = serde_json::to_string_pretty(&json).expect("serialisable");
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
        Ok(()) => println!("wrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
}
