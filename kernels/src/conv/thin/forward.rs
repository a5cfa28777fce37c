//! The thin forward: `y[co×P] = bias + w[co×K]·col[K×P]` per image, with the K weights of an
//! output channel held in registers while its plane is streamed out.
//!
//! Per output channel, [`FWD_VECTORS`] independent FMA chains of 8 pixels run over the K taps
//! of the image's column matrix (in L1); the tail is masked. The kernel is bound by writing
//! y: large outputs are written with streaming stores, and the page walks of the output are
//! started ahead of the stores ([`PAGE_AHEAD`]).

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{prefetch_next_input, row_stride, ColLayout};
use crate::conv::{with_scratch, Geo};
use crate::simd::mask;

/// Outputs from this size on are written with streaming stores (they would not stay in
/// cache anyway, and skipping the read-for-ownership halves the memory traffic).
const STREAM_MIN_BYTES: usize = 8 << 20;

/// How far ahead of the plane being written [`fwd_image`] touches the output's pages:
/// 2 pages (8 KB, floats here).
///
/// A 12.8 MB output spans 3,136 pages of 4 KB. After another large kernel has used the
/// TLB, each page costs a page walk, two-dimensional on a VM with nested paging. A
/// streaming store that waits on one stalls the stores behind it. So before each output
/// channel's plane, one prefetch per page of the range 2 pages ahead starts those walks
/// early, spread over the image one or two at a time.
const PAGE_AHEAD: usize = 2048;

/// Output vectors per step of [`fwd_image`] (independent FMA chains; with K ≤ 9 weights
/// in registers 7 would fit). More chains do not help: the forward waits on writing y, not
/// on FMA latency.
const FWD_VECTORS: usize = 4;

/// `y[co×P] = bias + w[co×K]·col[K×PS]` for one image.
#[target_feature(enable = "avx2,fma")]
unsafe fn fwd_image<const K: usize>(
    col: &[f32],
    offs: &[usize],
    p: usize,
    w: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    co: usize,
    nt: bool,
) {
    debug_assert!(col.len() >= offs[K - 1] + row_stride(p) && w.len() >= co * K);
    debug_assert!(y.len() >= co * p);
    let cp = col.as_ptr();
    let mut off = [0usize; K];
    off.copy_from_slice(&offs[..K]);
    let (full, rem) = (p / 8, p % 8);
    let mask = mask::first(rem);
    for c in 0..co {
        let mut wk = [_mm256_setzero_ps(); K];
        for (k, v) in wk.iter_mut().enumerate() {
            *v = _mm256_set1_ps(*w.get_unchecked(c * K + k));
        }
        let b = _mm256_set1_ps(bias.map_or(0.0, |b| *b.get_unchecked(c)));
        let yp = y.as_mut_ptr().add(c * p);
        // The pages PAGE_AHEAD on (past the end of y for the last planes: a prefetch
        // never faults, and the pointer is never dereferenced).
        for page in (0..p).step_by(1024) {
            _mm_prefetch::<_MM_HINT_T0>(yp.wrapping_add(PAGE_AHEAD + page) as *const i8);
        }
        // Streaming (non-temporal) stores skip the read-for-ownership of y.
        // 128-bit halves: they need 16-byte alignment only, which large allocations have.
        let stream = nt && (yp as usize).is_multiple_of(16);
        let st = |dst: *mut f32, v: __m256| {
            if stream {
                _mm_stream_ps(dst, _mm256_castps256_ps128(v));
                _mm_stream_ps(dst.add(4), _mm256_extractf128_ps::<1>(v));
            } else {
                _mm256_storeu_ps(dst, v)
            }
        };
        let mut v = 0;
        while v + FWD_VECTORS <= full {
            let o = v * 8;
            let mut a = [b; FWD_VECTORS];
            for k in 0..K {
                let r = cp.add(off[k] + o);
                for (u, acc) in a.iter_mut().enumerate() {
                    *acc = _mm256_fmadd_ps(wk[k], _mm256_loadu_ps(r.add(8 * u)), *acc);
                }
            }
            for (u, acc) in a.iter().enumerate() {
                st(yp.add(o + 8 * u), *acc);
            }
            v += FWD_VECTORS;
        }
        while v < full {
            let o = v * 8;
            let mut a = b;
            for k in 0..K {
                a = _mm256_fmadd_ps(wk[k], _mm256_loadu_ps(cp.add(off[k] + o)), a);
            }
            st(yp.add(o), a);
            v += 1;
        }
        if rem > 0 {
            let o = full * 8;
            let mut a = b;
            for k in 0..K {
                a = _mm256_fmadd_ps(wk[k], _mm256_loadu_ps(cp.add(off[k] + o)), a);
            }
            _mm256_maskstore_ps(yp.add(o), mask, a);
        }
    }
}

/// Forward. Caller has checked AVX2+FMA and `K ≤ THIN_MAX_K`.
pub(in crate::conv) fn forward(g: &Geo, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let (k, p) = (g.k(), g.p());
    let lay = ColLayout::new(g);
    let nt = y.len() * 4 >= STREAM_MIN_BYTES;
    y.par_chunks_mut(g.out_image())
        .zip(x.par_chunks(g.in_image()))
        .enumerate()
        .for_each(|(n, (yn, xn))| {
            prefetch_next_input(g, x, n);
            with_scratch(lay.len, |col| {
                lay.unfold(g, xn, col);
                // SAFETY: AVX2+FMA checked by the caller; lengths as asserted above.
                unsafe { by_k!(k, fwd_image(col, &lay.offs, p, w, bias, yn, g.co, nt)) }
            })
        });
    if nt {
        // SAFETY: AVX2 implies SSE; orders the streaming stores before any later access.
        unsafe { _mm_sfence() };
    }
}
