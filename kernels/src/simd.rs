//! Run-time choice of the SIMD path: AVX2+FMA on x86-64, NEON on aarch64, scalar otherwise.
//!
//! Detected once per process. `DISTILL_CPU=scalar` forces the scalar path. Kernels also have
//! `*_at(level, …)` entry points so tests can run both paths in one process.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimdLevel {
    Scalar,
    /// x86-64 with AVX2 and FMA.
    Avx2Fma,
    /// aarch64 Advanced SIMD (always present there).
    Neon,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Scalar => "scalar",
            SimdLevel::Avx2Fma => "avx2+fma",
            SimdLevel::Neon => "neon",
        }
    }
}

/// The best level this CPU supports, ignoring `DISTILL_CPU`.
pub fn detect() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return SimdLevel::Avx2Fma;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return SimdLevel::Neon;
        }
    }
    SimdLevel::Scalar
}

/// The level kernels use: [`detect`], unless `DISTILL_CPU=scalar` forces the scalar path.
pub fn level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(|| match std::env::var("DISTILL_CPU").as_deref() {
        Ok("scalar") => SimdLevel::Scalar,
        _ => detect(),
    })
}

/// Every level this CPU can run (always includes `Scalar`), for tests and benches.
pub fn available() -> Vec<SimdLevel> {
    let best = detect();
    if best == SimdLevel::Scalar {
        vec![SimdLevel::Scalar]
    } else {
        vec![SimdLevel::Scalar, best]
    }
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
