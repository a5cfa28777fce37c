//! Records: a headline figure with everything needed to trust it, as a small JSON file that
//! is committed beside the docs that quote it (`docs/results/<name>.json`, described in
//! docs/results/README.md).
//!
//! A [`Record`] holds the figures of one measurement (value and unit each), the machine as far
//! as it can be known (CPU model, family and model numbers, flags, core count, cache sizes,
//! SIMD level; or the GPU adapter and driver; or the browser), the date, the git commit, the
//! exact command, and the load average around the measurement. `distill run`, `distill study`
//! and `distill bench` write one with `--record FILE` ([`Record::measured`] and the
//! `figures` of each report). Figures measured before records existed get records
//! reconstructed from the docs: their `note` says so, `reconstructed_from` names the commit
//! that first wrote them down, and what is not known (the load, the commit measured) is
//! `null`, never guessed.
//!
//! `tests/doc_figures.rs` reads the README's results table and every figure a doc marks as
//! quoted and checks each against its record, and that each record's command still parses.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::LoadWindow;
use super::machine::{self, AdapterDetails, Caches, Machine};
use crate::fs::write_atomic;
use crate::{Error, Result};

/// The version of the record format this build writes and reads.
pub const RECORD_VERSION: u32 = 1;

/// One measurement's figures and where they came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub record_version: u32,
    /// What was measured, in one line.
    pub what: String,
    pub figures: Vec<Figure>,
    pub machine: MachineRecord,
    /// UTC date of the measurement, `YYYY-MM-DD`.
    pub date: String,
    /// The short commit of the code that was measured; `null` when it is not known.
    pub git_commit: Option<String>,
    /// The exact command that produced the figures, as typed (`distill …`, `cargo run
    /// --release -- …`, `cargo bench --bench …`, with any `NAME=value` environment first).
    pub command: String,
    pub load: LoadRecord,
    /// How the figures were obtained and what to keep in mind reading them. Required when
    /// the record was reconstructed or the commit is unknown.
    pub note: Option<String>,
    /// A record written after the fact from the docs: the commit that first wrote the
    /// figures down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconstructed_from: Option<String>,
}

/// One figure: a name unique within its record, a value and its unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    /// `%`, `points` (a difference of percentages), `×`, `s`, `ms`, `img/s`, `GFLOP/s`,
    /// `GB/s`, `TFLOP`, `MiB`, `parameters`, `t` (a t-statistic), …
    pub unit: String,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: f64, unit: &str) -> Figure {
        Figure {
            name: name.into(),
            value,
            unit: unit.into(),
        }
    }
}

/// The machine a measurement ran on, as far as it is known (every field but the summary may
/// be unknown for a reconstructed record).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineRecord {
    /// One line a reader recognises, e.g. `AMD EPYC (Zen 3, family 25), 2 cores under KVM`.
    pub summary: String,
    /// The CPU's model name (`/proc/cpuinfo`, else CPUID).
    pub cpu_model: Option<String>,
    pub cpu_family: Option<u32>,
    pub cpu_model_number: Option<u32>,
    /// The CPU's feature flags as the OS lists them; empty when unknown.
    #[serde(default)]
    pub cpu_flags: Vec<String>,
    pub logical_cpus: Option<usize>,
    /// Threads of the CPU backend.
    pub threads: Option<usize>,
    /// The SIMD level the CPU kernels ran at.
    pub simd_level: Option<String>,
    pub caches: Option<Caches>,
    pub os: Option<String>,
    pub arch: Option<String>,
    /// The device that computed (`cpu (avx2+fma, 2 threads)`, a GPU adapter's name).
    pub device: Option<String>,
    /// A GPU adapter: name, driver, backend.
    pub gpu: Option<GpuRecord>,
    /// A browser, for figures measured in one (WebGPU).
    pub browser: Option<String>,
}

/// A GPU adapter as a record names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuRecord {
    pub name: String,
    pub driver: String,
    pub driver_info: String,
    pub backend: String,
}

