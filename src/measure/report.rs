//! The bench report: a versioned JSON document (docs/bench.md describes every field), its
//! semantic check, and reading and writing it.
//!
//! A report is what a user hands to a colleague, so reading one never trusts it:
//! [`Report::load`] parses, checks the schema version first (a clear message for a report of
//! another version), then [`Report::validate`]s what the types cannot say (rows name a device
//! of the report, each % of peak is the row's value over the peak it names, …).

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::LoadWindow;
use super::machine::{AdapterDetails, Machine};
use super::timing::Timing;
use crate::fs::write_atomic;
use crate::{Error, Result};

/// The version of the report format this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One `distill bench` run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema_version: u32,
    pub distill_version: String,
    pub git_commit: String,
    /// UTC date of the run, `YYYY-MM-DD`.
    pub date: String,
    /// UTC time the run started, `YYYY-MM-DDTHH:MM:SSZ`.
    pub started_utc: String,
    /// `--quick`: smaller shapes and budgets.
    pub quick: bool,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    pub machine: Machine,
    /// The load average before and after the run, and whether other work made the machine
    /// busy (absent in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadWindow>,
    pub devices: Vec<DeviceReport>,
    pub rows: Vec<Row>,
}

/// Whether a device was measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured (some rows may still carry errors).
    Ok,
    /// Not measured on purpose (a software adapter without `--software`).
    Skipped,
    /// Could not be opened or set up.
    Failed,
}

/// A measured peak of a device: what it is and its value (GFLOP/s or GB/s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peak {
    pub label: String,
    pub value: f64,
    /// A copy's footprint (bytes of both buffers): which GB/s rows it is the roofline of
    /// ([`DeviceReport::bandwidth_for`]). `None` for the f32 peak, for GPUs and in reports
    /// written before the CPU's copies were measured at several footprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint_bytes: Option<u64>,
}

impl Peak {
    /// A peak with no cache-level bound.
    pub fn new(label: impl Into<String>, value: f64) -> Peak {
        Peak {
            label: label.into(),
            value,
            footprint_bytes: None,
        }
    }
}

/// One device of the run: the CPU backend or a GPU adapter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    /// `cpu` or `gpu:N` (as `--device` names it); rows refer to it.
    pub id: String,
    /// `cpu`, `discrete GPU`, `integrated GPU`, `virtual GPU`, `software`, `other`.
    pub kind: String,
    /// The backend's name, e.g. `cpu (avx2+fma, 2 threads)` or `NVIDIA H200 (Vulkan)`.
    pub name: String,
    /// A software rasteriser (lavapipe): it times the CPU through a Vulkan emulation.
    pub software: bool,
    pub status: Status,
    /// Why it was skipped or failed, or a remark on how it was measured.
    pub note: Option<String>,
    /// GPU adapters: identity, driver, limits and features used.
    pub adapter: Option<AdapterDetails>,
    /// The reference f32 peak, GFLOP/s: every GFLOP/s row's % is against it.
    pub peak_flops: Option<Peak>,
    /// The main-memory bandwidth, GB/s (a copy far larger than the last-level cache).
    pub peak_bandwidth: Option<Peak>,
    /// The bandwidth of copies small enough to stay in the caches (CPU: L2, then steps
    /// through L3), smallest footprint first. Absent in reports written before they were
    /// measured, and for GPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_bandwidths: Vec<Peak>,
}

impl DeviceReport {
    /// The bandwidth a GB/s row with this working set is read against: of the copies with a
    /// known footprint (the cache copies and main memory), the one of the largest footprint
    /// no larger than the working set, an upper bound on the row's bandwidth since bandwidth
    /// falls as the footprint grows; the smallest copy for a working set smaller than all of
    /// them. Rows without a known working set, and devices without footprints, are read
    /// against main memory.
    pub fn bandwidth_for(&self, working_set: Option<u64>) -> Option<&Peak> {
        let sized: Vec<&Peak> = self
            .cache_bandwidths
            .iter()
            .chain(&self.peak_bandwidth)
            .filter(|p| p.footprint_bytes.is_some())
            .collect();
        let (Some(ws), Some(smallest)) = (working_set, sized.first()) else {
            return self.peak_bandwidth.as_ref();
        };
        let below = sized
            .iter()
            .filter(|p| p.footprint_bytes.is_some_and(|f| f <= ws))
            .max_by_key(|p| p.footprint_bytes);
        Some(below.copied().unwrap_or(smallest))
    }
}

