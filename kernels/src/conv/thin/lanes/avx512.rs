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
    /// A zmm whose low eight lanes are the sums (the high ones are never read): 256-bit
    /// operations reach only ymm0–15 without AVX-512VL, where the FMA accumulators live.
    type Octet = __m512;
    #[inline(always)]
    unsafe fn octet_zero() -> __m512 {
        _mm512_setzero_ps()
    }
    /// Pixels `o..o+8` (the low half of `v`), then `o+8..o+16` (its high half moved down).
    #[inline(always)]
    unsafe fn octet_add(s: __m512, v: Self, _o: usize) -> __m512 {
        let high = _mm512_shuffle_f32x4::<0b11_10_11_10>(v.0, v.0);
        _mm512_add_ps(_mm512_add_ps(s, v.0), high)
    }
    #[inline(always)]
    unsafe fn octet_store(s: __m512, out: &mut [f32; 8]) {
        _mm256_storeu_ps(out.as_mut_ptr(), _mm512_castps512_ps256(s))
    }
}

super::thin_kernels_for!(Avx512, "avx512f");
