//! Microkernels: `C[MR×NR] (+)= Σ_p a[p·MR..][..MR] ⊗ b[p·NR..][..NR]` on packed slivers,
//! then the epilogue, on the SIMD path picked at run time (AVX2+FMA, NEON, or scalar).
//!
//! The whole 6×16 tile of C stays in registers over the k loop (AVX2: 12 ymm accumulators, 2
//! for the B row, 1 broadcast of A; NEON: 24 q accumulators, A used by lane), and the
//! epilogue is applied as the tile is stored. They are bound by the FMA pipes; the C tile is
//! prefetched before the k loop so its load does not stall the store. Partial tiles at the
//! matrix edges run the same kernel on a padded stack copy ([`edge_tile`]), so every element
//! gets the same arithmetic.

use super::{MR, NR};
use crate::simd::{self, SimdLevel};

/// What the microkernel does when it stores its tile.
pub(super) struct TileEp {
    /// Add the tile to C (accumulate, or a later KC block) instead of overwriting it.
    pub(super) load_c: bool,
    /// MR row biases, or null.
    pub(super) row_bias: *const f32,
    /// NR column biases, or null.
    pub(super) col_bias: *const f32,
    pub(super) relu: bool,
}

/// `kern(kc, a_sliver, b_sliver, c, ldc, ep)`.
///
/// Safety contract: `a` holds `kc·MR`, `b` holds `kc·NR` floats; `c` addresses MR rows of NR
/// floats at stride `ldc`; non-null biases hold MR / NR floats.
pub(super) type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, &TileEp);

pub(super) fn microkernel(level: SimdLevel) -> Kernel {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma if simd::detect() == SimdLevel::Avx2Fma => kernel_avx2,
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon if simd::detect() == SimdLevel::Neon => kernel_neon,
        _ => kernel_scalar,
    }
}

/// Portable reference microkernel (the compiler may still auto-vectorise it).
unsafe fn kernel_scalar(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * NR);
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for r in 0..MR {
            for (x, &bv) in acc[r].iter_mut().zip(bp) {
                // Not `mul_add`: without hardware FMA that is a libm call per element.
                *x += ap[r] * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let cr = std::slice::from_raw_parts_mut(c.add(r * ldc), NR);
        for (j, (cv, &x)) in cr.iter_mut().zip(row).enumerate() {
            let mut v = if ep.load_c { x + *cv } else { x };
            if !ep.row_bias.is_null() {
                v += *ep.row_bias.add(r);
            }
            if !ep.col_bias.is_null() {
                v += *ep.col_bias.add(j);
            }
            if ep.relu && v < 0.0 {
                v = 0.0;
            }
            *cv = v;
        }
    }
}

/// AVX2+FMA 6×16: 12 ymm accumulators, 2 ymm of B, 1 broadcast of A per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    use std::arch::x86_64::*;
    const NV: usize = NR / 8;
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    // Start pulling the C tile in now; it is needed only after the k loop.
    for r in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + NR - 1) as *const i8);
    }
    let (mut a, mut b) = (a, b);
    let step = |a: *const f32, b: *const f32, acc: &mut [[__m256; NV]; MR]| {
        let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_load_ps(b.add(8 * v)));
        for (r, accr) in acc.iter_mut().enumerate() {
            let ar = _mm256_broadcast_ss(&*a.add(r));
            for (x, &bb) in accr.iter_mut().zip(&bv) {
                *x = _mm256_fmadd_ps(ar, bb, *x);
            }
        }
    };
    // Unrolled by 4 to thin out the loop overhead between FMAs.
    for _ in 0..kc / 4 {
        step(a, b, &mut acc);
        step(a.add(MR), b.add(NR), &mut acc);
        step(a.add(2 * MR), b.add(2 * NR), &mut acc);
        step(a.add(3 * MR), b.add(3 * NR), &mut acc);
        a = a.add(4 * MR);
        b = b.add(4 * NR);
    }
    for _ in 0..kc % 4 {
        step(a, b, &mut acc);
        a = a.add(MR);
        b = b.add(NR);
    }
    let zero = _mm256_setzero_ps();
    let cb: [__m256; NV] = if ep.col_bias.is_null() {
        [zero; NV]
    } else {
        std::array::from_fn(|v| _mm256_loadu_ps(ep.col_bias.add(8 * v)))
    };
    for (r, accr) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        let rb = if ep.row_bias.is_null() {
            zero
        } else {
            _mm256_broadcast_ss(&*ep.row_bias.add(r))
        };
        for (v, &x) in accr.iter().enumerate() {
            let mut y = x;
            if ep.load_c {
                y = _mm256_add_ps(y, _mm256_loadu_ps(cr.add(8 * v)));
            }
            if !ep.row_bias.is_null() {
                y = _mm256_add_ps(y, rb);
            }
            if !ep.col_bias.is_null() {
                y = _mm256_add_ps(y, cb[v]);
            }
            if ep.relu {
                // max(0, y) with y second: NaN passes through, like the scalar `y < 0` test.
                y = _mm256_max_ps(zero, y);
            }
            _mm256_storeu_ps(cr.add(8 * v), y);
        }
    }
}