impl MachineRecord {
    /// This machine, from the bench's description of it, the device that computed and, on
    /// a GPU, its adapter.
    pub fn of(m: &Machine, device: &str, adapter: Option<&AdapterDetails>) -> MachineRecord {
        let summary = format!(
            "{}{}, {} logical CPUs, {}",
            m.cpu_model,
            match (m.cpu_family, m.cpu_model_number) {
                (Some(f), Some(n)) => format!(" (family {f}, model {n})"),
                _ => String::new(),
            },
            m.logical_cpus,
            adapter.map_or_else(
                || format!("kernels at {}", m.simd_level),
                |a| format!("GPU {} ({}, driver {})", a.name, a.backend, a.driver)
            )
        );
        MachineRecord {
            summary,
            cpu_model: Some(m.cpu_model.clone()),
            cpu_family: m.cpu_family,
            cpu_model_number: m.cpu_model_number,
            cpu_flags: m.cpu_flags.clone(),
            logical_cpus: Some(m.logical_cpus),
            threads: Some(m.threads),
            simd_level: Some(m.simd_level.clone()),
            caches: Some(m.caches.clone()),
            os: Some(m.os.clone()),
            arch: Some(m.arch.clone()),
            device: Some(device.to_string()),
            gpu: adapter.map(|a| GpuRecord {
                name: a.name.clone(),
                driver: a.driver.clone(),
                driver_info: a.driver_info.clone(),
                backend: a.backend.clone(),
            }),
            browser: None,
        }
    }

    /// The machine running this process, computing on `device`.
    pub fn this_machine(device: &str, adapter: Option<&AdapterDetails>) -> MachineRecord {
        MachineRecord::of(&machine::this_machine(), device, adapter)
    }
}

/// Whether other work shared the machine during a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conditions {
    /// Other work took at most half the logical CPUs.
    Quiet,
    /// Other work took more: absolute figures are low, ratios measured together still hold.
    Busy,
    /// Not recorded.
    Unknown,
}

impl Conditions {
    /// What a doc must say beside a figure of a record with these conditions.
    pub fn words(self) -> &'static str {
        match self {
            Conditions::Quiet => "quiet",
            Conditions::Busy => "under load",
            Conditions::Unknown => "load unknown",
        }
    }

    /// The conditions a measured load window shows.
    pub fn of(window: &LoadWindow) -> Conditions {
        match window.busy() {
            Some(true) => Conditions::Busy,
            Some(false) => Conditions::Quiet,
            None => Conditions::Unknown,
        }
    }
}

/// The load around a measurement: measured, or as the docs described it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRecord {
    pub conditions: Conditions,
    /// The load average before and after, where it was measured.
    pub window: Option<LoadWindow>,
    /// For a reconstructed record: what the docs said about the load, and where.
    pub documented: Option<String>,
}

impl LoadRecord {
    pub fn measured(window: LoadWindow) -> LoadRecord {
        LoadRecord {
            conditions: Conditions::of(&window),
            window: Some(window),
            documented: None,
        }
    }
}

impl Record {
    /// A record of figures measured now by this process, with `command` and the load
    /// `window` around the measurement.
    pub fn measured(
        what: &str,
        figures: Vec<Figure>,
        machine: MachineRecord,
        command: String,
        window: LoadWindow,
    ) -> Record {
        let commit = machine::git_commit();
        let (date, _) = machine::utc_now();
        Record {
            record_version: RECORD_VERSION,
            what: what.into(),
            figures,
            machine,
            date,
            git_commit: (commit != "unknown").then(|| commit.to_string()),
            command,
            load: LoadRecord::measured(window),
            note: (commit == "unknown")
                .then(|| "built without git: the commit measured is not known".to_string()),
            reconstructed_from: None,
        }
    }

