//! Run-time choice of the SIMD path: AVX-512F, else AVX2+FMA on x86-64, NEON on aarch64,
//! scalar otherwise; and the cache sizes the GEMM derives its blocking from.
//!
//! Detected once per process: the widest level the CPU runs ([`default_level`]).
//! `DISTILL_CPU=avx512|avx2|scalar` (or `neon`, `auto`) asks for a level: [`requested_level`] says whether the CPU can run it, for callers to check at
//! start-up; [`level`] is what kernels use and never fails. Kernels also have `*_at(level, …)`
//! entry points so tests can run every path in one process, and a device can carry its own
//! level. A kernel without an AVX-512 path of its own (the losses, rows shorter than 16) runs
//! its AVX2 or portable path at [`SimdLevel::Avx512`] ([`SimdLevel::at_least_avx2`]).

use std::fmt;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    Scalar,
    /// x86-64 with AVX2 and FMA.
    Avx2Fma,
    /// x86-64 with AVX-512F (and AVX2+FMA, which every AVX-512 CPU has).
    Avx512,
    /// aarch64 Advanced SIMD (always present there).
    Neon,
    /// WebAssembly's 128-bit SIMD (a compile-time feature: WebAssembly cannot detect it at
    /// run time; the browser build enables it).
    Simd128,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Avx512 => "avx512",
            SimdLevel::Neon => "neon",
            SimdLevel::Simd128 => "simd128",
        }
    }

    /// The level a `DISTILL_CPU` value names (`avx2` and `avx2+fma` are the same level).
    pub fn from_name(name: &str) -> Option<SimdLevel> {
        match name.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(SimdLevel::Scalar),
            "avx2" | "avx2+fma" => Some(SimdLevel::Avx2Fma),
            "avx512" | "avx512f" | "avx-512" => Some(SimdLevel::Avx512),
            "neon" => Some(SimdLevel::Neon),
            "simd128" => Some(SimdLevel::Simd128),
            _ => None,
        }
    }

    /// Whether the AVX2+FMA paths may run: true at `Avx2Fma` and at `Avx512`.
    pub fn at_least_avx2(self) -> bool {
        matches!(self, SimdLevel::Avx2Fma | SimdLevel::Avx512)
    }

    /// Whether this CPU can run the level.
    pub fn is_supported(self) -> bool {
        match self {
            SimdLevel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2Fma => {
                is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => {
                SimdLevel::Avx2Fma.is_supported() && is_x86_feature_detected!("avx512f")
            }
            #[cfg(target_arch = "aarch64")]
            SimdLevel::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            SimdLevel::Simd128 => cfg!(all(target_arch = "wasm32", target_feature = "simd128")),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}

impl fmt::Display for SimdLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The best level this CPU supports, ignoring `DISTILL_CPU`.
pub fn detect() -> SimdLevel {
    [
        SimdLevel::Avx512,
        SimdLevel::Avx2Fma,
        SimdLevel::Neon,
        SimdLevel::Simd128,
    ]
    .into_iter()
    .find(|l| l.is_supported())
    .unwrap_or(SimdLevel::Scalar)
}

/// The level used when none is asked for: the widest the CPU runs ([`detect`]). Every kernel
/// with an AVX2 path has an AVX-512 one, tested at that level on AVX-512 hardware;
/// `DISTILL_CPU=avx2` still asks for the narrower path.
pub fn default_level() -> SimdLevel {
    detect()
}

/// Resolves a `DISTILL_CPU` value: `auto` or empty is [`default_level`]; a known level the CPU can
/// run is that level; anything else is an error that says what the CPU offers.
pub fn parse_request(value: &str) -> Result<SimdLevel, String> {
    let offered = || {
        available()
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if value.trim().is_empty() || value.trim().eq_ignore_ascii_case("auto") {
        return Ok(default_level());
    }
    match SimdLevel::from_name(value) {
        None => Err(format!(
            "DISTILL_CPU={value:?}: unknown SIMD level (expected auto, scalar, avx2, avx512 \
             or neon; this CPU runs: {})",
            offered()
        )),
        Some(l) if !l.is_supported() => Err(format!(
            "DISTILL_CPU={value:?}: this CPU cannot run the {} level (it runs: {})",
            l.name(),
            offered()
        )),
        Some(l) => Ok(l),
    }
}

/// The level `DISTILL_CPU` asks for ([`default_level`] when unset), or why it cannot be used.
/// Binaries check this at start-up; kernels call the infallible [`level`].
pub fn requested_level() -> Result<SimdLevel, String> {
    match std::env::var("DISTILL_CPU") {
        Ok(v) => parse_request(&v),
        Err(std::env::VarError::NotPresent) => Ok(default_level()),
        Err(std::env::VarError::NotUnicode(v)) => {
            Err(format!("DISTILL_CPU={v:?}: not a SIMD level name"))
        }
    }
}

/// The level kernels use: [`requested_level`]. A request this CPU cannot run (which a caller
/// that checked [`requested_level`] has already refused) is reported once on stderr and
/// replaced by [`default_level`], so no kernel ever runs instructions the CPU lacks.
pub fn level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        requested_level().unwrap_or_else(|e| {
            let best = default_level();
            eprintln!("distill: {e}; using {}", best.name());
            best
        })
    })
}

