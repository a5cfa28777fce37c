//! Reports side by side: `distill bench --compare a.json b.json …`.
//!
//! Each measured device of each report is a column (A, B, …, in the order given). Rows line
//! up by kernel, shape and unit; each cell is the value and its % of that device's own peak,
//! and each column after the first gets the ratio to the first (a speed ratio: > 1 is faster,
//! for latency rows too). The markdown table lists under it which peak each column's % is
//! against; the PNG chart draws the % of peak of every row that has one.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::report::{Peak, Report, Status, Unit};
use super::table::fmt_value;
use crate::plot::{bar_chart, BarGroup};
use crate::{Error, Result};

/// One measured device of one report.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    /// A, B, C, …
    pub letter: String,
    /// The report's file name.
    pub file: String,
    pub device: String,
    pub device_name: String,
    pub date: String,
    pub peak_flops: Option<Peak>,
    pub peak_bandwidth: Option<Peak>,
}

/// One figure of one column.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cell {
    pub value: f64,
    pub pct_of_peak: Option<f64>,
}

/// One kernel and shape across the columns.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub kernel: String,
    pub shape: String,
    pub unit: Unit,
    /// One per column; `None` where that device has no figure for it.
    pub cells: Vec<Option<Cell>>,
}

impl Line {
    /// Column `j`'s speed over column 0's (> 1 is faster), where both have a figure.
    pub fn ratio(&self, j: usize) -> Option<f64> {
        let (a, b) = (self.cells.first()?.as_ref()?, self.cells.get(j)?.as_ref()?);
        Some(if self.unit.higher_is_better() {
            b.value / a.value
        } else {
            a.value / b.value
        })
    }
}

/// Reports side by side.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub columns: Vec<Column>,
    pub lines: Vec<Line>,
}

fn letter(i: usize) -> String {
    if i < 26 {
        char::from(b'A' + i as u8).to_string()
    } else {
        format!("C{}", i + 1)
    }
}

/// Loads every file (a missing or invalid one is an error naming it) and compares them.
pub fn compare_files(paths: &[PathBuf]) -> Result<Comparison> {
    if paths.is_empty() {
        return Err(Error::InvalidArgument(
            "compare: give at least one bench report".into(),
        ));
    }
    let mut reports = Vec::new();
    for p in paths {
        let name = p
            .file_name()
            .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into());
        reports.push((name, Report::load(p)?));
    }
    compare(&reports)
}

