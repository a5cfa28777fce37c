//! `distill bench` in a page: the training and inference rows of the native bench
//! ([`crate::bench::train`]: the same steps, names and shapes), timed on the page's device
//! through the asynchronous read-back, in the same versioned JSON report. Its machine section
//! says what a browser can know (user agent, logical CPUs, the adapter's info, limits and
//! features), so `distill bench --compare` reads it beside native reports.

use wasm_bindgen::prelude::*;
use web_time::Instant;

use super::device::Engine;
use super::js_error;
use crate::bench::machine::{adapter_details, browser_machine, git_commit, version};
use crate::bench::report::{DeviceReport, Report, Row, Status, Unit, SCHEMA_VERSION};
use crate::bench::timing::Timing;
use crate::bench::train::{Batches, Step, StepRig, STEPS};
use crate::calendar::utc_now;
use crate::{Device, Result};

/// Seconds per call of `step` on `device`: one warm-up call, then batches of calls closed by
/// a read-back, doubling until a batch lasts `budget` seconds; the best batch counts.
async fn time_step(device: &Device, step: Step, batch: usize, budget: f64) -> Result<(f64, u64)> {
    let mut rig = StepRig::new(device, step, batch)?;
    rig.call()?.read().await?; // pipelines, pools, caches
    let (mut calls, mut best) = (1usize, f64::INFINITY);
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let mut last = None;
        for _ in 0..calls {
            let out = rig.call()?;
            if matches!(step, Step::Latency(_)) {
                out.read().await?;
            }
            last = Some(out);
        }
        if let Some(out) = last {
            out.read().await?;
        }
        let secs = t.elapsed().as_secs_f64();
        best = best.min(secs / calls as f64);
        if secs >= budget || started.elapsed().as_secs_f64() >= 3.0 * budget {
            return Ok((best, calls as u64));
        }
        calls *= 2;
    }
}

/// The bench report of the page's device. `quick`: a smaller time budget per row. A
/// software adapter (SwiftShader) runs the native bench's small software batches (a step of
/// batch 128 would take minutes there); the CPU path and hardware GPUs run the seed batches,
/// so their rows line up with native reports. `batches`: `auto` (that choice), `seed` or
/// `software`. `groups`: the row groups to run (`train,infer,latency`), empty for all.
#[wasm_bindgen]
pub async fn bench_report(
    engine: &Engine,
    user_agent: String,
    logical_cpus: usize,
    quick: bool,
    batches: String,
    groups: String,
    progress: js_sys::Function,
) -> Result<String, JsError> {
    let device: &Device = &engine.device;
    let started = Instant::now();
    let (date, started_utc) = utc_now();
    let gpu = device.backend().as_gpu();
    let software = gpu.is_some_and(|g| {
        crate::backend::gpu::context::type_name(g.adapter_info().device_type) == "software"
    });
    let batches = match batches.as_str() {
        "seed" => Batches::STANDARD,
        "software" => Batches::SOFTWARE,
        "auto" | "" if software => Batches::SOFTWARE,
        "auto" | "" => Batches::STANDARD,
        other => {
            return Err(JsError::new(&format!(
                "unknown batches '{other}': expected auto, seed or software"
            )))
        }
    };
    let budget = if quick { 0.5 } else { 2.0 };
    let id = if gpu.is_some() { "gpu:0" } else { "cpu" };
    let mut rows = Vec::new();
    let wanted =
        |step: &Step| groups.is_empty() || groups.split(',').any(|g| g.trim() == step.group());
    for step in STEPS.iter().copied().filter(wanted) {
        let _ = progress.call1(&JsValue::NULL, &JsValue::from_str(&step.name(batches)));
        let unit = if matches!(step, Step::Latency(_)) {
            Unit::Ms
        } else {
            Unit::ImagesPerSec
        };
        let mut row = Row::new(id, step.group(), &step.name(batches), &step.shape(), unit);
        row.timing = if gpu.is_some() {
            Timing::WallReadback
        } else {
            row.threads = Some(1);
            Timing::Wall
        };
        match time_step(device, step, step.batch(batches), budget).await {
            Ok((secs, calls)) => {
                row.value = Some(match unit {
                    Unit::Ms => secs * 1e3,
                    _ => step.batch(batches) as f64 / secs,
                });
                row.calls = Some(calls);
            }
            Err(e) => row.error = Some(e.to_string()),
        }
        rows.push(row);
    }
    let device_report = DeviceReport {
        id: id.into(),
        kind: match gpu {
            Some(g) => crate::backend::gpu::context::type_name(g.adapter_info().device_type).into(),
            None => "cpu".into(),
        },
        name: device.name(),
        software,
        status: Status::Ok,
        note: Some(format!(
            "measured in a browser ({}); no peaks: a page cannot run the peak kernels' timing",
            if gpu.is_some() {
                "WebGPU"
            } else {
                "WebAssembly, one thread"
            }
        )),
        adapter: gpu.map(adapter_details),
        peak_flops: None,
        peak_bandwidth: None,
        cache_bandwidths: Vec::new(),
    };
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        distill_version: version().into(),
        git_commit: git_commit().into(),
        date,
        started_utc,
        quick,
        seconds: started.elapsed().as_secs_f64(),
        machine: browser_machine(&user_agent, logical_cpus),
        devices: vec![device_report],
        rows,
        // A page cannot read the machine's load average.
        load: None,
    };
    report.drop_unmeasurable();
    report.fill_percentages();
    report
        .validate()
        .map_err(|e| js_error(crate::Error::Other(format!("the page's bench report: {e}"))))?;
    Ok(report.to_json())
}
