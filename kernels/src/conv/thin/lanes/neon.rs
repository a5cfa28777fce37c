//! [`Lanes`] on aarch64 Advanced SIMD: one q register, 4 lanes; partial vectors through a
//! 4-float stack buffer (only the valid floats are copied in or out).

use std::arch::aarch64::*;

use super::Lanes;

#[derive(Clone, Copy)]
pub(in crate::conv) struct Neon(float32x4_t);

impl Lanes for Neon {
    const N: usize = 4;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Neon(vdupq_n_f32(0.0))
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        Neon(vdupq_n_f32(x))
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Neon(vld1q_f32(p))
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: Self) {
        vst1q_f32(p, v.0)
    }
    #[inline(always)]
    unsafe fn load_first(p: *const f32, n: usize) -> Self {
        debug_assert!(n < 4);
        let mut buf = [0.0f32; 4];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        Neon(vld1q_f32(buf.as_ptr()))
    }
    #[inline(always)]
    unsafe fn store_first(p: *mut f32, n: usize, v: Self) {
        debug_assert!(n < 4);
        let mut buf = [0.0f32; 4];
        vst1q_f32(buf.as_mut_ptr(), v.0);
        std::ptr::copy_nonoverlapping(buf.as_ptr(), p, n);
    }
    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        // vfmaq_f32(c, a, b) = c + a·b, one rounding.
        Neon(vfmaq_f32(c.0, a.0, b.0))
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        Neon(vaddq_f32(a.0, b.0))
    }
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        crate::conv::thin::prefetch(p)
    }
    /// A plain store: Rust's NEON intrinsics have no non-temporal store (`stnp` would need
    /// inline assembly), and ARM cores detect streaming writes themselves.
    #[inline(always)]
    unsafe fn store_stream(p: *mut f32, v: Self) {
        vst1q_f32(p, v.0)
    }
    #[inline(always)]
    unsafe fn stream_fence() {}
    type Index = uint32x4_t;
    /// All ones where true, as NEON's compares give.
    type Mask = uint32x4_t;
    #[inline(always)]
    unsafe fn load_index(p: *const u32) -> uint32x4_t {
        vld1q_u32(p)
    }
    #[inline(always)]
    unsafe fn load_index_first(p: *const u32, n: usize) -> uint32x4_t {
        debug_assert!(n < 4);
        let mut buf = [0u32; 4];
        std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), n);
        vld1q_u32(buf.as_ptr())
    }
    #[inline(always)]
    unsafe fn eq(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        vceqq_u32(a, b)
    }
    #[inline(always)]
    unsafe fn positive(v: Self) -> uint32x4_t {
        vcgtq_f32(v.0, vdupq_n_f32(0.0))
    }
    #[inline(always)]
    unsafe fn keep(v: Self, m: uint32x4_t) -> Self {
        Neon(vreinterpretq_f32_u32(vandq_u32(
            vreinterpretq_u32_f32(v.0),
            m,
        )))
    }
    #[inline(always)]
    unsafe fn unzip(lo: Self, hi: Self) -> (Self, Self) {
        (Neon(vuzp1q_f32(lo.0, hi.0)), Neon(vuzp2q_f32(lo.0, hi.0)))
    }
}

super::thin_kernels_for!(Neon, "neon");
