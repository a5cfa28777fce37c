//! The report as a readable terminal table: a header naming the machine, then one block per
//! device that says which peaks its % are against, then its rows.

use std::fmt::Write;

use super::report::{DeviceReport, Report, Row, Status, Unit};

/// Three significant digits (at least one decimal), so tiny software-adapter figures show.
pub fn fmt_value(v: f64) -> String {
    let digits = if v.abs() >= 100.0 || v == 0.0 {
        1
    } else {
        (2.0 - v.abs().log10().floor()).clamp(1.0, 6.0) as usize
    };
    format!("{v:.digits$}")
}

/// `s` cut to `n` characters, ending in `…` when cut.
pub(crate) fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars()
            .take(n.saturating_sub(1))
            .chain(std::iter::once('…'))
            .collect()
    }
}

/// The whole report as text.
pub fn render_table(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "distill bench {} ({}), {}{}, {:.1} s",
        r.distill_version,
        r.git_commit,
        r.started_utc,
        if r.quick { ", --quick" } else { "" },
        r.seconds
    );
    let _ = writeln!(
        out,
        "machine: {} ({} {}), {} logical CPUs, {} threads",
        m.cpu_model, m.os, m.arch, m.logical_cpus, m.threads
    );
    let _ = writeln!(
        out,
        "  SIMD: kernels at {} (this CPU: {}); caches L1d {} KiB, L2 {} KiB, L3 {} KiB ({})",
        m.simd_level,
        m.simd_levels.join(", "),
        m.caches.l1d_bytes >> 10,
        m.caches.l2_bytes >> 10,
        m.caches.l3_bytes >> 10,
        m.caches.source
    );
    let _ = writeln!(out, "  GEMM blocking: {}", m.gemm_blocking);
    match &r.load {
        Some(l) => {
            let _ = writeln!(out, "  {}", l.describe());
        }
        None => {
            let _ = writeln!(out, "  load average: not recorded");
        }
    }
    for d in &r.devices {
        out.push('\n');
        device_block(&mut out, r, d);
    }
    out
}

fn peak_line(label: &str, p: &Option<super::report::Peak>, unit: &str) -> String {
    match p {
        Some(p) => format!(
            "{label} rows vs {} = {} {unit}",
            p.label,
            fmt_value(p.value)
        ),
        None => format!("{label} rows: no measured peak"),
    }
}

fn device_block(out: &mut String, r: &Report, d: &DeviceReport) {
    let _ = writeln!(out, "{}  {}  [{}]", d.id, d.name, d.kind);
    if let Some(a) = &d.adapter {
        let _ = writeln!(
            out,
            "  adapter: vendor {} device {}, {} driver {} {}",
            a.vendor, a.device_id, a.backend, a.driver, a.driver_info
        );
    }
    if let Some(note) = &d.note {
        let _ = writeln!(out, "  note: {note}");
    }
    if d.status != Status::Ok {
        return;
    }
    let rows: Vec<&Row> = r.rows.iter().filter(|x| x.device == d.id).collect();
    let has_pct = rows
        .iter()
        .any(|x| matches!(x.unit, Unit::Gflops | Unit::Gbps));
    if has_pct {
        let _ = writeln!(
            out,
            "  % of peak: {}; {}",
            peak_line("GFLOP/s", &d.peak_flops, "GFLOP/s"),
            peak_line("GB/s", &d.peak_bandwidth, "GB/s")
        );
        if !d.cache_bandwidths.is_empty() {
            let _ = writeln!(
                out,
                "    GB/s rows are read against the copy of the largest footprint no larger than \
                 their working set:"
            );
        }
        for p in &d.cache_bandwidths {
            let _ = writeln!(out, "    {} = {} GB/s", p.label, fmt_value(p.value));
        }
        if rows.iter().any(|x| x.pct_of_bandwidth.is_some()) {
            let _ = writeln!(
                out,
                "    GFLOP/s rows note the GB/s their buffers moved at and its % of the copy \
                 their working set picks (the memory roofline)"
            );
        }
    }
    let _ = writeln!(
        out,
        "  {:<20} {:<42} {:>10} {:<8} {:>7}  {:<14}  note",
        "kernel", "shape", "value", "unit", "% peak", "timing"
    );
    for row in rows {
        let _ = writeln!(out, "  {}", row_line(row));
    }
}

fn row_line(row: &Row) -> String {
    let value = row.value.map_or_else(|| "-".into(), fmt_value);
    let pct = row
        .pct_of_peak
        .map_or_else(|| "".into(), |p| format!("{p:.1}%"));
    // A GB/s row read against a cache level says which; a GFLOP/s row, its bytes' rate.
    let level = match (&row.peak, row.unit) {
        (Some(p), Unit::Gbps) if p.contains(" copy in ") => format!("vs {p}"),
        _ => match (row.gbps, row.pct_of_bandwidth, &row.bandwidth_peak) {
            (Some(g), Some(pct), Some(p)) => {
                format!("{} GB/s = {pct:.1}% of {p}", fmt_value(g))
            }
            _ => String::new(),
        },
    };
    format!(
        "{:<20} {:<42} {:>10} {:<8} {:>7}  {:<14}  {}",
        fit(&row.kernel, 20),
        fit(&row.shape, 42),
        value,
        row.unit.name(),
        pct,
        row.timing.name(),
        row.error.as_deref().unwrap_or(&level)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(fmt_value(1234.56), "1234.6");
        assert_eq!(fmt_value(12.345), "12.3");
        assert_eq!(fmt_value(0.012345), "0.0123");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