    /// A record of `figures` that this command (`distill run`, `distill study`) measured on
    /// `device`, with the load window the job kept (else one from now).
    pub fn measured_on(
        what: &str,
        figures: Vec<Figure>,
        device: &crate::Device,
        load: Option<LoadWindow>,
    ) -> Record {
        let adapter = device.backend().as_gpu().map(machine::adapter_details);
        Record::measured(
            what,
            figures,
            MachineRecord::this_machine(&device.name(), adapter.as_ref()),
            command_line(),
            load.unwrap_or_else(LoadWindow::start_here),
        )
    }

    /// The figure named `name`.
    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }

    /// Checks what the types cannot; the message names the first problem.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.record_version != RECORD_VERSION {
            return Err(format!(
                "record_version {} (this distill reads {RECORD_VERSION})",
                self.record_version
            ));
        }
        super::report::check_date(&self.date)?;
        if self.what.trim().is_empty() || self.command.trim().is_empty() {
            return Err("`what` and `command` must say something".into());
        }
        if self.machine.summary.trim().is_empty() {
            return Err("machine.summary is empty".into());
        }
        if self.figures.is_empty() {
            return Err("no figures".into());
        }
        let mut names = HashSet::new();
        for f in &self.figures {
            if !names.insert(f.name.as_str()) {
                return Err(format!("figure `{}` is listed twice", f.name));
            }
            if !f.value.is_finite() {
                return Err(format!("figure `{}` is {}", f.name, f.value));
            }
            if f.name.trim().is_empty() || f.unit.trim().is_empty() {
                return Err(format!("figure `{}` needs a name and a unit", f.name));
            }
        }
        let note = self.note.as_deref().is_some_and(|n| !n.trim().is_empty());
        if self.reconstructed_from.is_some() && !note {
            return Err("a reconstructed record needs a note saying so".into());
        }
        if self.git_commit.is_none() && !note {
            return Err("git_commit is unknown and no note says why".into());
        }
        match (&self.load.window, self.load.conditions) {
            (Some(w), c) if Conditions::of(w) != c => Err(format!(
                "load.conditions is {c:?} but the window measured says {:?}",
                Conditions::of(w)
            )),
            (None, Conditions::Quiet | Conditions::Busy) if self.load.documented.is_none() => {
                Err("load.conditions without a measured window or a documented source".into())
            }
            _ => Ok(()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a record always serialises")
    }

    /// Parses and validates a record.
    pub fn from_json(text: &str) -> std::result::Result<Record, String> {
        let r: Record = serde_json::from_str(text).map_err(|e| format!("not a record: {e}"))?;
        r.validate()?;
        Ok(r)
    }

    /// Writes the record atomically (after checking it).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate()
            .map_err(|e| Error::Other(format!("an invalid record: {e}")))?;
        let mut text = self.to_json();
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Reads a record file; errors name the file.
    pub fn load(path: &Path) -> Result<Record> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Record::from_json(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }
}

/// The command line of this process as a user would type it: `distill` and its arguments,
/// each quoted for a POSIX shell where it needs it.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    command_from(&args)
}

