//! The thin input gradient: `dcol[K×P] = Wᵀ·dY` per image on a register tile, then `dcol`
//! folded back into dx.
//!
//! `dcol` is formed in blocks of 24 pixels and groups of 3 taps (a 3×3-vector tile: 9
//! accumulators, 3 dY vectors and a broadcast weight in the 16 ymm registers), summing the
//! output channels in order, in passes of at most [`DCOL_CHANNEL_GROUP`] channels. The fold
//! sums the taps that land on each input pixel in (i, j) order: for stride 1 eight pixels at
//! a time in registers ([`fold_stride1`]); for a stride-1 "same" convolution as whole shifted
//! rows over zeroed margins, with no masks ([`FlatFold`]); otherwise with the scalar
//! `col2im_channel`. The kernel reads all co planes of dY side by side and is bound by
//! streaming them from memory, so it prefetches every plane [`DCOL_PREFETCH`] pixels ahead.

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::{row_stride, FlatFold};
use crate::conv::unfold::col2im_channel;
use crate::conv::{with_scratch, Geo, THIN_MAX_K};
use crate::simd::mask;

/// Pixels ahead that [`dcol_tile`] prefetches in each dY plane (~2.7 blocks of 24).
const DCOL_PREFETCH: usize = 64;

/// Most dY planes one pass of [`dcol_image_tiled`] reads side by side: fewer interleaved
/// streams per pass, each longer, suit the prefetchers and DRAM pages better.
const DCOL_CHANNEL_GROUP: usize = 32;

/// Rows `k0..k0+KG` of `dcol` at pixels `o..o+8·NV`: `dcol_k = Σ_c w[c,k]·dY[c]` with
/// KG·NV accumulators in registers over the channels `chans = c0..c1` in order (KG
/// broadcasts and NV loads per KG·NV FMAs), starting from zero for `c0 = 0` and else from
/// the sums the previous channel group stored (the same chain of FMAs, so the same bits).
/// `last` masks the final vector. `pf` prefetches this block's successor in every plane
/// of the group (the first row group of a block only); past the end of the plane, the
/// plane one group on (the next group's, or the next image's).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dcol_tile<const KG: usize, const NV: usize>(
    wp: *const f32,
    k: usize,
    k0: usize,
    dy: &[f32],
    p: usize,
    chans: (usize, usize),
    o: usize,
    last: Option<__m256i>,
    pf: bool,
    op: *mut f32,
    ps: usize,
) {
    let dp = dy.as_ptr();
    let (c0, c1) = chans;
    let mut a = [[_mm256_setzero_ps(); NV]; KG];
    if c0 > 0 {
        for (r, row) in a.iter_mut().enumerate() {
            for (v, acc) in row.iter_mut().enumerate() {
                *acc = _mm256_loadu_ps(op.add((k0 + r) * ps + o + 8 * v));
            }
        }
    }
    for c in c0..c1 {
        let src = dp.add(c * p + o);
        if pf {
            // The same plane DCOL_PREFETCH pixels on, or the next image's plane c
            // (dY streams from DRAM; the hardware prefetchers do not follow co
            // interleaved streams).
            let ahead = o + DCOL_PREFETCH;
            let at = if ahead < p {
                c * p + ahead
            } else {
                (c + c1 - c0) * p + ahead - p
            };
            if at < dy.len() {
                _mm_prefetch::<_MM_HINT_T0>(dp.add(at) as *const i8);
                if NV > 2 && at + 16 < dy.len() {
                    _mm_prefetch::<_MM_HINT_T0>(dp.add(at + 16) as *const i8);
                }
            }
        }
        let mut d = [_mm256_setzero_ps(); NV];
        for (v, dv) in d.iter_mut().enumerate() {
            *dv = match last {
                Some(m) if v == NV - 1 => _mm256_maskload_ps(src.add(8 * v), m),
                _ => _mm256_loadu_ps(src.add(8 * v)),
            };
        }
        for (r, row) in a.iter_mut().enumerate() {
            let wv = _mm256_broadcast_ss(&*wp.add(c * k + k0 + r));
            for (acc, dv) in row.iter_mut().zip(d) {
                *acc = _mm256_fmadd_ps(wv, dv, *acc);
            }
        }
    }
    for (r, row) in a.iter().enumerate() {
        for (v, acc) in row.iter().enumerate() {
            _mm256_storeu_ps(op.add((k0 + r) * ps + o + 8 * v), *acc);
        }
    }
}

