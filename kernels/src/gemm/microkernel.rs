//! Microkernels: `C[MR×NR] (+)= Σ_p a[p·MR..][..MR] ⊗ b[p·NR..][..NR]` on packed slivers,
//! then the epilogue, on the SIMD path picked at run time (AVX-512, AVX2+FMA, NEON, or scalar).
//!
//! The whole tile of C stays in registers over the k loop, and the epilogue is applied as the
//! tile is stored:
//! - AVX-512, 14×32: 28 zmm accumulators, 2 zmm of B, 1 broadcast of A (31 of 32 registers).
//!   Each k step is 28 FMAs against 2 vector loads and 14 broadcasts, and 28 independent
//!   chains cover FMA latency × 2 pipes. Partial tiles at the matrix edges run the same k loop
//!   and store through lane masks. A tile cut short by the bottom edge (m = 128 leaves 2
//!   rows), or to at most 16 columns by the right edge, runs the kernel instantiated for just
//!   its rows and vectors ([`partial_tile`]): fewer accumulators, the same chains for the
//!   elements it has (so the same bits), and no work on padding, which would otherwise cost a
//!   full tile: a tenth of the work at m = 64 or 128.
//! - AVX2+FMA, 6×16: 12 ymm accumulators, 2 for the B row, 1 broadcast of A.
//! - NEON, 6×16: 24 q accumulators, A used by lane.
//! - WebAssembly SIMD128, 6×16: 24 v128 accumulators, A splatted; a multiply then an add,
//!   as the scalar kernel does (base SIMD128 has no fused multiply-add), so both give the
//!   same bits. The browser's compiler maps the accumulators onto its registers (x86-64 has
//!   16, so a few spill to the stack); the loads of B are shared by six rows.
//!
//! They are bound by the FMA pipes; the C tile is prefetched before the k loop so its load
//! does not stall the store. On the paths without masks, partial tiles run the same kernel on
//! a padded stack copy ([`edge_tile`]), so every element gets the same arithmetic.

use crate::simd::SimdLevel;

/// The AVX2+FMA / NEON / scalar tile.
pub(super) const MR_AVX2: usize = 6;
pub(super) const NR_AVX2: usize = 16;
/// The AVX-512 tile.
pub(super) const MR_AVX512: usize = 14;
pub(super) const NR_AVX512: usize = 32;
/// The largest tile of any level (sizes [`edge_tile`]'s stack buffer).
const MAX_MR: usize = 16;
const MAX_NR: usize = 32;

/// What the microkernel does when it stores its tile.
pub(super) struct TileEp {
    /// Add the tile to C (accumulate, or a later KC block) instead of overwriting it.
    pub(super) load_c: bool,
    /// MR row biases, or null.
    pub(super) row_bias: *const f32,
    /// NR column biases, or null.
    pub(super) col_bias: *const f32,
    pub(super) relu: bool,
    /// The valid part of the tile (`1..=MR` rows, `1..=NR` columns). Kernels with masked
    /// stores write only that part and read only that much of C and of the biases; the others
    /// are only ever given full tiles.
    pub(super) rows: usize,
    pub(super) cols: usize,
}

/// `kern(kc, a_sliver, b_sliver, c, ldc, ep)`.
///
/// Safety contract: `a` holds `kc·MR`, `b` holds `kc·NR` floats; `c` addresses `ep.rows` rows
/// of `ep.cols` floats at stride `ldc`; non-null biases hold `ep.rows` / `ep.cols` floats.
pub(super) type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, &TileEp);

/// The microkernel of a level, its tile (MR, NR), and whether it stores partial tiles itself.
/// A level the CPU cannot run gets the scalar kernel.
pub(super) fn microkernel(level: SimdLevel) -> (Kernel, usize, usize, bool) {
    let runs = level.is_supported();
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if runs => (
            kernel_avx512::<MR_AVX512, { NR_AVX512 / 16 }>,
            MR_AVX512,
            NR_AVX512,
            true,
        ),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma if runs => (kernel_avx2, MR_AVX2, NR_AVX2, false),
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon if runs => (kernel_neon, MR_AVX2, NR_AVX2, false),
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        SimdLevel::Simd128 if runs => (kernel_simd128, MR_AVX2, NR_AVX2, false),
        _ => {
            let _ = runs;
            (kernel_scalar, MR_AVX2, NR_AVX2, false)
        }
    }
}

/// The kernel for a tile cut short by the matrix edge (`rows` < MR, or `cols` ≤ half of NR),
/// at a level whose kernel stores partial tiles itself and has instances that skip the
/// missing rows and vectors (AVX-512); `None` elsewhere, and for a tile that needs every
/// vector and row (the full-tile kernel then computes the padding too).
pub(super) fn partial_tile(level: SimdLevel, rows: usize, cols: usize) -> Option<Kernel> {
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx512 && level.is_supported() {
        return match (rows < MR_AVX512, cols <= NR_AVX512 / 2) {
            (false, false) => None,
            (_, true) => Some(avx512_rows::<1>(rows)),
            (true, false) => Some(avx512_rows::<2>(rows)),
        };
    }
    let _ = (level, rows, cols);
    None
}

