//! The 2×2/stride-2 max-pool window on AVX-512: sixteen outputs per step. The two window rows'
//! 32 inputs (two zmm loads) are split into even and odd columns by one two-source permute
//! each (`vpermt2ps`), then four compare-and-blend steps (compares into mask registers,
//! masked blends) carry the maximum and its index, top-left, top-right, bottom-left,
//! bottom-right, the scalar rule's order. The ragged end of a row is one masked step
//! (masked-off lanes are neither read nor written). Bound by memory: 32 input floats in,
//! 16 floats and 16 indices out per step.
//!
//! The backward runs the same steps in reverse: sixteen gradients and arg-maxes in, four
//! compares pick which of the four window pixels each gradient goes to, and two permutes per
//! window row interleave the even and odd columns back into 32 outputs (zero where a pixel
//! was not its window's maximum). Every input pixel is written once, so dx needs no zeroing.

use std::arch::x86_64::*;

/// The first `n` lanes of sixteen (all from `n = 16` on).
#[inline(always)]
fn first(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// One plane: `y[r, c]`, `argmax[r, c]` over the window at `(2r, 2c)` of `xp` (rows `iw`
/// apart). The caller checks that `xp` holds `2·oh` rows reaching column `2·ow`, and `yp`,
/// `ap` hold `oh·ow`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pool_2x2_avx512(
    xp: &[f32],
    iw: usize,
    oh: usize,
    ow: usize,
    yp: &mut [f32],
    ap: &mut [u32],
) {
    let even_cols = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd_cols = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let one = _mm512_set1_epi32(1);
    for r in 0..oh {
        let (t0, b0) = (2 * r * iw, (2 * r + 1) * iw);
        let mut c = 0;
        while c < ow {
            // Outputs c..c+n of this row read inputs 2c..2c+2n of the two rows.
            let n = (ow - c).min(16);
            let (mask_lo, mask_hi) = (first(2 * n), first((2 * n).saturating_sub(16)));
            let load_pairs = |at: usize| {
                let p = xp.as_ptr().add(at);
                let lo = _mm512_maskz_loadu_ps(mask_lo, p);
                let hi = _mm512_maskz_loadu_ps(mask_hi, p.add(16));
                (
                    _mm512_permutex2var_ps(lo, even_cols, hi),
                    _mm512_permutex2var_ps(lo, odd_cols, hi),
                )
            };
            let (te, to) = load_pairs(t0 + 2 * c);
            let (be, bo) = load_pairs(b0 + 2 * c);
            let base_t = _mm512_add_epi32(_mm512_set1_epi32((t0 + 2 * c) as i32), even_cols);
            let base_b = _mm512_add_epi32(_mm512_set1_epi32((b0 + 2 * c) as i32), even_cols);
            let mut best = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut at = base_t;
            for (v, idx) in [
                (te, base_t),
                (to, _mm512_add_epi32(base_t, one)),
                (be, base_b),
                (bo, _mm512_add_epi32(base_b, one)),
            ] {
                // take = v > best || v is NaN, exactly the scalar rule.
                let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best)
                    | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                best = _mm512_mask_blend_ps(take, best, v);
                at = _mm512_mask_blend_epi32(take, at, idx);
            }
            let out = first(n);
            _mm512_mask_storeu_ps(yp.as_mut_ptr().add(r * ow + c), out, best);
            _mm512_mask_storeu_epi32(ap.as_mut_ptr().add(r * ow + c) as *mut i32, out, at);
            c += n;
        }
    }
}

/// The backward of one plane: `dxp[2r + i, 2c + j] = dy[r, c]` where `argmax[r, c]` is that
/// pixel, else zero, for the `2·oh` rows and `2·ow` columns the windows cover (the caller
/// zeroes what lies outside them). The caller checks that `dxp` holds `2·oh` rows reaching
/// column `2·ow`, and `dyp`, `ap` hold `oh·ow`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn unpool_2x2_avx512(
    dxp: &mut [f32],
    iw: usize,
    oh: usize,
    ow: usize,
    dyp: &[f32],
    ap: &[u32],
) {
    let even_cols = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    // Lanes 0..8 of (even, odd) interleaved, then lanes 8..16.
    let pairs_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    let pairs_hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    let one = _mm512_set1_epi32(1);
    for r in 0..oh {
        let (t0, b0) = (2 * r * iw, (2 * r + 1) * iw);
        let mut c = 0;
        while c < ow {
            let n = (ow - c).min(16);
            let out = first(n);
            let g = _mm512_maskz_loadu_ps(out, dyp.as_ptr().add(r * ow + c));
            let a = _mm512_maskz_loadu_epi32(out, ap.as_ptr().add(r * ow + c) as *const i32);
            let (mask_lo, mask_hi) = (first(2 * n), first((2 * n).saturating_sub(16)));
            for row0 in [t0, b0] {
                let even = _mm512_add_epi32(_mm512_set1_epi32((row0 + 2 * c) as i32), even_cols);
                let odd = _mm512_add_epi32(even, one);
                let ge = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, even), g);
                let go = _mm512_maskz_mov_ps(_mm512_cmpeq_epi32_mask(a, odd), g);
                let p = dxp.as_mut_ptr().add(row0 + 2 * c);
                _mm512_mask_storeu_ps(p, mask_lo, _mm512_permutex2var_ps(ge, pairs_lo, go));
                _mm512_mask_storeu_ps(p.add(16), mask_hi, _mm512_permutex2var_ps(ge, pairs_hi, go));
            }
            c += n;
        }
    }
}