/// `dcol[K×PS] = w[co×K]ᵀ·dY[co×P]` for one image (tail columns unspecified): blocks of
/// 24 pixels (then single vectors, the last one masked), each in row groups of three:
/// a 3×3-vector register tile ([`dcol_tile`]: 9 accumulators, 3 dY vectors and a
/// broadcast weight fit the 16 ymm registers; a 3×4 tile would spill).
/// The block's dY (co × 96 B) comes from memory for the first row group and from L1 for
/// the others. The channels run in passes of at most [`DCOL_CHANNEL_GROUP`]; the sum over
/// channels runs in order, from zero, in registers within a pass.
///
/// `dy` runs on past this image: the b-th 24-pixel block (counted over the passes) also
/// prefetches one line of the b-th 4 KB page of the next image's dY, which is most often
/// this thread's next. Those pages' walks then happen one at a time over this image, not
/// all together when the next image starts (the forward's `PAGE_AHEAD`, for loads).
/// 28×28: 32 blocks a pass for 25 (student) or 49 (teacher, two passes) pages.
#[target_feature(enable = "avx2,fma")]
unsafe fn dcol_image_tiled(
    k: usize,
    w: &[f32],
    dy: &[f32],
    p: usize,
    co: usize,
    dcol: &mut [f32],
    ps: usize,
) {
    debug_assert!(dcol.len() >= (k - 1) * ps + row_stride(p) && w.len() >= co * k);
    debug_assert!(dy.len() >= co * p);
    let (wp, op) = (w.as_ptr(), dcol.as_mut_ptr());
    let gsize = co.div_ceil(co.div_ceil(DCOL_CHANNEL_GROUP));
    for c0 in (0..co).step_by(gsize) {
        let ch = (c0, (c0 + gsize).min(co));
        macro_rules! groups {
            ($nv:literal, $o:expr, $last:expr) => {
                for k0 in (0..k).step_by(3) {
                    let pf = k0 == 0;
                    match k - k0 {
                        1 => dcol_tile::<1, $nv>(wp, k, k0, dy, p, ch, $o, $last, pf, op, ps),
                        2 => dcol_tile::<2, $nv>(wp, k, k0, dy, p, ch, $o, $last, pf, op, ps),
                        _ => dcol_tile::<3, $nv>(wp, k, k0, dy, p, ch, $o, $last, pf, op, ps),
                    }
                }
            };
        }
        let mut o = 0;
        while o + 24 <= p {
            // Block b touches page b of the next image's dY (see the doc above).
            let b = (c0 / gsize) * (p / 24) + o / 24;
            let at = co * p + b * 1024;
            if b * 1024 < co * p && at < dy.len() {
                _mm_prefetch::<_MM_HINT_T0>(dy.as_ptr().add(at) as *const i8);
            }
            groups!(3, o, None);
            o += 24;
        }
        while o + 8 <= p {
            groups!(1, o, None);
            o += 8;
        }
        if o < p {
            groups!(1, o, Some(mask::first(p - o)));
        }
    }
}

/// Folds one input channel's `kh·kw` rows of `dcol` (rows `ps` floats apart) into its
/// plane `dx` (overwritten), for stride 1: `dx[y, x] = Σ_(i,j) dcol_ij[y+ph−i, x+pw−j]` over
/// the taps that land inside the output. Per 8 pixels of an input row the taps are summed
/// in registers (masked loads where a tap's shifted window leaves the output row) and
/// stored once, instead of `kh·kw` scalar read-modify-write passes over the plane. The
/// sum runs over the taps in (i, j) order, the same as [`col2im_channel`], whose zeroed
/// start makes its first add exact, so both give the same bits.
#[target_feature(enable = "avx2,fma")]
unsafe fn fold_stride1(g: &Geo, dcol: &[f32], ps: usize, dx: &mut [f32]) {
    debug_assert!(g.sh == 1 && g.sw == 1);
    debug_assert!(dcol.len() >= g.kh * g.kw * ps && dx.len() >= g.h * g.w);
    let (ow, w) = (g.ow as isize, g.w as isize);
    let dp = dcol.as_ptr();
    for x0 in (0..g.w).step_by(8) {
        let xi = x0 as isize;
        // Per tap column j, lane l reads output column ox = x0 + l + pw − j, kept where
        // 0 ≤ ox < ow and the pixel x0 + l < w (kw ≤ K ≤ THIN_MAX_K masks).
        let mut masks = [_mm256_setzero_si256(); THIN_MAX_K];
        for (j, m) in masks.iter_mut().enumerate().take(g.kw) {
            let shift = g.pw as isize - j as isize;
            *m = mask::window(-shift - xi, (ow - shift - xi).min(w - xi));
        }
        let store_mask = mask::window(0, w - xi);
        for y in 0..g.h {
            let mut acc = _mm256_setzero_ps();
            for i in 0..g.kh {
                // Output row oy = y + ph − i, if inside the output.
                let oy = (y + g.ph) as isize - i as isize;
                if oy < 0 || oy >= g.oh as isize {
                    continue;
                }
                for (j, &m) in masks.iter().enumerate().take(g.kw) {
                    let row = dp.add((i * g.kw + j) * ps);
                    // Masked-off lanes are not read, so the (possibly out-of-row) start
                    // address is only formed, never dereferenced there.
                    let src = row.wrapping_offset(oy * ow + xi + g.pw as isize - j as isize);
                    acc = _mm256_add_ps(acc, _mm256_maskload_ps(src, m));
                }
            }
            let dst = dx.as_mut_ptr().add(y * g.w + x0);
            if x0 + 8 <= g.w {
                _mm256_storeu_ps(dst, acc);
            } else {
                _mm256_maskstore_ps(dst, store_mask, acc);
            }
        }
    }
}