/// The AVX-512 kernel that computes `rows` rows and `NV` vectors of a tile.
#[cfg(target_arch = "x86_64")]
fn avx512_rows<const NV: usize>(rows: usize) -> Kernel {
    match rows {
        1 => kernel_avx512::<1, NV>,
        2 => kernel_avx512::<2, NV>,
        3 => kernel_avx512::<3, NV>,
        4 => kernel_avx512::<4, NV>,
        5 => kernel_avx512::<5, NV>,
        6 => kernel_avx512::<6, NV>,
        7 => kernel_avx512::<7, NV>,
        8 => kernel_avx512::<8, NV>,
        9 => kernel_avx512::<9, NV>,
        10 => kernel_avx512::<10, NV>,
        11 => kernel_avx512::<11, NV>,
        12 => kernel_avx512::<12, NV>,
        13 => kernel_avx512::<13, NV>,
        _ => kernel_avx512::<MR_AVX512, NV>,
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
    const MR: usize = MR_AVX2;
    const NR: usize = NR_AVX2;
    debug_assert!(ep.rows == MR && ep.cols == NR);
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

/// Portable model of a masked-tail kernel of any tile, with the AVX-512 kernel's contract and
/// arithmetic (one fused multiply-add per term in depth order, then C, row bias, column bias,
/// ReLU; only `rows × cols` of C and of the biases read and written), so the driver and the
/// packers of the AVX-512 tile are tested on CPUs without AVX-512 too.
#[cfg(test)]
pub(super) unsafe fn kernel_masked_model<const MR: usize, const NR: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    debug_assert!((1..=MR).contains(&ep.rows) && (1..=NR).contains(&ep.cols));
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * NR);
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for r in 0..MR {
            for (x, &bv) in acc[r].iter_mut().zip(bp) {
                *x = ap[r].mul_add(bv, *x);
            }
        }
    }
    for (r, row) in acc.iter().enumerate().take(ep.rows) {
        for (j, &x) in row.iter().enumerate().take(ep.cols) {
            let cv = c.add(r * ldc + j);
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
    const MR: usize = MR_AVX2;
    const NR: usize = NR_AVX2;
    const NV: usize = NR / 8;
    debug_assert!(ep.rows == MR && ep.cols == NR);
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    // Start pulling the C tile in now; it is needed only after the k loop.
    for r in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + NR - 1) as *const i8);
    }
    let (mut a, mut b) = (a, b);
    let step = |a: *const f32, b: *const f32, acc: &mut [[__m256; NV]; MR]| {
        let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_loadu_ps(b.add(8 * v)));
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

