//! What identifies the machine a report comes from: the CPU (model, cores, SIMD levels, cache
//! sizes and the GEMM blocking derived from them), each GPU adapter (name, vendor and device
//! ids, driver, backend, the limits and features the engine uses), distill's version and
//! commit, and the UTC date.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::backend::gpu::GpuBackend;
pub use crate::calendar::{utc_now, utc_stamp};
use distill_kernels::simd;

/// The host CPU as the CPU backend sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub cpu_model: String,
    /// The CPU's family and model numbers (x86 `/proc/cpuinfo`: `cpu family`, `model`);
    /// absent elsewhere and in reports written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_family: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model_number: Option<u32>,
    /// The CPU's feature flags as the OS lists them (`flags` on x86, `Features` on ARM),
    /// sorted; empty where unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cpu_flags: Vec<String>,
    /// Logical CPUs the OS gives this process.
    pub logical_cpus: usize,
    /// Threads of the CPU backend (rayon).
    pub threads: usize,
    /// The SIMD level the CPU kernels run at (`DISTILL_CPU` may lower it).
    pub simd_level: String,
    /// Every level this CPU can run, narrowest first.
    pub simd_levels: Vec<String>,
    pub caches: Caches,
    /// The GEMM's register tile and cache blocking at `simd_level`.
    pub gemm_blocking: String,
    /// `linux`, `macos`, `windows`, …
    pub os: String,
    /// `x86_64`, `aarch64`, `wasm32`, …
    pub arch: String,
    /// In a browser: its user agent (the page cannot see the CPU's model or caches).
    /// Absent in native reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser: Option<String>,
}

/// Cache sizes in bytes (per core for L1d and L2) and where they were read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caches {
    pub l1d_bytes: usize,
    pub l2_bytes: usize,
    pub l3_bytes: usize,
    /// `sysfs`, `cpuid` or `default`.
    pub source: String,
}

/// A GPU adapter as the bench opened it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterDetails {
    pub name: String,
    /// PCI vendor id, hex (`0x10de` NVIDIA, `0x1002` AMD, `0x8086` Intel, `0x10005` Mesa).
    pub vendor: String,
    /// PCI device id, hex.
    pub device_id: String,
    pub driver: String,
    pub driver_info: String,
    /// `Vulkan`, `Metal` or `Dx12`.
    pub backend: String,
    pub device_type: String,
    /// The device limits the kernels depend on, as the device was opened.
    pub limits_used: BTreeMap<String, u64>,
    /// The optional features the device was opened with (timestamp queries, …).
    pub features_used: Vec<String>,
    /// The GEMM tile shapes matmul and conv2d were built with, and where they came from
    /// (autotuned, cached, defaults). Absent in reports written before autotune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm_tiles: Option<String>,
}

/// The machine running this process.
pub fn this_machine() -> Machine {
    let level = simd::level();
    let c = simd::cache_sizes();
    let info = CpuInfo::read();
    Machine {
        cpu_model: cpu_model(),
        cpu_family: info.family,
        cpu_model_number: info.model,
        cpu_flags: info.flags,
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads: rayon::current_num_threads(),
        simd_level: level.name().into(),
        simd_levels: simd::available().iter().map(|l| l.name().into()).collect(),
        caches: Caches {
            l1d_bytes: c.l1d,
            l2_bytes: c.l2,
            l3_bytes: c.l3,
            source: c.source.into(),
        },
        gemm_blocking: distill_kernels::gemm::blocking(level).to_string(),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        browser: None,
    }
}

/// A page's machine: what a browser lets it know (its user agent and
/// `navigator.hardwareConcurrency`); the CPU kernels run on one thread at the SIMD128 level,
/// and the model, family, flags and caches of the CPU are not the page's to see.
pub fn browser_machine(user_agent: &str, logical_cpus: usize) -> Machine {
    Machine {
        cpu_model: "unknown (a browser does not say)".into(),
        cpu_family: None,
        cpu_model_number: None,
        cpu_flags: Vec::new(),
        logical_cpus: logical_cpus.max(1),
        threads: 1,
        os: "web".into(),
        browser: Some(user_agent.into()),
        ..this_machine()
    }
}