impl FlatFold {
    /// `dx[P] = Σ_taps shifted rows`, taps in (i, j) order.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn fold(&self, g: &Geo, rows: &[f32], dx: &mut [f32]) {
        let p = g.p();
        debug_assert!(rows.len() >= g.kh * g.kw * self.rs && dx.len() >= p);
        let mut start = [0usize; THIN_MAX_K];
        for (t, s) in start.iter_mut().enumerate().take(g.kh * g.kw) {
            let (i, j) = (t / g.kw, t % g.kw);
            // front + (ph − i)·ow + (pw − j) ≥ 0 since front ≥ ph·ow + pw.
            *s = t * self.rs + self.front + (g.ph * g.ow + g.pw) - (i * g.ow + j);
        }
        let taps = &start[..g.kh * g.kw];
        let rp = rows.as_ptr();
        let full = p / 8;
        for v in 0..full {
            let mut acc = _mm256_setzero_ps();
            for &s in taps {
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(rp.add(s + 8 * v)));
            }
            _mm256_storeu_ps(dx.as_mut_ptr().add(8 * v), acc);
        }
        if !p.is_multiple_of(8) {
            let mut acc = _mm256_setzero_ps();
            for &s in taps {
                acc = _mm256_add_ps(acc, _mm256_loadu_ps(rp.add(s + 8 * full)));
            }
            _mm256_maskstore_ps(dx.as_mut_ptr().add(8 * full), mask::first(p % 8), acc);
        }
    }
}

/// Input gradient (dx overwritten).
pub(in crate::conv) fn backward_input(g: &Geo, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (k, p) = (g.k(), g.p());
    if g.sh == 1 && g.sw == 1 && g.oh == g.h && g.ow == g.w {
        let fl = FlatFold::new(g);
        dx.par_chunks_mut(g.in_image())
            .enumerate()
            .for_each(|(n, dxn)| {
                let dyn_ = &dy[n * g.out_image()..];
                with_scratch(k * fl.rs, |dcol| {
                    // SAFETY: AVX2+FMA checked by the caller; dcol holds k rows of rs.
                    unsafe { dcol_image_tiled(k, w, dyn_, p, g.co, &mut dcol[fl.front..], fl.rs) }
                    let per = g.kh * g.kw * fl.rs;
                    for (d, r) in dxn.chunks_exact_mut(p).zip(dcol.chunks_exact_mut(per)) {
                        fl.clear_unused(g, r);
                        // SAFETY: AVX2+FMA checked by the caller; r holds kh·kw rows.
                        unsafe { fl.fold(g, r, d) }
                    }
                })
            });
        return;
    }
    let ps = row_stride(p);
    let per = g.kh * g.kw * ps;
    dx.par_chunks_mut(g.in_image())
        .enumerate()
        .for_each(|(n, dxn)| {
            // Image n's dY and everything after it (read only for prefetching).
            let dyn_ = &dy[n * g.out_image()..];
            with_scratch(k * ps, |dcol| {
                // SAFETY: AVX2+FMA checked by the caller; lengths as asserted above.
                unsafe { dcol_image_tiled(k, w, dyn_, p, g.co, dcol, ps) }
                for (d, r) in dxn.chunks_exact_mut(g.h * g.w).zip(dcol.chunks_exact(per)) {
                    if g.sh == 1 && g.sw == 1 {
                        // SAFETY: AVX2+FMA checked by the caller; r holds kh·kw rows.
                        unsafe { fold_stride1(g, r, ps, d) }
                    } else {
                        col2im_channel(g, r, d, ps);
                    }
                }
            })
        });
}
