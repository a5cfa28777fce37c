//! The PyTorch yardstick: the same training and inference steps timed in PyTorch on the same
//! number of threads (`benches/pytorch_yardstick.py`), printed beside distill's figures from
//! the same run. An outside reference for the benchmark only: distill never depends on it.
//!
//! The script's contract: `python3 pytorch_yardstick.py --threads N --seconds S` prints one
//! JSON object on stdout, `{"torch_version": "…", "threads": N, "rows": [{"name": "teacher
//! train b128", "img_per_s": 675.0}, …]}`, with the row names of [`super::train`]; on failure
//! a message on stderr and a non-zero exit status.

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use super::report::{Row, Unit};
use super::table::fmt_value;
use crate::{Error, Result};

/// One figure of the script.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct YardstickRow {
    pub name: String,
    pub img_per_s: f64,
}

/// What the script printed.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct Yardstick {
    pub torch_version: String,
    pub threads: usize,
    pub rows: Vec<YardstickRow>,
}

/// The yardstick ran, or why it did not (no interpreter, no torch, no script).
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Ran(Yardstick),
    Skipped(String),
}

/// The interpreter: `$DISTILL_PYTHON`, else `python3`.
pub fn python() -> PathBuf {
    std::env::var_os("DISTILL_PYTHON")
        .filter(|s| !s.is_empty())
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from)
}

/// The script in this source tree.
pub fn default_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/pytorch_yardstick.py")
}

/// Parses the script's stdout: one JSON object with a torch version, the threads and at
/// least one row, each with a positive, finite img/s.
pub fn parse_output(text: &str) -> std::result::Result<Yardstick, String> {
    let y: Yardstick = serde_json::from_str(text.trim()).map_err(|e| {
        let head: String = text.trim().chars().take(120).collect();
        format!("expected one JSON object ({e}); it printed: {head:?}")
    })?;
    if y.rows.is_empty() {
        return Err("no rows".into());
    }
    for r in &y.rows {
        if !(r.img_per_s.is_finite() && r.img_per_s > 0.0) {
            return Err(format!("row `{}`: img_per_s is {}", r.name, r.img_per_s));
        }
    }
    Ok(y)
}

/// Runs `script` with `python` on `threads` threads, `seconds` per row. A missing
/// interpreter, a Python without torch or a missing script is [`Outcome::Skipped`]; a script
/// that fails or prints something other than its JSON object is an error.
pub fn run(python: &Path, script: &Path, threads: usize, seconds: f64) -> Result<Outcome> {
    if !script.is_file() {
        return Ok(Outcome::Skipped(format!(
            "no script at {}",
            script.display()
        )));
    }
    let probe = Command::new(python).args(["-c", "import torch"]).output();
    match probe {
        Err(e) => {
            return Ok(Outcome::Skipped(format!(
                "cannot run {} ({e}); set DISTILL_PYTHON to a Python with torch",
                python.display()
            )))
        }
        Ok(out) if !out.status.success() => {
            return Ok(Outcome::Skipped(format!(
                "`import torch` fails in {}; set DISTILL_PYTHON to a Python with torch",
                python.display()
            )))
        }
        Ok(_) => {}
    }
    let out = Command::new(python)
        .arg(script)
        .args(["--threads", &threads.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .output()
        .map_err(|e| Error::io(python, e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::Other(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            stderr.trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    parse_output(&text)
        .map(Outcome::Ran)
        .map_err(|e| Error::Other(format!("{}: malformed output: {e}", script.display())))
}

/// distill's img/s rows (of one device) beside PyTorch's, with the ratio distill / PyTorch.
pub fn side_by_side(distill: &[Row], y: &Yardstick) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>14} {:>14} {:>8}",
        "",
        "distill img/s",
        format!("torch {}", y.torch_version),
        "ratio"
    );
    for t in &y.rows {
        let mine = distill
            .iter()
            .find(|r| r.kernel == t.name && r.unit == Unit::ImagesPerSec)
            .and_then(|r| r.value);
        let _ = writeln!(
            out,
            "{:<22} {:>14} {:>14} {:>8}",
            t.name,
            mine.map_or("-".into(), fmt_value),
            fmt_value(t.img_per_s),
            mine.map_or("-".into(), |m| format!("{:.2}x", m / t.img_per_s)),
        );
    }
    let _ = write!(
        out,
        "(same run, {} threads; ratio = distill / PyTorch, > 1 is faster)",
        y.threads
    );
    out
}
