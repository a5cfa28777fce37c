//! The machine's own f32 FMA peak, measured in-process: an AVX2+FMA loop (the kernels' default
//! SIMD level) on one thread and on all threads, and the same loop on zmm registers where the
//! CPU has AVX-512 (reported beside it: only the GEMM has an AVX-512 path, used with
//! `DISTILL_CPU=avx512`).

#[cfg(target_arch = "x86_64")]
use std::hint::black_box;

#[cfg(target_arch = "x86_64")]
use distill_kernels::simd;

use crate::output::Row;
use crate::{Job, PeakRef};

/// FMAs per iteration of the peak loop: 12 independent ymm chains of 8 lanes. 12 chains cover
/// FMA latency (4 cycles) × 2 pipes with room to spare and leave registers for the constants.
pub const PEAK_CHAINS: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_loop(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let x = _mm256_set1_ps(black_box(0.999_999));
    let y = _mm256_set1_ps(black_box(1.0e-7));
    let mut acc = [_mm256_set1_ps(black_box(1.0)); PEAK_CHAINS];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, x, y);
        }
    }
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    let mut out = [0.0f32; 8];
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    out.iter().sum()
}

/// The same loop on zmm registers, to report what AVX-512 offers where the CPU has it. The
/// kernels' % of peak is against [`fma_loop`], the level they run at by default. Inline
/// assembly keeps the twelve chains in fixed registers.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
unsafe fn fma_loop_avx512(iters: u64) {
    // 12 independent chains (zmm0–zmm11) on zeroed operands: no denormals, no dependence
    // between chains; only the FMA throughput counts.
    std::arch::asm!(
        "vpxord zmm0, zmm0, zmm0",
        "vmovaps zmm1, zmm0", "vmovaps zmm2, zmm0", "vmovaps zmm3, zmm0",
        "vmovaps zmm4, zmm0", "vmovaps zmm5, zmm0", "vmovaps zmm6, zmm0",
        "vmovaps zmm7, zmm0", "vmovaps zmm8, zmm0", "vmovaps zmm9, zmm0",
        "vmovaps zmm10, zmm0", "vmovaps zmm11, zmm0", "vmovaps zmm12, zmm0",
        "vmovaps zmm13, zmm0",
        "2:",
        "vfmadd213ps zmm0, zmm12, zmm13", "vfmadd213ps zmm1, zmm12, zmm13",
        "vfmadd213ps zmm2, zmm12, zmm13", "vfmadd213ps zmm3, zmm12, zmm13",
        "vfmadd213ps zmm4, zmm12, zmm13", "vfmadd213ps zmm5, zmm12, zmm13",
        "vfmadd213ps zmm6, zmm12, zmm13", "vfmadd213ps zmm7, zmm12, zmm13",
        "vfmadd213ps zmm8, zmm12, zmm13", "vfmadd213ps zmm9, zmm12, zmm13",
        "vfmadd213ps zmm10, zmm12, zmm13", "vfmadd213ps zmm11, zmm12, zmm13",
        "dec {n}",
        "jnz 2b",
        "vzeroupper",
        n = inout(reg) iters.max(1) => _,
        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _,
        out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _,
        out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _,
        options(nostack, nomem),
    );
}

/// The peak jobs (none without AVX2+FMA): the FMA loop on one thread and on all threads, and
/// the AVX-512 loop where the CPU has it.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
pub fn jobs(cpu: &str, threads: usize) -> Vec<Job> {
    let row = |kernel: &str, shape: String, t: usize| Row::new(kernel, cpu, shape, Some(t));
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut jobs: Vec<Job> = Vec::new();

    // Peak: the FMA loop, in ~1.5 ms bursts — short enough that the best of many is an
    // undisturbed one. On all threads the bursts run at once (rayon::broadcast).
    #[cfg(target_arch = "x86_64")]
    if simd::detect().at_least_avx2() {
        let iters: u64 = 1_000_000;
        let flops = iters as f64 * (PEAK_CHAINS * 8 * 2) as f64;
        // SAFETY (both closures): AVX2 and FMA were detected above.
        jobs.push(Job {
            row: row("fma-peak", "avx2 fma loop".into(), 1),
            flops,
            peak: PeakRef::One,
            per_round: 20,
            run: Some(Box::new(move || {
                black_box(unsafe { fma_loop(black_box(iters)) });
            })),
            best: f64::INFINITY,
        });
        jobs.push(Job {
            row: row("fma-peak", "avx2 fma loop".into(), threads),
            flops: flops * threads as f64,
            peak: PeakRef::All,
            per_round: 20,
            run: Some(Box::new(move || {
                rayon::broadcast(|_| black_box(unsafe { fma_loop(black_box(iters)) }));
            })),
            best: f64::INFINITY,
        });
        if is_x86_feature_detected!("avx512f") {
            // Shown against the AVX2 peak (so ~200 % where zmm FMAs run at full width).
            jobs.push(Job {
                row: row("fma-peak-avx512", "avx512 fma loop".into(), threads),
                flops: 2.0 * flops * threads as f64,
                peak: PeakRef::All,
                per_round: 10,
                // SAFETY: AVX-512F was detected just above.
                run: Some(Box::new(move || {
                    rayon::broadcast(|_| unsafe { fma_loop_avx512(black_box(iters)) });
                })),
                best: f64::INFINITY,
            });
        }
    }
    jobs
}