/// Every level this CPU can run, from scalar up (scalar, avx2+fma, avx512 on an AVX-512
/// CPU), for tests and benches.
pub fn available() -> Vec<SimdLevel> {
    [
        SimdLevel::Scalar,
        SimdLevel::Avx2Fma,
        SimdLevel::Avx512,
        SimdLevel::Neon,
        SimdLevel::Simd128,
    ]
    .into_iter()
    .filter(|l| l.is_supported())
    .collect()
}

/// AVX2 lane masks for the ragged ends of rows (`_mm256_maskload_ps` / `maskstore` masks),
/// shared by the conv and pool kernels. Callers are AVX2 functions (these inline into them).
#[cfg(target_arch = "x86_64")]
pub(crate) mod mask {
    use std::arch::x86_64::*;

    /// Lanes `l` of eight with `lo ≤ l < hi` (signed bounds; any values are fine).
    #[inline(always)]
    pub(crate) unsafe fn window(lo: isize, hi: isize) -> __m256i {
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let lo = _mm256_set1_epi32(lo.clamp(-1, 8) as i32);
        let hi = _mm256_set1_epi32(hi.clamp(0, 8) as i32);
        _mm256_andnot_si256(_mm256_cmpgt_epi32(lo, lane), _mm256_cmpgt_epi32(hi, lane))
    }

    /// The first `n` lanes of eight (all of them from `n = 8` on).
    #[inline(always)]
    pub(crate) unsafe fn first(n: usize) -> __m256i {
        window(0, n.min(8) as isize)
    }
}

/// Per-core L1 data and L2 cache sizes and the L3 size, in bytes, as the GEMM blocking sees
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheSizes {
    pub l1d: usize,
    pub l2: usize,
    pub l3: usize,
    /// Where the figures came from: `"sysfs"`, `"cpuid"`, or `"default"` when neither could
    /// be read.
    pub source: &'static str,
}

impl CacheSizes {
    /// Used where the sizes cannot be read: with them the AVX2 blocking comes out at the
    /// long-measured KC = 256, MC = 192, NC = 3072.
    pub const FALLBACK: CacheSizes = CacheSizes {
        l1d: 32 << 10,
        l2: 512 << 10,
        l3: 32 << 20,
        source: "default",
    };
}

impl fmt::Display for CacheSizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = |b: usize| {
            if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
                format!("{} MiB", b >> 20)
            } else {
                format!("{} KiB", b >> 10)
            }
        };
        write!(
            f,
            "L1d {}, L2 {}, L3 {} ({})",
            kib(self.l1d),
            kib(self.l2),
            kib(self.l3),
            self.source
        )
    }
}

/// The cache sizes of CPU 0, read once from Linux sysfs (`/sys/devices/system/cpu/cpu0/cache`),
/// else from CPUID (leaf 0x8000001D on AMD, 4 elsewhere) on x86-64, else
/// [`CacheSizes::FALLBACK`].
pub fn cache_sizes() -> CacheSizes {
    static SIZES: OnceLock<CacheSizes> = OnceLock::new();
    *SIZES.get_or_init(|| {
        read_sysfs_caches()
            .or_else(read_cpuid_caches)
            .unwrap_or(CacheSizes::FALLBACK)
    })
}