/// The unit of a row's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    #[serde(rename = "GFLOP/s")]
    Gflops,
    /// Bytes read + written per second, 10^9.
    #[serde(rename = "GB/s")]
    Gbps,
    /// Images per second.
    #[serde(rename = "img/s")]
    ImagesPerSec,
    /// Milliseconds per call (latency; lower is better).
    #[serde(rename = "ms")]
    Ms,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Gflops => "GFLOP/s",
            Unit::Gbps => "GB/s",
            Unit::ImagesPerSec => "img/s",
            Unit::Ms => "ms",
        }
    }

    /// Whether a larger value is better (all but latency).
    pub fn higher_is_better(self) -> bool {
        self != Unit::Ms
    }
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// The `id` of a device of the report.
    pub device: String,
    /// `peak`, `bandwidth`, `matmul`, `conv2d`, `pool`, `softmax`, `elementwise`, `optimiser`,
    /// `train`, `infer`, `latency`.
    pub group: String,
    pub kernel: String,
    pub shape: String,
    pub unit: Unit,
    /// The figure; `None` when `error` says why there is none.
    pub value: Option<f64>,
    /// `100 · value / peak`, for GFLOP/s and GB/s rows of a device with that peak.
    pub pct_of_peak: Option<f64>,
    /// The label of the peak `pct_of_peak` is against.
    pub peak: Option<String>,
    pub timing: Timing,
    /// Calls in the batch the value comes from.
    pub calls: Option<u64>,
    /// CPU threads (CPU rows).
    pub threads: Option<usize>,
    pub error: Option<String>,
    /// Bytes of the distinct buffers one call touches (GB/s rows): it picks the bandwidth the
    /// row is read against ([`DeviceReport::bandwidth_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    /// GFLOP/s rows whose bytes are known: the bytes the kernel's contract reads and writes
    /// (its `working_set_bytes`, each buffer once), per second, 10^9. Absent in reports
    /// written before it was measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbps: Option<f64>,
    /// `100 · gbps / bandwidth`: the row against the memory arm of its roofline, the copy its
    /// working set is read against ([`DeviceReport::bandwidth_for`]), as a GB/s row would be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pct_of_bandwidth: Option<f64>,
    /// The label of the copy `pct_of_bandwidth` is against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_peak: Option<String>,
}

impl Row {
    /// A row still without its figure.
    pub fn new(device: &str, group: &str, kernel: &str, shape: &str, unit: Unit) -> Row {
        Row {
            device: device.into(),
            group: group.into(),
            kernel: kernel.into(),
            shape: shape.into(),
            unit,
            value: None,
            pct_of_peak: None,
            peak: None,
            timing: Timing::Wall,
            calls: None,
            threads: None,
            error: None,
            working_set_bytes: None,
            gbps: None,
            pct_of_bandwidth: None,
            bandwidth_peak: None,
        }
    }

    /// The row's key across reports: kernel and shape.
    pub fn key(&self) -> (&str, &str) {
        (&self.kernel, &self.shape)
    }
}

impl Report {
    /// The device with this id.
    pub fn device(&self, id: &str) -> Option<&DeviceReport> {
        self.devices.iter().find(|d| d.id == id)
    }

    /// Turns a figure that is not a positive number (a workload too short for the clock)
    /// into an error saying so, so the report stays valid.
    pub fn drop_unmeasurable(&mut self) {
        for r in &mut self.rows {
            if let Some(v) = r.value.filter(|v| !(v.is_finite() && *v > 0.0)) {
                r.value = None;
                r.gbps = None;
                r.error = Some(format!("no measurable time (figure {v})"));
            }
        }
    }

    /// Fills each GFLOP/s and GB/s row's `pct_of_peak` and `peak` from its device's peaks.
    pub fn fill_percentages(&mut self) {
        let devices = self.devices.clone();
        for r in &mut self.rows {
            let d = devices.iter().find(|d| d.id == r.device);
            let bandwidth = d.and_then(|d| d.bandwidth_for(r.working_set_bytes));
            let peak = match r.unit {
                Unit::Gflops => d.and_then(|d| d.peak_flops.as_ref()),
                Unit::Gbps => bandwidth,
                _ => None,
            };
            (r.pct_of_peak, r.peak) = percent_of(r.value, peak);
            let moved = r.gbps.filter(|_| r.unit == Unit::Gflops);
            (r.pct_of_bandwidth, r.bandwidth_peak) = percent_of(moved, bandwidth);
        }
    }

    /// Checks what the types cannot: see the module header. The message names the first
    /// problem found.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema_version {} (this distill reads {SCHEMA_VERSION})",
                self.schema_version
            ));
        }
        check_date(&self.date)?;
        if !(self.seconds.is_finite() && self.seconds >= 0.0) {
            return Err(format!("seconds is {}", self.seconds));
        }
        let mut ids = HashSet::new();
        for d in &self.devices {
            validate_device(d)?;
            if !ids.insert(d.id.as_str()) {
                return Err(format!("device `{}` is listed twice", d.id));
            }
        }
        for (i, r) in self.rows.iter().enumerate() {
            let d = self.device(&r.device).ok_or_else(|| {
                format!(
                    "rows[{i}] ({}): no device `{}` in devices",
                    r.kernel, r.device
                )
            })?;
            validate_row(r, d).map_err(|e| format!("rows[{i}] ({} {}): {e}", r.kernel, r.shape))?;
        }
        Ok(())
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serialises")
    }

    /// Writes the report atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json();
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Parses and validates a report; errors say what is wrong (not which file).
    pub fn from_json(text: &str) -> std::result::Result<Report, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            None => return Err("not a distill bench report (no schema_version)".into()),
            Some(v) if v != SCHEMA_VERSION as u64 => {
                return Err(format!(
                    "a bench report of schema_version {v}; this distill reads version \
                     {SCHEMA_VERSION}"
                ))
            }
            Some(_) => {}
        }
        let report: Report =
            serde_json::from_value(value).map_err(|e| format!("not a valid bench report: {e}"))?;
        report
            .validate()
            .map_err(|e| format!("invalid bench report: {e}"))?;
        Ok(report)
    }

    /// Reads a report file: a missing file, malformed JSON or an invalid report is an error
    /// naming the file and what is wrong.
    pub fn load(path: &Path) -> Result<Report> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Report::from_json(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }
}