/// What `/proc/cpuinfo` says about the first CPU beyond its name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuInfo {
    pub family: Option<u32>,
    pub model: Option<u32>,
    pub flags: Vec<String>,
}

impl CpuInfo {
    /// This machine's (empty where `/proc/cpuinfo` does not exist).
    pub fn read() -> CpuInfo {
        std::fs::read_to_string("/proc/cpuinfo")
            .map(|t| CpuInfo::parse(&t))
            .unwrap_or_default()
    }

    /// The first processor's `cpu family`, `model` and `flags` (or `Features`).
    pub fn parse(text: &str) -> CpuInfo {
        let mut info = CpuInfo::default();
        // The first processor's block ends at the first blank line.
        for line in text.lines().take_while(|l| !l.trim().is_empty()) {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "cpu family" => info.family = value.parse().ok(),
                "model" => info.model = value.parse().ok(),
                "flags" | "Features" => {
                    info.flags = value.split_whitespace().map(String::from).collect();
                    info.flags.sort();
                }
                _ => {}
            }
        }
        info
    }
}

/// The CPU's model name: /proc/cpuinfo, else the CPUID brand string, else "unknown".
fn cpu_model() -> String {
    let from_proc = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("Model"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        });
    from_proc
        .or_else(cpuid_brand)
        .unwrap_or_else(|| "unknown".into())
}

/// CPUID leaves 0x80000002..4: the 48-byte brand string.
#[cfg(target_arch = "x86_64")]
fn cpuid_brand() -> Option<String> {
    use std::arch::x86_64::__cpuid;
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU; the brand leaves only when reported.
    let max = unsafe { __cpuid(0x8000_0000) }.eax;
    if max < 0x8000_0004 {
        return None;
    }
    let mut bytes = Vec::with_capacity(48);
    for leaf in 0x8000_0002u32..=0x8000_0004 {
        #[allow(unused_unsafe)]
        // SAFETY: as above; the leaf is within the reported range.
        let r = unsafe { __cpuid(leaf) };
        for w in [r.eax, r.ebx, r.ecx, r.edx] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
    }
    let s = String::from_utf8_lossy(&bytes)
        .trim_matches(char::from(0))
        .trim()
        .to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_brand() -> Option<String> {
    None
}

/// What the bench reports about an open adapter.
pub fn adapter_details(g: &GpuBackend) -> AdapterDetails {
    let info = g.adapter_info();
    let l = g.limits();
    let limits_used = [
        ("max_buffer_size", l.max_buffer_size),
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x.into(),
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup.into(),
        ),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size.into(),
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension.into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let features_used = g
        .features()
        .iter_names()
        .map(|(name, _)| name.to_string())
        .collect();
    AdapterDetails {
        name: info.name,
        vendor: format!("{:#06x}", info.vendor),
        device_id: format!("{:#06x}", info.device),
        driver: info.driver,
        driver_info: info.driver_info,
        backend: format!("{:?}", info.backend),
        device_type: crate::backend::gpu::context::type_name(info.device_type).into(),
        limits_used,
        features_used,
        gemm_tiles: Some(g.tiles().to_string()),
    }
}

/// distill's version (Cargo.toml).
pub fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The short git commit the binary was built from (build.rs), or `unknown`.
pub fn git_commit() -> &'static str {
    option_env!("DISTILL_GIT_COMMIT").unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_gives_family_model_and_flags() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\n\
                    model name\t: AMD EPYC\nflags\t\t: sse2 fma avx2\n\nprocessor\t: 1\nmodel\t\t: 9\n";
        let info = CpuInfo::parse(text);
        assert_eq!(info.family, Some(25));
        assert_eq!(info.model, Some(1));
        assert_eq!(info.flags, ["avx2", "fma", "sse2"]);
        assert_eq!(CpuInfo::parse(""), CpuInfo::default());
    }

    #[test]
    fn the_machine_names_itself() {
        let m = this_machine();
        assert!(!m.cpu_model.is_empty());
        assert!(m.logical_cpus >= 1 && m.threads >= 1);
        assert!(m.simd_levels.contains(&"scalar".to_string()));
        assert!(m.simd_levels.contains(&m.simd_level));
        assert!(m.caches.l1d_bytes > 0 && m.caches.l2_bytes > 0);
    }
}