/// Compares `(name, report)` pairs.
pub fn compare(reports: &[(String, Report)]) -> Result<Comparison> {
    let mut columns = Vec::new();
    for (file, r) in reports {
        for d in r.devices.iter().filter(|d| d.status == Status::Ok) {
            columns.push((
                Column {
                    letter: letter(columns.len()),
                    file: file.clone(),
                    device: d.id.clone(),
                    device_name: d.name.clone(),
                    date: r.date.clone(),
                    peak_flops: d.peak_flops.clone(),
                    peak_bandwidth: d.peak_bandwidth.clone(),
                },
                r,
            ));
        }
    }
    if columns.is_empty() {
        return Err(Error::InvalidArgument(
            "compare: the reports hold no measured device".into(),
        ));
    }
    let mut lines = peak_lines(&columns.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
    for (j, (col, r)) in columns.iter().enumerate() {
        // The peaks line up as the two lines above; their per-level rows would not.
        let rows = r.rows.iter().filter(|x| x.device == col.device);
        for row in rows.filter(|x| x.group != "peak" && x.group != "bandwidth") {
            let Some(value) = row.value else { continue };
            let i = match lines
                .iter()
                .position(|l| l.kernel == row.kernel && l.shape == row.shape && l.unit == row.unit)
            {
                Some(i) => i,
                None => {
                    lines.push(Line {
                        kernel: row.kernel.clone(),
                        shape: row.shape.clone(),
                        unit: row.unit,
                        cells: vec![None; columns.len()],
                    });
                    lines.len() - 1
                }
            };
            lines[i].cells[j] = Some(Cell {
                value,
                pct_of_peak: row.pct_of_peak,
            });
        }
    }
    Ok(Comparison {
        columns: columns.into_iter().map(|(c, _)| c).collect(),
        lines,
    })
}

/// The two reference peaks of every column, as the first lines.
fn peak_lines(columns: &[Column]) -> Vec<Line> {
    let line = |kernel: &str, unit, peak: &dyn Fn(&Column) -> Option<f64>| Line {
        kernel: kernel.into(),
        shape: "reference peak".into(),
        unit,
        cells: columns
            .iter()
            .map(|c| {
                peak(c).map(|value| Cell {
                    value,
                    pct_of_peak: None,
                })
            })
            .collect(),
    };
    vec![
        line("f32 FMA peak", Unit::Gflops, &|c| {
            c.peak_flops.as_ref().map(|p| p.value)
        }),
        line("memory bandwidth", Unit::Gbps, &|c| {
            c.peak_bandwidth.as_ref().map(|p| p.value)
        }),
    ]
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

impl Comparison {
    /// The markdown table, with the columns and their peaks listed under it.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let first = &self.columns[0].letter;
        out.push_str("| kernel | shape | unit |");
        for c in &self.columns {
            let _ = write!(out, " {}: {} |", c.letter, c.device);
        }
        for c in &self.columns[1..] {
            let _ = write!(out, " {} / {first} |", c.letter);
        }
        out.push_str("\n|---|---|---|");
        for _ in 0..2 * self.columns.len() - 1 {
            out.push_str("---:|");
        }
        out.push('\n');
        for l in &self.lines {
            let _ = write!(
                out,
                "| {} | {} | {} |",
                md_escape(&l.kernel),
                md_escape(&l.shape),
                l.unit.name()
            );
            for cell in &l.cells {
                let text = match cell {
                    None => "–".to_string(),
                    Some(c) => match c.pct_of_peak {
                        Some(p) => format!("{} ({p:.0}%)", fmt_value(c.value)),
                        None => fmt_value(c.value),
                    },
                };
                let _ = write!(out, " {text} |");
            }
            for j in 1..self.columns.len() {
                let text = l
                    .ratio(j)
                    .map_or("–".into(), |r| format!("{}×", fmt_value(r)));
                let _ = write!(out, " {text} |");
            }
            out.push('\n');
        }
        out.push_str(
            "\nValues with (% of that device's own measured peak: GFLOP/s rows against its \
             f32 peak, GB/s rows against the copy bandwidth of the cache level their working \
             set fits in, else of main memory). Ratios are speed ratios to column A (> 1 is faster; for ms rows, A's time over the column's).\n\n",
        );
        for c in &self.columns {
            let peak = |p: &Option<Peak>, unit: &str| {
                p.as_ref().map_or("none measured".into(), |p| {
                    format!("{} = {} {unit}", p.label, fmt_value(p.value))
                })
            };
            let _ = writeln!(
                out,
                "- **{}**: `{}` {} — {}, {}; peaks: {}; {}",
                c.letter,
                md_escape(&c.file),
                c.device,
                md_escape(&c.device_name),
                c.date,
                peak(&c.peak_flops, "GFLOP/s"),
                peak(&c.peak_bandwidth, "GB/s")
            );
        }
        out
    }

    /// A PNG bar chart of the % of peak of every row that has one in some column.
    pub fn chart(&self, path: &Path) -> Result<()> {
        let series: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{}: {} {} ({})", c.letter, c.device, c.device_name, c.file))
            .collect();
        let groups: Vec<BarGroup> = self
            .lines
            .iter()
            .filter(|l| l.cells.iter().flatten().any(|c| c.pct_of_peak.is_some()))
            .map(|l| BarGroup {
                label: format!("{} {}", l.kernel, l.shape),
                values: l
                    .cells
                    .iter()
                    .map(|c| c.and_then(|c| c.pct_of_peak))
                    .collect(),
            })
            .collect();
        bar_chart(
            path,
            "distill bench: % of each device's own measured peak",
            "% of peak (GFLOP/s rows: f32 FMA peak; GB/s rows: copy in their cache level)",
            &series,
            &groups,
            100.0,
        )
    }
}
