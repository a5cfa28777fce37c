//! This machine's reference peaks: the last `distill bench` report that measured a device
//! while the machine was quiet, kept per device in the cache directory, so that a run reads
//! its floor against the device's quiet peak rather than against a peak measured at the end of
//! the same run under the same load.
//!
//! `distill bench` keeps its report as `<cache>/bench/<device key>.json` for every device it
//! measured a peak of, when its load window shows no other work (or cannot tell, where the
//! system has no load average); a busy run leaves the kept report alone. `<cache>` is the
//! directory of the GEMM tile cache (`$DISTILL_CACHE_DIR`, else the user's cache directory +
//! `/distill`). The key names the device precisely enough that another machine sharing the
//! home directory does not read it: the CPU's model, logical CPUs, threads and SIMD level, or
//! the adapter's name, backend and driver.

use std::path::{Path, PathBuf};

use super::machine::{self, AdapterDetails, Machine};
use super::report::{Peak, Report, Status};
use crate::backend::gpu::autotune::cache_dir;
use crate::{Device, Result};

/// `<cache>/bench`, where the reference reports live; `None` without a cache directory.
pub fn default_dir() -> Option<PathBuf> {
    cache_dir().map(|d| d.join("bench"))
}

/// The file stem of a device of machine `m`: the CPU (`adapter` = `None`) or a GPU adapter.
pub fn device_key(m: &Machine, adapter: Option<&AdapterDetails>) -> String {
    let raw = match adapter {
        None => format!(
            "cpu {} {}cpus {}threads {}",
            m.cpu_model, m.logical_cpus, m.threads, m.simd_level
        ),
        Some(a) => format!(
            "gpu {} {} {} {}",
            a.name, a.backend, a.driver, a.driver_info
        ),
    };
    slug(&raw)
}

/// Lower-case letters and digits, every other run of characters one `-`; at most 120 long.
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(120).collect()
}

/// Keeps `report` in `dir` as the reference of every device it measured an f32 peak of, when
/// the machine was not busy. `Ok(files)` written, or `Err(why not)`.
pub fn keep_if_quiet(
    report: &Report,
    dir: &Path,
) -> Result<std::result::Result<Vec<PathBuf>, String>> {
    if let Some(load) = &report.load {
        if load.busy() == Some(true) {
            return Ok(Err(format!(
                "not kept as this machine's reference peak: {}",
                load.describe()
            )));
        }
    }
    let mut files = Vec::new();
    for d in &report.devices {
        if d.status != Status::Ok || d.peak_flops.is_none() {
            continue;
        }
        let key = device_key(&report.machine, d.adapter.as_ref());
        let path = dir.join(format!("{key}.json"));
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
        report.save(&path)?;
        files.push(path);
    }
    Ok(Ok(files))
}

/// A device's kept reference peak and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ReferencePeak {
    pub peak: Peak,
    /// The date of the bench report it comes from.
    pub date: String,
    pub file: PathBuf,
    /// The load line of that report (`None` in a report written before loads were kept).
    pub load: Option<String>,
}

impl ReferencePeak {
    /// `the quiet peak of distill bench on 2026-12-07 (FILE)`.
    pub fn describe(&self) -> String {
        format!(
            "this machine's quiet peak from `distill bench` on {} ({})",
            self.date,
            self.file.display()
        )
    }
}

/// The reference peak of `device` on this machine, if one is kept in `dir`.
pub fn reference_peak(dir: &Path, device: &Device) -> Option<ReferencePeak> {
    let m = machine::this_machine();
    let adapter = device.backend().as_gpu().map(machine::adapter_details);
    let key = device_key(&m, adapter.as_ref());
    let file = dir.join(format!("{key}.json"));
    let report = Report::load(&file).ok()?;
    let d = report.devices.iter().find(|d| {
        d.status == Status::Ok
            && match (&adapter, &d.adapter) {
                (None, None) => d.id == "cpu",
                (Some(a), Some(b)) => device_key(&m, Some(a)) == device_key(&m, Some(b)),
                _ => false,
            }
    })?;
    Some(ReferencePeak {
        peak: d.peak_flops.clone()?,
        date: report.date.clone(),
        file,
        load: report.load.as_ref().map(|l| l.describe()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_plain_file_names() {
        assert_eq!(
            slug("cpu AMD EPYC 7B13 (2) @ 2.5GHz"),
            "cpu-amd-epyc-7b13-2-2-5ghz"
        );
        assert_eq!(slug("--x--"), "x");
        assert_eq!(slug(&"a".repeat(300)).len(), 120);
        let m = machine::this_machine();
        let key = device_key(&m, None);
        assert!(
            key.starts_with("cpu-") && key.ends_with(&slug(&m.simd_level)),
            "{key}"
        );
    }
}
