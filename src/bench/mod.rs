//! What `distill bench` measures, on the CPU and on every GPU adapter: each device's own
//! peaks, every kernel at the shapes of the teacher and student presets, and the training
//! step; the versioned JSON report; the terminal table; the comparison of reports.
//!
//! - [`timing`]: the one timing loop (warm-up, batches closed by a read-back, best batch; GPU
//!   timestamps where the adapter has them);
//! - [`peak`], [`bandwidth`]: the measured peaks (f32 FMA chains, streaming copy) that every
//!   % is against; their kernels are `distill_kernels::bench` and shaders/bench.wgsl;
//! - [`kernels`]: every kernel of the `Backend` trait; [`train`]: training and inference;
//! - [`machine`]: what identifies the machine; [`load`]: how busy it was; [`report`]: the
//!   report and its check; [`record`]: a headline figure with where it came from;
//! - [`reference`](mod@reference): this machine's last quiet peaks, which a run's floor is read against;
//! - [`table`]: the terminal table; [`compare`]: reports side by side (markdown, PNG chart);
//! - [`yardstick`]: the same training steps in PyTorch, when a Python with torch is there.
//!
//! [`run`] is the one entry point: `distill bench` and the `cargo bench` targets call it.

//!
//! In a browser (wasm32) only the report, the machine description, the table and the
//! training rows' steps exist: the page (`src/web/bench.rs`) times those steps itself.

#[cfg(not(target_arch = "wasm32"))]
pub mod bandwidth;
#[cfg(not(target_arch = "wasm32"))]
pub mod compare;
#[cfg(not(target_arch = "wasm32"))]
pub mod kernels;
#[cfg(not(target_arch = "wasm32"))]
pub mod ladder;
pub mod table;
pub mod train;
#[cfg(not(target_arch = "wasm32"))]
pub mod yardstick;

#[cfg(not(target_arch = "wasm32"))]
use std::sync::Arc;
#[cfg(not(target_arch = "wasm32"))]
use web_time::Instant;

// What bench measures with lives below it, shared with the pipeline (`crate::measure`).
#[cfg(not(target_arch = "wasm32"))]
pub use crate::measure::peak;
pub use crate::measure::{load, machine, record, reference, report, timing};
#[cfg(not(target_arch = "wasm32"))]
pub use compare::{compare_files, Comparison};
#[cfg(not(target_arch = "wasm32"))]
pub use ladder::run_ladder;
pub use report::{DeviceReport, Peak, Report, Row, Status, Unit};
pub use table::render_table;

#[cfg(not(target_arch = "wasm32"))]
use crate::backend::gpu::{self, GpuBackend};
#[cfg(not(target_arch = "wasm32"))]
use crate::{Device, Error, Result};
#[cfg(not(target_arch = "wasm32"))]
use kernels::{workloads, Shapes};
#[cfg(not(target_arch = "wasm32"))]
use timing::Budget;

#[cfg(not(target_arch = "wasm32"))]
/// Which devices to measure (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU and every GPU adapter (software ones only when asked for).
    All,
    Cpu,
    /// Every GPU adapter (software ones only when asked for).
    Gpus,
    /// The adapter `gpu:N`, software or not.
    Gpu(usize),
}

#[cfg(not(target_arch = "wasm32"))]
impl DeviceChoice {
    /// `all` (or `auto`), `cpu`, `gpu`, `gpu:N`.
    pub fn parse(spec: &str) -> Result<DeviceChoice> {
        let s = spec.trim().to_ascii_lowercase();
        match s.as_str() {
            "all" | "auto" => Ok(DeviceChoice::All),
            "cpu" => Ok(DeviceChoice::Cpu),
            "gpu" => Ok(DeviceChoice::Gpus),
            _ => s
                .strip_prefix("gpu:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Gpu)
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "bench device '{spec}': expected all, cpu, gpu or gpu:N"
                    ))
                }),
        }
    }

    fn includes_cpu(self) -> bool {
        matches!(self, DeviceChoice::All | DeviceChoice::Cpu)
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sections {
    /// The peaks (always measured where `kernels` is: the kernels' % need them).
    pub peaks: bool,
    pub kernels: bool,
    pub train: bool,
}

#[cfg(not(target_arch = "wasm32"))]
/// The settings of one bench run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchConfig {
    /// Smaller shapes and budgets: under a minute on 2 CPU cores.
    pub quick: bool,
    pub devices: DeviceChoice,
    /// Measure software adapters (lavapipe) too.
    pub software: bool,
    pub sections: Sections,
    /// How each GPU device gets its GEMM tiles as it opens.
    pub tiles: gpu::TilePolicy,
}