/// `distill` followed by `args`, shell-quoted where needed.
pub fn command_from(args: &[String]) -> String {
    std::iter::once("distill".to_string())
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The bench report's figures: each device's peaks, then every row with a value (and its %
/// of peak where it has one, and for GFLOP/s rows the GB/s of their bytes and its % of the
/// memory roofline), named `<device> <kernel> <shape>`.
pub fn bench_figures(r: &super::report::Report) -> Vec<Figure> {
    let mut out = Vec::new();
    for d in &r.devices {
        if let Some(p) = &d.peak_flops {
            out.push(Figure::new(
                format!("{} f32 peak", d.id),
                p.value,
                "GFLOP/s",
            ));
        }
        if let Some(p) = &d.peak_bandwidth {
            out.push(Figure::new(
                format!("{} memory bandwidth", d.id),
                p.value,
                "GB/s",
            ));
        }
    }
    let mut seen = HashSet::new();
    for row in &r.rows {
        let Some(v) = row.value else { continue };
        let name = format!("{} {} {}", row.device, row.kernel, row.shape);
        if !seen.insert(name.clone()) {
            continue;
        }
        out.push(Figure::new(name.clone(), v, row.unit.name()));
        if let Some(p) = row.pct_of_peak {
            out.push(Figure::new(format!("{name} % of peak"), p, "%"));
        }
        if let Some(g) = row.gbps {
            out.push(Figure::new(format!("{name} memory"), g, "GB/s"));
        }
        if let Some(p) = row.pct_of_bandwidth {
            out.push(Figure::new(format!("{name} % of memory roofline"), p, "%"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::load::LoadAverage;

    fn window(before: f64, after: f64) -> LoadWindow {
        let avg = |one| LoadAverage {
            one,
            five: one,
            fifteen: one,
        };
        LoadWindow {
            before: Some(avg(before)),
            after: Some(avg(after)),
            logical_cpus: 2,
            threads: 2,
        }
    }

    fn record() -> Record {
        Record::measured(
            "a test",
            vec![Figure::new("accuracy", 92.38, "%")],
            MachineRecord::this_machine("cpu", None),
            command_from(&["run".into(), "--quick".into()]),
            window(0.2, 2.5),
        )
    }

    #[test]
    fn a_measured_record_round_trips() {
        let r = record();
        assert_eq!(r.validate(), Ok(()));
        assert_eq!(r.command, "distill run --quick");
        assert_eq!(r.load.conditions, Conditions::Quiet);
        assert_eq!(Record::from_json(&r.to_json()).unwrap(), r);
        assert_eq!(r.figure("accuracy").map(|f| f.value), Some(92.38));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        r.save(&path).unwrap();
        assert_eq!(Record::load(&path).unwrap(), r);
    }

    #[test]
    fn a_busy_window_makes_a_busy_record() {
        let mut r = record();
        r.load = LoadRecord::measured(window(12.0, 13.0));
        assert_eq!(r.load.conditions, Conditions::Busy);
        assert_eq!(r.load.conditions.words(), "under load");
    }

    /// A change to a valid record, and what the refusal must say.
    type Case = (Box<dyn Fn(&mut Record)>, &'static str);

    #[test]
    fn bad_records_are_refused() {
        let cases: Vec<Case> = vec![
            (Box::new(|r| r.record_version = 7), "record_version 7"),
            (Box::new(|r| r.date = "Dec 1".into()), "not YYYY-MM-DD"),
            (Box::new(|r| r.figures.clear()), "no figures"),
            (
                Box::new(|r| r.figures.push(r.figures[0].clone())),
                "listed twice",
            ),
            (Box::new(|r| r.figures[0].value = f64::NAN), "is NaN"),
            (
                Box::new(|r| r.load.conditions = Conditions::Busy),
                "window measured says Quiet",
            ),
            (
                Box::new(|r| {
                    r.load.window = None;
                    r.load.conditions = Conditions::Quiet;
                }),
                "documented source",
            ),
            (
                Box::new(|r| {
                    r.git_commit = None;
                    r.note = None;
                }),
                "no note says why",
            ),
            (
                Box::new(|r| {
                    r.reconstructed_from = Some("abc1234".into());
                    r.note = None;
                }),
                "needs a note",
            ),
        ];
        for (change, want) in cases {
            let mut r = record();
            r.note = Some("n".into());
            change(&mut r);
            let e = r.validate().unwrap_err();
            assert!(e.contains(want), "want `{want}` in: {e}");
        }
        let e = Record::from_json("{\"record_version\": 1}").unwrap_err();
        assert!(e.contains("missing field"), "{e}");
    }

    #[test]
    fn command_lines_are_quoted_for_the_shell() {
        let args = ["study", "--out", "my runs/a", "--methods", "ce,kd", "it's"];
        let line = command_from(&args.map(String::from));
        assert_eq!(
            line,
            r"distill study --out 'my runs/a' --methods ce,kd 'it'\''s'"
        );
    }
}