/// `100 · value / peak` and the peak's label, where both are known.
fn percent_of(value: Option<f64>, peak: Option<&Peak>) -> (Option<f64>, Option<String>) {
    match (value, peak) {
        (Some(v), Some(p)) if p.value > 0.0 => (Some(100.0 * v / p.value), Some(p.label.clone())),
        _ => (None, None),
    }
}

pub(crate) fn check_date(date: &str) -> std::result::Result<(), String> {
    let b = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
    {
        Ok(())
    } else {
        Err(format!("date `{date}` is not YYYY-MM-DD"))
    }
}

fn validate_device(d: &DeviceReport) -> std::result::Result<(), String> {
    let gpu_index = d.id.strip_prefix("gpu:").map(str::parse::<usize>);
    if d.id != "cpu" && !matches!(gpu_index, Some(Ok(_))) {
        return Err(format!("device id `{}` is neither `cpu` nor `gpu:N`", d.id));
    }
    for p in d
        .peak_flops
        .iter()
        .chain(&d.peak_bandwidth)
        .chain(&d.cache_bandwidths)
    {
        if !(p.value.is_finite() && p.value > 0.0) {
            return Err(format!(
                "device {}: peak `{}` is {}",
                d.id, p.label, p.value
            ));
        }
    }
    if d.status != Status::Ok && d.note.is_none() {
        return Err(format!(
            "device {} is {:?} without a note saying why",
            d.id, d.status
        ));
    }
    Ok(())
}

fn validate_row(r: &Row, d: &DeviceReport) -> std::result::Result<(), String> {
    if d.status != Status::Ok {
        return Err(format!("device {} has rows but was not measured", d.id));
    }
    match (r.value, &r.error) {
        (Some(v), None) if v.is_finite() && v > 0.0 => {}
        (Some(v), None) => return Err(format!("value {v} is not a positive number")),
        (None, Some(_)) => {}
        (Some(_), Some(_)) => return Err("has both a value and an error".into()),
        (None, None) => return Err("has neither a value nor an error".into()),
    }
    let bandwidth = d.bandwidth_for(r.working_set_bytes);
    let peak = match r.unit {
        Unit::Gflops => d.peak_flops.as_ref(),
        Unit::Gbps => bandwidth,
        Unit::ImagesPerSec | Unit::Ms => None,
    };
    check_percent("pct_of_peak", r.value, r.pct_of_peak, &r.peak, peak, &d.id)?;
    if let Some(g) = r.gbps {
        if r.unit != Unit::Gflops {
            return Err(format!(
                "gbps on a {} row (only GFLOP/s rows carry it)",
                r.unit.name()
            ));
        }
        if !(g.is_finite() && g > 0.0) || r.value.is_none() {
            return Err(format!("gbps {g} is not a positive number beside a value"));
        }
    }
    check_percent(
        "pct_of_bandwidth",
        r.gbps,
        r.pct_of_bandwidth,
        &r.bandwidth_peak,
        bandwidth,
        &d.id,
    )
}

/// That a percentage (`what`) and the label of the peak it is against come together, and
/// that it is `value` over the peak this row is read against (`peak`) on device `id`.
fn check_percent(
    what: &str,
    value: Option<f64>,
    pct: Option<f64>,
    label: &Option<String>,
    peak: Option<&Peak>,
    id: &str,
) -> std::result::Result<(), String> {
    match (pct, label) {
        (None, None) => Ok(()),
        (Some(pct), Some(label)) => {
            let p = peak.ok_or_else(|| {
                format!("{what} against `{label}`, but device {id} has no such peak")
            })?;
            if &p.label != label {
                return Err(format!(
                    "{what} against `{label}`, but for this row the device's is `{}`",
                    p.label
                ));
            }
            let v = value.ok_or_else(|| format!("a {what} without the figure it is of"))?;
            let want = 100.0 * v / p.value;
            if (pct - want).abs() > 1e-6 * want.abs().max(1.0) {
                return Err(format!("{what} {pct} but value / peak is {want}"));
            }
            Ok(())
        }
        _ => Err(format!("{what} and its peak must be given together")),
    }
}