/// The deterministic cache parameters of CPUID: leaf 4 (Intel) or 0x8000001D (AMD, with the
/// topology extensions), one sub-leaf per cache.
#[cfg(target_arch = "x86_64")]
fn read_cpuid_caches() -> Option<CacheSizes> {
    use std::arch::x86_64::{__cpuid, __cpuid_count, CpuidResult};
    // `__cpuid*` are safe functions on newer toolchains and unsafe ones on the MSRV.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID exists on every x86-64 CPU; only leaves the CPU reports are queried.
    let q = |leaf: u32, sub: u32| -> CpuidResult { unsafe { __cpuid_count(leaf, sub) } };
    #[allow(unused_unsafe)]
    // SAFETY: as above.
    let (v0, ext) = unsafe { (__cpuid(0), __cpuid(0x8000_0000)) };
    let amd = v0.ebx == 0x6874_7541; // "Auth" (AuthenticAMD)
    let leaf = if amd && ext.eax >= 0x8000_001D && (q(0x8000_0001, 0).ecx >> 22) & 1 == 1 {
        0x8000_001D
    } else if v0.eax >= 4 {
        4
    } else {
        return None;
    };
    let (mut l1d, mut l2, mut l3) = (None, None, None);
    for sub in 0..16 {
        let r = q(leaf, sub);
        let kind = r.eax & 0x1f; // 0 none, 1 data, 2 instruction, 3 unified
        if kind == 0 {
            break;
        }
        let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
        let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
        let line = (r.ebx & 0xfff) as usize + 1;
        let sets = r.ecx as usize + 1;
        let size = Some(ways * parts * line * sets);
        match ((r.eax >> 5) & 7, kind) {
            (1, 1) => l1d = size,
            (2, 1 | 3) => l2 = size,
            (3, 1 | 3) => l3 = size,
            _ => {}
        }
    }
    Some(CacheSizes {
        l1d: l1d?,
        l2: l2?,
        l3: l3.or(l2)?,
        source: "cpuid",
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn read_cpuid_caches() -> Option<CacheSizes> {
    None
}

/// `"48K"`, `"1024K"`, `"32M"` or plain bytes, as sysfs writes cache sizes.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: usize = digits.parse().ok()?;
    let scale = match unit.trim() {
        "" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(scale).filter(|&b| b > 0)
}

fn read_sysfs_caches() -> Option<CacheSizes> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let (mut l1d, mut l2, mut l3) = (None, None, None);
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let read = |f: &str| std::fs::read_to_string(entry.path().join(f)).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let size = parse_cache_size(&size);
        match (level.trim(), kind.trim()) {
            ("1", "Data") => l1d = size,
            ("2", "Unified" | "Data") => l2 = size,
            ("3", "Unified" | "Data") => l3 = size,
            _ => {}
        }
    }
    Some(CacheSizes {
        l1d: l1d?,
        l2: l2?,
        // Some machines have no L3: the L2 then plays its part for the B panel.
        l3: l3.or(l2)?,
        source: "sysfs",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_resolve_or_explain() {
        assert_eq!(parse_request("scalar"), Ok(SimdLevel::Scalar));
        // Unset or `auto` is the widest level the CPU has.
        assert_eq!(parse_request(""), Ok(detect()));
        assert_eq!(parse_request("auto"), Ok(detect()));
        let err = parse_request("avx1024").unwrap_err();
        assert!(err.contains("unknown SIMD level"), "{err}");
        for l in [SimdLevel::Avx2Fma, SimdLevel::Avx512, SimdLevel::Neon] {
            match parse_request(l.name()) {
                Ok(got) => assert!(got == l && l.is_supported()),
                Err(e) => assert!(!l.is_supported() && e.contains("cannot run"), "{e}"),
            }
        }
        assert_eq!(SimdLevel::from_name("AVX2"), Some(SimdLevel::Avx2Fma));
    }

    #[test]
    fn available_levels_are_ordered_and_runnable() {
        let levels = available();
        assert_eq!(levels[0], SimdLevel::Scalar);
        assert!(levels.iter().all(|l| l.is_supported()));
        assert_eq!(*levels.last().unwrap(), detect());
        assert!(SimdLevel::Avx512.at_least_avx2() && SimdLevel::Avx2Fma.at_least_avx2());
        assert!(!SimdLevel::Scalar.at_least_avx2() && !SimdLevel::Neon.at_least_avx2());
    }

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("48K\n"), Some(48 << 10));
        assert_eq!(parse_cache_size("32M"), Some(32 << 20));
        assert_eq!(parse_cache_size("1024"), Some(1024));
        assert_eq!(parse_cache_size("x"), None);
        let c = cache_sizes();
        assert!(c.l1d > 0 && c.l2 >= c.l1d && c.l3 > 0, "{c}");
        if let Some(c) = read_cpuid_caches() {
            assert!(c.l1d >= 4 << 10 && c.l2 >= c.l1d && c.l3 >= c.l2, "{c}");
        }
    }
}
