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
    /// Sums 0–3 and 4–7: pixels `o..o+4` go to the first when `o` is a multiple of 8.
    type Octet = (float32x4_t, float32x4_t);
    #[inline(always)]
    unsafe fn octet_zero() -> Self::Octet {
        (vdupq_n_f32(0.0), vdupq_n_f32(0.0))
    }
    #[inline(always)]
    unsafe fn octet_add(s: Self::Octet, v: Self, o: usize) -> Self::Octet {
        if o.is_multiple_of(8) {
            (vaddq_f32(s.0, v.0), s.1)
        } else {
            (s.0, vaddq_f32(s.1, v.0))
        }
    }
    #[inline(always)]
    unsafe fn octet_store(s: Self::Octet, out: &mut [f32; 8]) {
        vst1q_f32(out.as_mut_ptr(), s.0);
        vst1q_f32(out.as_mut_ptr().add(4), s.1);
    }
}

super::thin_kernels_for!(Neon, "neon");
