//! The bench's output: one [`Row`] per measured figure, printed as a table and written as
//! JSON, and the number formatting they share.

pub const GFLOPS: &str = "GFLOP/s";
pub const GBPS: &str = "GB/s";

/// One measured figure: a row of the printed table and of the JSON file.
pub struct Row {
    pub kernel: String,
    /// Short label: `cpu (avx2+fma)` for section 1, `cpu` / `gpu:N` for the `Backend` rows.
    pub device: String,
    /// The backend's full name (section 2), e.g. `NVIDIA H200 (Vulkan)`.
    pub device_name: String,
    pub shape: String,
    /// CPU threads; `None` on a GPU.
    pub threads: Option<usize>,
    pub value: Option<f64>,
    pub unit: &'static str,
    /// Relative to the peak of the same device (at the same thread count on the CPU).
    pub pct_of_peak: Option<f64>,
    /// This row's value over the CPU backend's value for the same kernel and shape (GPU rows).
    pub ratio_vs_cpu: Option<f64>,
    /// The same figure from GPU timestamps (`profile_report`), when the adapter has them.
    pub value_timestamp: Option<f64>,
    /// Calls in the batch the value comes from (section 2).
    pub calls: Option<usize>,
    pub note: String,
}

impl Row {
    pub fn new(kernel: &str, device: &str, shape: String, threads: Option<usize>) -> Row {
        Row {
            kernel: kernel.into(),
            device: device.into(),
            device_name: device.into(),
            shape,
            threads,
            value: None,
            unit: GFLOPS,
            pct_of_peak: None,
            ratio_vs_cpu: None,
            value_timestamp: None,
            calls: None,
            note: String::new(),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "kernel": self.kernel,
            "device": self.device,
            "device_name": self.device_name,
            "shape": self.shape,
            "threads": self.threads,
            "value": self.value,
            "unit": self.unit,
            "gflops": if self.unit == GFLOPS { self.value } else { None },
            "pct_of_peak": self.pct_of_peak,
            "ratio_vs_cpu": self.ratio_vs_cpu,
            "value_timestamp": self.value_timestamp,
            "calls": self.calls,
            "note": self.note,
        })
    }
}

pub fn pct(g: Option<f64>, peak: Option<f64>) -> Option<f64> {
    Some(100.0 * g? / peak?)
}

/// Three significant digits (at least one decimal), so tiny software-adapter figures show.
pub fn fmt_sig(v: Option<f64>, suffix: &str) -> String {
    v.map_or_else(
        || "n/a".to_string(),
        |x| {
            let digits = if x.abs() >= 100.0 || x == 0.0 {
                1
            } else {
                (2.0 - x.abs().log10().floor()).clamp(1.0, 6.0) as usize
            };
            format!("{x:.digits$}{suffix}")
        },
    )
}

pub fn fmt_opt(v: Option<f64>, prec: usize, suffix: &str) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.prec$}{suffix}"))
}

/// Prints the table of every row.
pub fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<19} {:<14} {:<38} {:>4} {:>10} {:<7} {:>7} {:>8} {:>10}  note",
        "kernel", "device", "shape", "thr", "value", "unit", "% peak", "x cpu", "ts value"
    );
    for r in rows {
        println!(
            "{:<19} {:<14} {:<38} {:>4} {:>10} {:<7} {:>7} {:>8} {:>10}  {}",
            r.kernel,
            r.device,
            r.shape,
            r.threads.map_or_else(|| "-".into(), |t| t.to_string()),
            fmt_sig(r.value, ""),
            r.unit,
            fmt_opt(r.pct_of_peak, 1, "%"),
            fmt_sig(r.ratio_vs_cpu, "x"),
            fmt_sig(r.value_timestamp, ""),
            r.note,
        );
    }
}

/// Writes `json` to `$CARGO_TARGET_DIR/bench-kernels.json` (or `target/bench-kernels.json`).
pub fn write_json(json: &serde_json::Value) {
    let dir = std::env::var_os("CARGO_TARGET_DIR").unwrap_or_else(|| "target".into());
    let path = std::path::Path::new(&dir).join("bench-kernels.json");
    let text = serde_json::to_string_pretty(json).expect("serialise bench rows");
    match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("\ncould not write {}: {e}", path.display()),
    }
}