/// NEON 6×16: 24 q-register accumulators; A's 6 values are loaded as 4+2 lanes and used with
/// `fmla` by lane, so no broadcasts are needed.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn kernel_neon(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    use std::arch::aarch64::*;
    let mut acc = [[vdupq_n_f32(0.0); 4]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let bv = [
            vld1q_f32(b),
            vld1q_f32(b.add(4)),
            vld1q_f32(b.add(8)),
            vld1q_f32(b.add(12)),
        ];
        let a03 = vld1q_f32(a);
        let a45 = vld1_f32(a.add(4));
        for q in 0..4 {
            acc[0][q] = vfmaq_laneq_f32::<0>(acc[0][q], bv[q], a03);
            acc[1][q] = vfmaq_laneq_f32::<1>(acc[1][q], bv[q], a03);
            acc[2][q] = vfmaq_laneq_f32::<2>(acc[2][q], bv[q], a03);
            acc[3][q] = vfmaq_laneq_f32::<3>(acc[3][q], bv[q], a03);
            acc[4][q] = vfmaq_lane_f32::<0>(acc[4][q], bv[q], a45);
            acc[5][q] = vfmaq_lane_f32::<1>(acc[5][q], bv[q], a45);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let zero = vdupq_n_f32(0.0);
    for (r, accr) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        for (q, &x) in accr.iter().enumerate() {
            let mut v = x;
            if ep.load_c {
                v = vaddq_f32(v, vld1q_f32(cr.add(4 * q)));
            }
            if !ep.row_bias.is_null() {
                v = vaddq_f32(v, vdupq_n_f32(*ep.row_bias.add(r)));
            }
            if !ep.col_bias.is_null() {
                v = vaddq_f32(v, vld1q_f32(ep.col_bias.add(4 * q)));
            }
            if ep.relu {
                v = vmaxq_f32(v, zero);
            }
            vst1q_f32(cr.add(4 * q), v);
        }
    }
}

/// A partial tile: run the full microkernel on a padded copy in a stack buffer, so edges get
/// exactly the same arithmetic as interior tiles, then copy the valid part back.
///
/// # Safety
/// `c` must address `rows` rows of `cols` valid floats with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn edge_tile(
    kern: Kernel,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load_c: bool,
    row_bias: Option<&[f32]>,
    col_bias: Option<&[f32]>,
    relu: bool,
) {
    let mut tmp = Aligned([0.0f32; MR * NR]);
    if load_c {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(c.add(r * ldc), tmp.0[r * NR..].as_mut_ptr(), cols);
        }
    }
    let mut rb = [0.0f32; MR];
    let mut cb = [0.0f32; NR];
    if let Some(bias) = row_bias {
        rb[..rows].copy_from_slice(bias);
    }
    if let Some(bias) = col_bias {
        cb[..cols].copy_from_slice(bias);
    }
    let tep = TileEp {
        load_c,
        row_bias: if row_bias.is_some() {
            rb.as_ptr()
        } else {
            std::ptr::null()
        },
        col_bias: if col_bias.is_some() {
            cb.as_ptr()
        } else {
            std::ptr::null()
        },
        relu,
    };
    kern(kc, a.as_ptr(), b.as_ptr(), tmp.0.as_mut_ptr(), NR, &tep);
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(tmp.0[r * NR..].as_ptr(), c.add(r * ldc), cols);
    }
}

#[repr(C, align(64))]
struct Aligned<T>(T);
