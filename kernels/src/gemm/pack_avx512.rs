//! The two transposing gathers of the AVX-512 tile (14×32), in registers.
//!
//! # Algorithm
//!
//! Packing an MR-tall sliver of a row-major op(A) (`Trans::N`), or an NR-wide sliver of a
//! transposed op(B) (`Trans::T`), reads stored rows and writes them as columns: the sliver
//! wants, for each depth p, one value from each of MR (or NR) stored rows. Element by element
//! that is a strided load and a store per float. Here 16 depths of 16 stored rows are loaded as
//! 16 vectors, the 16×16 block is transposed in registers ([`transpose16`]: 64 shuffles in
//! four rounds, pairs of floats, then quads, then 128-bit blocks twice), and each result
//! vector is one depth of the sliver: 16 loads, 64 shuffles and 16 stores for 256 floats.
//!
//! - A (MR = 14): rows 14 and 15 of the block are zero, and each depth stores 14 lanes.
//! - B (NR = 32): two 16-column halves per block of depths.
//!
//! Depths past the last whole block of 16 run the portable gather.
//!
//! # What bounds it
//!
//! The shuffle port: 64 shuffles per 256 floats, one per cycle, against 16 loads and 16 stores.
//! The source rows stream from L2 or L3 (each row is read along its length, 64 bytes at a time).

use std::arch::x86_64::*;

/// Transposes the 16×16 block held as 16 rows: afterwards `r[j]` holds column `j`.
#[target_feature(enable = "avx512f")]
unsafe fn transpose16(r: &mut [__m512; 16]) {
    // Round 1: interleave pairs of rows. t[2i] / t[2i+1] hold, in each 128-bit block g,
    // rows 2i and 2i+1 at columns 4g, 4g+1 / 4g+2, 4g+3.
    let mut t = [_mm512_setzero_ps(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // Round 2: quads. u[4q + c] holds, in block g, rows 4q..4q+3 of column 4g + c.
    let mut u = [_mm512_setzero_ps(); 16];
    for q in 0..4 {
        let (a, b, c, d) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        u[4 * q] = _mm512_shuffle_ps::<0x44>(a, c);
        u[4 * q + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
        u[4 * q + 2] = _mm512_shuffle_ps::<0x44>(b, d);
        u[4 * q + 3] = _mm512_shuffle_ps::<0xEE>(b, d);
    }
    // Rounds 3 and 4: a 4×4 transpose of 128-bit blocks among u[c], u[4+c], u[8+c], u[12+c],
    // so column 4g + c gathers block g of each.
    for c in 0..4 {
        let (a, b, cc, d) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
        let v0 = _mm512_shuffle_f32x4::<0x44>(a, b);
        let v1 = _mm512_shuffle_f32x4::<0xEE>(a, b);
        let v2 = _mm512_shuffle_f32x4::<0x44>(cc, d);
        let v3 = _mm512_shuffle_f32x4::<0xEE>(cc, d);
        r[c] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        r[4 + c] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
        r[8 + c] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        r[12 + c] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
    }
}

/// `dst[p·14 + r] = src[r·stride + p]` for 14 rows and depths `0..blocks·16`.
///
/// # Safety
/// AVX-512F must be available; `src` holds 14 rows of `blocks·16` floats at `stride`, `dst`
/// holds `blocks·16·14` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gather_14_rows(src: *const f32, stride: usize, blocks: usize, dst: *mut f32) {
    const MR: usize = 14;
    let mut r = [_mm512_setzero_ps(); 16];
    for blk in 0..blocks {
        let p = blk * 16;
        for (i, ri) in r.iter_mut().enumerate().take(MR) {
            *ri = _mm512_loadu_ps(src.add(i * stride + p));
        }
        r[MR] = _mm512_setzero_ps();
        r[MR + 1] = _mm512_setzero_ps();
        transpose16(&mut r);
        for (j, &v) in r.iter().enumerate() {
            _mm512_mask_storeu_ps(dst.add((p + j) * MR), 0x3FFF, v);
        }
    }
}

/// `dst[p·32 + c] = src[c·stride + p]` for 32 rows and depths `0..blocks·16`.
///
/// # Safety
/// AVX-512F must be available; `src` holds 32 rows of `blocks·16` floats at `stride`, `dst`
/// holds `blocks·16·32` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gather_32_rows(src: *const f32, stride: usize, blocks: usize, dst: *mut f32) {
    const NR: usize = 32;
    let mut r = [_mm512_setzero_ps(); 16];
    for blk in 0..blocks {
        let p = blk * 16;
        for half in 0..2 {
            let rows = src.add(half * 16 * stride + p);
            for (i, ri) in r.iter_mut().enumerate() {
                *ri = _mm512_loadu_ps(rows.add(i * stride));
            }
            transpose16(&mut r);
            for (j, &v) in r.iter().enumerate() {
                _mm512_storeu_ps(dst.add((p + j) * NR + half * 16), v);
            }
        }
    }
}
