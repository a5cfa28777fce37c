//! [`Lanes`] on AVX-512F: one zmm register, 16 lanes; partial vectors through lane masks
//! (masked-off lanes are neither read nor written, so a row's end needs no padding).

use std::arch::x86_64::*;

use super::Lanes;

#[derive(Clone, Copy)]
pub(in crate::conv) struct Avx512(__m512);

/// The first `n` of 16 lanes.
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    debug_assert!(n < 16);
    ((1u32 << n) - 1) as __mmask16
}

impl Lanes for Avx512 {
    const N: usize = 16;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Avx512(_mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Avx512(_mm512_set1_ps(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Avx512(_mm512_loadu_ps(p))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        _mm512_storeu_ps(p, v.0)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        Avx512(_mm512_maskz_loadu_ps(first(n), p))
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, n: usize, v: Self) {
        _mm512_mask_storeu_ps(p, first(n), v.0)
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Avx512(_mm512_fmadd_ps(a.0, b.0, c.0))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Avx512(_mm512_add_ps(a.0, b.0))
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        _mm_prefetch::<_MM_HINT_T0>(p as *const i8)
    }
    /// Four 128-bit streaming stores: they need 16-byte alignment only, which large
    /// allocations have (a 512-bit one needs 64).
    #[inline(always)]
    unsafe fn store_stream(p: *mut f32, v: Self) {
        _mm_stream_ps(p, _mm512_castps512_ps128(v.0));
        _mm_stream_ps(p.add(4), _mm512_extractf32x4_ps::<1>(v.0));
        _mm_stream_ps(p.add(8), _mm512_extractf32x4_ps::<2>(v.0));
        _mm_stream_ps(p.add(12), _mm512_extractf32x4_ps::<3>(v.0));
    }
    #[inline(always)]
    unsafe fn stream_fence() {
        _mm_sfence()
    }
    type Index = __m512i;
    type Mask = __mmask16;
    #[inline(always)]
    unsafe fn load_index(p: *const u32) -> __m512i {
        _mm512_loadu_epi32(p.cast())
    }
    #[inline(always)]
    unsafe fn load_index_first(p: *const u32, n: usize) -> __m512i {
        _mm512_maskz_loadu_epi32(first(n), p.cast())
    }
    #[inline(always)]
    unsafe fn eq(a: __m512i, b: __m512i) -> __mmask16 {
        _mm512_cmpeq_epi32_mask(a, b)
    }
    #[inline(always)]
    unsafe fn positive(v: Self) -> __mmask16 {
        _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v.0, _mm512_setzero_ps())
    }
    #[inline(always)]
    unsafe fn keep(v: Self, m: __mmask16) -> Self {
        Avx512(_mm512_maskz_mov_ps(m, v.0))
    }
    /// Two two-source permutes (lane `i` of the pair is `lo[i]` below 16, `hi[i − 16]` above).
    #[inline(always)]
    unsafe fn unzip(lo: Self, hi: Self) -> (Self, Self) {
        let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        (
            Avx512(_mm512_permutex2var_ps(lo.0, even, hi.0)),
            Avx512(_mm512_permutex2var_ps(lo.0, odd, hi.0)),
        )
    }
}

super::thin_kernels_for!(Avx512, "avx512f");