/// AVX-512 14×32: 28 zmm accumulators, 2 zmm of B, 1 broadcast of A per row; partial tiles
/// load and store C (and the column bias) through lane masks. Instantiated for `R` < 14 rows or
/// `NV` = 1 vector it computes only that corner of the tile (one cut by the matrix edge).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn kernel_avx512<const R: usize, const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    use std::arch::x86_64::*;
    // MR, NR: the strides of the packed A and B slivers; R, NV: the rows and vectors computed.
    const MR: usize = MR_AVX512;
    const NR: usize = NR_AVX512;
    const { assert!(R >= 1 && R <= MR && NV >= 1 && NV <= NR / 16) };
    let (rows, cols) = (ep.rows, ep.cols);
    debug_assert!((1..=R).contains(&rows) && (1..=16 * NV).contains(&cols));
    debug_assert!(ldc >= cols);
    let mut acc = [[_mm512_setzero_ps(); NV]; R];
    // Start pulling the C tile in now; it is needed only after the k loop.
    for r in 0..rows {
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + cols - 1) as *const i8);
    }
    let (mut a, mut b) = (a, b);
    let step = |a: *const f32, b: *const f32, acc: &mut [[__m512; NV]; R]| {
        let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
        for (r, accr) in acc.iter_mut().enumerate() {
            let ar = _mm512_set1_ps(*a.add(r));
            for (x, &bb) in accr.iter_mut().zip(&bv) {
                *x = _mm512_fmadd_ps(ar, bb, *x);
            }
        }
    };
    // Unrolled by 8 to thin out the loop overhead between FMAs.
    for _ in 0..kc / 8 {
        step(a, b, &mut acc);
        step(a.add(MR), b.add(NR), &mut acc);
        step(a.add(2 * MR), b.add(2 * NR), &mut acc);
        step(a.add(3 * MR), b.add(3 * NR), &mut acc);
        step(a.add(4 * MR), b.add(4 * NR), &mut acc);
        step(a.add(5 * MR), b.add(5 * NR), &mut acc);
        step(a.add(6 * MR), b.add(6 * NR), &mut acc);
        step(a.add(7 * MR), b.add(7 * NR), &mut acc);
        a = a.add(8 * MR);
        b = b.add(8 * NR);
    }
    for _ in 0..kc % 8 {
        step(a, b, &mut acc);
        a = a.add(MR);
        b = b.add(NR);
    }
    // Lanes of each vector that lie inside the tile's valid columns.
    let mask: [__mmask16; NV] = std::array::from_fn(|v| {
        let n = cols.saturating_sub(16 * v).min(16);
        ((1u32 << n) - 1) as __mmask16
    });
    let zero = _mm512_setzero_ps();
    let cb: [__m512; NV] = if ep.col_bias.is_null() {
        [zero; NV]
    } else {
        std::array::from_fn(|v| _mm512_maskz_loadu_ps(mask[v], ep.col_bias.wrapping_add(16 * v)))
    };
    let store_row = |r: usize, accr: &[__m512; NV]| {
        let cr = c.add(r * ldc);
        let rb = if ep.row_bias.is_null() {
            zero
        } else {
            _mm512_set1_ps(*ep.row_bias.add(r))
        };
        // A vector wholly past the valid columns has an empty mask and may point past the end
        // of C, hence `wrapping_add` (masked-off lanes are never accessed).
        for (v, &x) in accr.iter().enumerate() {
            let mut y = x;
            if ep.load_c {
                y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask[v], cr.wrapping_add(16 * v)));
            }
            if !ep.row_bias.is_null() {
                y = _mm512_add_ps(y, rb);
            }
            if !ep.col_bias.is_null() {
                y = _mm512_add_ps(y, cb[v]);
            }
            if ep.relu {
                // max(0, y) with y second: NaN passes through, like the scalar `y < 0` test.
                y = _mm512_max_ps(zero, y);
            }
            _mm512_mask_storeu_ps(cr.wrapping_add(16 * v), mask[v], y);
        }
    };
    // Rows one by one with constant indices: indexing `acc` by a run-time row would make the
    // compiler keep the accumulators in memory through the k loop.
    macro_rules! store_rows {
        ($($r:literal)*) => {
            const _: () = assert!([$($r),*].len() == MR);
            $(if $r < rows {
                if let Some(accr) = acc.get($r) {
                    store_row($r, accr);
                }
            })*
        };
    }
    store_rows!(0 1 2 3 4 5 6 7 8 9 10 11 12 13);
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
    const MR: usize = MR_AVX2;
    const NR: usize = NR_AVX2;
    debug_assert!(ep.rows == MR && ep.cols == NR);
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

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn kernel_simd128(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    use std::arch::wasm32::*;
    const MR: usize = MR_AVX2;
    const NR: usize = NR_AVX2;
    debug_assert!(ep.rows == MR && ep.cols == NR);
    let mut acc = [[f32x4_splat(0.0); 4]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let bv = [
            v128_load(b as *const v128),
            v128_load(b.add(4) as *const v128),
            v128_load(b.add(8) as *const v128),
            v128_load(b.add(12) as *const v128),
        ];
        for (r, accr) in acc.iter_mut().enumerate() {
            let ar = f32x4_splat(*a.add(r));
            for (x, &bq) in accr.iter_mut().zip(&bv) {
                *x = f32x4_add(*x, f32x4_mul(ar, bq));
            }
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let zero = f32x4_splat(0.0);
    for (r, accr) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        for (q, &x) in accr.iter().enumerate() {
            let cq = cr.add(4 * q) as *mut v128;
            let mut v = x;
            if ep.load_c {
                v = f32x4_add(v, v128_load(cq));
            }
            if !ep.row_bias.is_null() {
                v = f32x4_add(v, f32x4_splat(*ep.row_bias.add(r)));
            }
            if !ep.col_bias.is_null() {
                v = f32x4_add(v, v128_load(ep.col_bias.add(4 * q) as *const v128));
            }
            if ep.relu {
                v = f32x4_pmax(v, zero);
            }
            v128_store(cq, v);
        }
    }
}

/// A partial tile for kernels without masked stores: run the full `mr×nr` microkernel on a
/// padded copy in a stack buffer, so edges get exactly the same arithmetic as interior tiles,
/// then copy the valid part back.
///
/// # Safety
/// `c` must address `rows` rows of `cols` valid floats with row stride `ldc`; `kern` must be a
/// full-tile kernel of `mr×nr`, and `a`/`b` hold `kc·mr` / `kc·nr` floats.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn edge_tile(
    kern: Kernel,
    (mr, nr): (usize, usize),
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
    debug_assert!(mr <= MAX_MR && nr <= MAX_NR && rows <= mr && cols <= nr);
    debug_assert!(a.len() >= kc * mr && b.len() >= kc * nr);
    let mut tmp = Aligned([0.0f32; MAX_MR * MAX_NR]);
    if load_c {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(c.add(r * ldc), tmp.0[r * nr..].as_mut_ptr(), cols);
        }
    }
    let mut rb = [0.0f32; MAX_MR];
    let mut cb = [0.0f32; MAX_NR];
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
        rows: mr,
        cols: nr,
    };
    kern(kc, a.as_ptr(), b.as_ptr(), tmp.0.as_mut_ptr(), nr, &tep);
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(tmp.0[r * nr..].as_ptr(), c.add(r * ldc), cols);
    }
}

#[repr(C, align(64))]
struct Aligned<T>(T);
