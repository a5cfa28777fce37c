//! The 2×2/stride-2 max-pool window on AVX2: eight outputs per step. The even and odd input
//! columns of the two window rows are de-interleaved (a shuffle within 128-bit halves, then a
//! cross-lane permute), then four compare-and-blend steps carry the maximum and its index,
//! top-left, top-right, bottom-left, bottom-right, the scalar rule's order. The ragged end of
//! a row is one masked vector. Bound by memory: 16 input floats in, 8 floats and 8 indices
//! out per step.

use std::arch::x86_64::*;

/// The 2×2/stride-2 window of one plane (`super::pool_2x2`), eight outputs at a time: de-interleave the even and odd columns of the two
/// input rows, then four compare-and-blend steps carry the maximum and its index.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pool_2x2_avx2(
    xp: &[f32],
    iw: usize,
    oh: usize,
    ow: usize,
    yp: &mut [f32],
    ap: &mut [u32],
) {
    let lanes = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    // The ragged end of a row (ow = 7 or 14 in the presets) is a masked vector, not a
    // scalar loop (which cost more than the full vectors put together).
    use crate::simd::mask::first;
    let one = _mm256_set1_epi32(1);
    for r in 0..oh {
        let (t0, b0) = (2 * r * iw, (2 * r + 1) * iw);
        assert!(b0 + 2 * ow <= xp.len() && (r + 1) * ow <= yp.len() && (r + 1) * ow <= ap.len());
        let mut c = 0;
        while c < ow {
            // Outputs c..c+n of this row read inputs 2c..2c+2n of the two rows.
            let n = (ow - c).min(8);
            let (mask_lo, mask_hi) = (first(2 * n), first((2 * n).saturating_sub(8)));
            let load_pairs = |at: usize| {
                let p = xp.as_ptr().add(at);
                let (lo, hi) = if n == 8 {
                    (_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)))
                } else {
                    // Masked-off lanes read nothing (no fault past the plane) and load 0.
                    (
                        _mm256_maskload_ps(p, mask_lo),
                        _mm256_maskload_ps(p.add(8), mask_hi),
                    )
                };
                // shuffle_ps works within 128-bit halves; the permute restores column order.
                let even = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(lo, hi)),
                ));
                let odd = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                    _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(lo, hi)),
                ));
                (even, odd)
            };
            let (te, to) = load_pairs(t0 + 2 * c);
            let (be, bo) = load_pairs(b0 + 2 * c);
            let base_t = _mm256_add_epi32(_mm256_set1_epi32((t0 + 2 * c) as i32), lanes);
            let base_b = _mm256_add_epi32(_mm256_set1_epi32((b0 + 2 * c) as i32), lanes);
            let mut best = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut at = base_t;
            for (v, idx) in [
                (te, base_t),
                (to, _mm256_add_epi32(base_t, one)),
                (be, base_b),
                (bo, _mm256_add_epi32(base_b, one)),
            ] {
                // take = v > best || v is NaN, exactly the scalar rule.
                let take = _mm256_or_ps(
                    _mm256_cmp_ps::<_CMP_GT_OQ>(v, best),
                    _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v),
                );
                best = _mm256_blendv_ps(best, v, take);
                at = _mm256_castps_si256(_mm256_blendv_ps(
                    _mm256_castsi256_ps(at),
                    _mm256_castsi256_ps(idx),
                    take,
                ));
            }
            let (yo, ao) = (
                yp.as_mut_ptr().add(r * ow + c),
                ap.as_mut_ptr().add(r * ow + c),
            );
            if n == 8 {
                _mm256_storeu_ps(yo, best);
                _mm256_storeu_si256(ao as *mut __m256i, at);
            } else {
                let out = first(n);
                _mm256_maskstore_ps(yo, out, best);
                _mm256_maskstore_epi32(ao as *mut i32, out, at);
            }
            c += n;
        }
    }
}