#[cfg(not(target_arch = "wasm32"))]
impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            quick: false,
            devices: DeviceChoice::All,
            software: false,
            sections: Sections {
                peaks: true,
                kernels: true,
                train: true,
            },
            tiles: gpu::TilePolicy::default(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Progress of a run, for a caller to show.
pub trait Observer {
    /// A device starts: `steps` rows to measure.
    fn device(&mut self, id: &str, name: &str, steps: usize) {
        let _ = (id, name, steps);
    }
    /// A row is measured.
    fn row(&mut self, row: &Row) {
        let _ = row;
    }
    /// A remark (a skipped adapter, a device that failed).
    fn message(&mut self, text: &str) {
        let _ = text;
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// An observer that shows nothing.
pub struct Silent;
#[cfg(not(target_arch = "wasm32"))]
impl Observer for Silent {}

#[cfg(not(target_arch = "wasm32"))]
/// An observer that writes a line per device and every remark on stderr.
pub struct Lines;
#[cfg(not(target_arch = "wasm32"))]
impl Observer for Lines {
    fn device(&mut self, id: &str, name: &str, steps: usize) {
        eprintln!("{id}: {name}: measuring {steps} rows");
    }
    fn row(&mut self, row: &Row) {
        if let Some(e) = &row.error {
            eprintln!("  {} {}: {e}", row.kernel, row.shape);
        }
    }
    fn message(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl BenchConfig {
    /// The settings of the `cargo bench` targets, which take no flags: `sections`, and
    /// `DISTILL_BENCH_QUICK=1`, `DISTILL_BENCH_DEVICE` (all, cpu, gpu, gpu:N; default all),
    /// `DISTILL_BENCH_SOFTWARE=1`, and `DISTILL_AUTOTUNE=0` as the CLI reads it.
    pub fn from_env(sections: Sections) -> Result<BenchConfig> {
        let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        let devices = match std::env::var("DISTILL_BENCH_DEVICE") {
            Ok(spec) if !spec.trim().is_empty() => DeviceChoice::parse(&spec)?,
            _ => DeviceChoice::All,
        };
        Ok(BenchConfig {
            quick: flag("DISTILL_BENCH_QUICK"),
            devices,
            software: flag("DISTILL_BENCH_SOFTWARE"),
            sections,
            tiles: gpu::TilePolicy::unless_off(std::env::var("DISTILL_AUTOTUNE").ok().as_deref()),
        })
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Sizes and budgets for one kind of device.
struct Plan {
    shapes: Shapes,
    batches: train::Batches,
    kernel: Budget,
    peak: Budget,
    train: Budget,
    /// Whether the training and inference rows run (not on a software adapter in --quick:
    /// one teacher step there takes many seconds).
    train_rows: bool,
    copy_bytes: usize,
}

#[cfg(not(target_arch = "wasm32"))]
impl Plan {
    fn new(quick: bool, software: bool) -> Plan {
        let budget = |secs, max_calls| Budget { secs, max_calls };
        if software {
            // A Vulkan emulation on the CPU: small shapes, few calls.
            return Plan {
                shapes: Shapes::software(),
                batches: train::Batches::SOFTWARE,
                kernel: budget(0.05, 4),
                peak: budget(0.1, 4),
                train: budget(0.1, 2),
                train_rows: !quick,
                copy_bytes: 16 << 20,
            };
        }
        if quick {
            Plan {
                shapes: Shapes::quick(),
                batches: train::Batches::STANDARD,
                kernel: budget(0.1, 100_000),
                peak: budget(0.3, 1000),
                train: budget(0.4, 1000),
                train_rows: true,
                copy_bytes: 128 << 20,
            }
        } else {
            Plan {
                shapes: Shapes::full(),
                batches: train::Batches::STANDARD,
                kernel: budget(0.5, 100_000),
                peak: budget(1.0, 1000),
                train: budget(2.0, 10_000),
                train_rows: true,
                copy_bytes: 256 << 20,
            }
        }
    }

    /// Rows to measure: `peaks` peak and bandwidth rows, then kernels and training.
    fn steps(&self, cfg: &BenchConfig, peaks: usize) -> usize {
        let mut n = 0;
        if cfg.sections.peaks || cfg.sections.kernels {
            n += peaks;
        }
        if cfg.sections.kernels {
            n += workloads(&self.shapes)
                .iter()
                .map(|w| w.rows().len())
                .sum::<usize>();
        }
        if cfg.sections.train && self.train_rows {
            n += train::STEPS.len();
        }
        n
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Runs the bench: every device `cfg` selects, in order (the CPU first), then the report.
pub fn run(cfg: &BenchConfig, obs: &mut dyn Observer) -> Result<Report> {
    let started = Instant::now();
    let mut load = load::LoadWindow::start_here();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    let (date, started_utc) = machine::utc_now();
    let mut report = Report {
        schema_version: report::SCHEMA_VERSION,
        distill_version: machine::version().into(),
        git_commit: machine::git_commit().into(),
        date,
        started_utc,
        quick: cfg.quick,
        seconds: 0.0,
        machine: machine::this_machine(),
        load: None,
        devices: Vec::new(),
        rows: Vec::new(),
    };
    if cfg.devices.includes_cpu() {
        bench_cpu(cfg, &mut report, obs);
    }
    if cfg.devices != DeviceChoice::Cpu {
        bench_gpus(cfg, &mut report, obs)?;
    }
    report.drop_unmeasurable();
    report.fill_percentages();
    report.seconds = started.elapsed().as_secs_f64();
    load.finish();
    if let Some(w) = load.warning() {
        obs.message(&w);
    }
    report.load = Some(load);
    report
        .validate()
        .map_err(|e| Error::Other(format!("the bench made an invalid report: {e}")))?;
    Ok(report)
}

#[cfg(not(target_arch = "wasm32"))]
/// Pushes `row` to the report and tells the observer.
fn push(report: &mut Report, obs: &mut dyn Observer, row: Row) {
    obs.row(&row);
    report.rows.push(row);
}

#[cfg(not(target_arch = "wasm32"))]
fn bench_cpu(cfg: &BenchConfig, report: &mut Report, obs: &mut dyn Observer) {
    let dev = Device::cpu();
    let plan = Plan::new(cfg.quick, false);
    let threads = rayon::current_num_threads();
    let c = distill_kernels::simd::cache_sizes();
    let copies = 1 + bandwidth::cache_levels(threads, c.l2, c.l3, 2 * plan.copy_bytes).len();
    let peak_rows =
        distill_kernels::simd::available().len() * if threads > 1 { 2 } else { 1 } + copies;
    obs.device("cpu", &dev.name(), plan.steps(cfg, peak_rows));
    let mut d = DeviceReport {
        id: "cpu".into(),
        kind: "cpu".into(),
        name: dev.name(),
        software: false,
        status: Status::Ok,
        note: None,
        adapter: None,
        peak_flops: None,
        peak_bandwidth: None,
        cache_bandwidths: Vec::new(),
    };
    if cfg.sections.peaks || cfg.sections.kernels {
        let (rows, flops) = peak::cpu_peaks(plan.peak);
        for r in rows {
            push(report, obs, r);
        }
        let (rows, levels) = bandwidth::cpu_cache_bandwidths(2 * plan.copy_bytes, plan.peak);
        for r in rows {
            push(report, obs, r);
        }
        let (row, bw) = bandwidth::cpu_bandwidth(plan.copy_bytes, plan.peak);
        push(report, obs, row);
        (d.peak_flops, d.peak_bandwidth) = (flops, bw);
        d.cache_bandwidths = levels.into_iter().filter(|p| p.value > 0.0).collect();
    }
    report.devices.push(d);
    device_rows(cfg, &plan, "cpu", &dev, None, report, obs);
}

#[cfg(not(target_arch = "wasm32"))]
/// The kernel and training rows of one device.
fn device_rows(
    cfg: &BenchConfig,
    plan: &Plan,
    id: &str,
    dev: &Device,
    gpu: Option<&GpuBackend>,
    report: &mut Report,
    obs: &mut dyn Observer,
) {
    let timestamps = gpu.is_some_and(|g| g.can_profile());
    let max_buffer = gpu.map(|g| g.max_buffer_bytes());
    if cfg.sections.kernels {
        for w in workloads(&plan.shapes) {
            let rows = kernels::run_workload(
                id,
                &dev.0,
                &w,
                plan.kernel,
                timestamps,
                max_buffer,
                &mut |r| obs.row(r),
            );
            report.rows.extend(rows);
        }
    }
    if cfg.sections.train && plan.train_rows {
        for step in train::STEPS {
            let row = train::measure(id, dev, step, plan.batches, plan.train);
            push(report, obs, row);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn bench_gpus(cfg: &BenchConfig, report: &mut Report, obs: &mut dyn Observer) -> Result<()> {
    let adapters = gpu::list_adapters();
    if let DeviceChoice::Gpu(n) = cfg.devices {
        if n >= adapters.len() {
            // The engine's own message: how many adapters there are, or how to get one.
            return gpu::open_index_with(n, &cfg.tiles).map(|_| ());
        }
    } else if adapters.is_empty() && cfg.devices == DeviceChoice::Gpus {
        return gpu::open_best_with(&cfg.tiles).map(|_| ());
    }
    for a in adapters {
        if let DeviceChoice::Gpu(n) = cfg.devices {
            if a.index != n {
                continue;
            }
        }
        let id = format!("gpu:{}", a.index);
        let software = a.device_type == "software";
        let mut d = DeviceReport {
            id: id.clone(),
            kind: a.device_type.clone(),
            name: format!("{} ({})", a.name, a.backend),
            software,
            status: Status::Ok,
            note: None,
            adapter: None,
            peak_flops: None,
            peak_bandwidth: None,
            cache_bandwidths: Vec::new(),
        };
        let asked = matches!(cfg.devices, DeviceChoice::Gpu(_)) || cfg.software;
        if software && !asked {
            d.status = Status::Skipped;
            d.note = Some(
                "software adapter (it emulates a GPU on the CPU): measured only with --software \
                 or --device gpu:N"
                    .into(),
            );
            obs.message(&format!("{id} {}: skipped (software adapter)", d.name));
            report.devices.push(d);
            continue;
        }
        match GpuBackend::open_index_with(a.index, &cfg.tiles) {
            Ok(g) => bench_gpu(cfg, &id, software, g, d, report, obs),
            Err(e) => {
                d.status = Status::Failed;
                d.note = Some(format!("could not open: {e}"));
                obs.message(&format!("{id} {}: could not open: {e}", d.name));
                report.devices.push(d);
            }
        }
    }
    Ok(())
}

#[cfg(not(target_arch = "wasm32"))]
fn bench_gpu(
    cfg: &BenchConfig,
    id: &str,
    software: bool,
    g: Arc<GpuBackend>,
    mut d: DeviceReport,
    report: &mut Report,
    obs: &mut dyn Observer,
) {
    let dev = g.device();
    let plan = Plan::new(cfg.quick, software);
    d.name = dev.name();
    d.adapter = Some(machine::adapter_details(&g));
    let timestamps = g.can_profile();
    d.note = Some(if software && !plan.train_rows {
        "software adapter: small shapes and few calls; no training rows with --quick".into()
    } else if software {
        "software adapter: small shapes and few calls".into()
    } else if timestamps {
        "kernels timed with GPU timestamps".into()
    } else {
        "no timestamp queries: kernels timed on the wall clock with a read-back".into()
    });
    obs.device(id, &d.name, plan.steps(cfg, 2));
    if cfg.sections.peaks || cfg.sections.kernels {
        let (row, flops) = peak::gpu_peak(id, &g, software, plan.peak, timestamps);
        push(report, obs, row);
        let (row, bw) = bandwidth::gpu_bandwidth(id, &g, plan.copy_bytes, plan.peak, timestamps);
        push(report, obs, row);
        (d.peak_flops, d.peak_bandwidth) = (flops, bw);
    }
    report.devices.push(d);
    device_rows(cfg, &plan, id, &dev, Some(&g), report, obs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_choices_parse() {
        assert_eq!(DeviceChoice::parse("all").unwrap(), DeviceChoice::All);
        assert_eq!(DeviceChoice::parse("auto").unwrap(), DeviceChoice::All);
        assert_eq!(DeviceChoice::parse("CPU").unwrap(), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::parse("gpu").unwrap(), DeviceChoice::Gpus);
        assert_eq!(DeviceChoice::parse("gpu:3").unwrap(), DeviceChoice::Gpu(3));
        for bad in ["", "gpu:", "gpu:x", "tpu", "gpu:-1"] {
            let e = DeviceChoice::parse(bad).unwrap_err().to_string();
            assert!(e.contains("expected all, cpu, gpu or gpu:N"), "{bad}: {e}");
        }
    }
}
