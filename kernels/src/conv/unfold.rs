//! The unfold (im2col) and fold (col2im) of one input plane, shared by the GEMM path and the
//! thin kernels.
//!
//! Unfolding writes the `kh·kw` rows of the column matrix that come from one input channel:
//! row `(i, j)` holds, for every output position, the input pixel that tap `(i, j)` sees (zero
//! in the padding). Folding is the adjoint: every column entry is added back to the pixel it
//! was read from, in a fixed order. For stride 1 both go through a zero-bordered plane on
//! the stack, in which every column row is a set of contiguous runs: the unfold copies the
//! plane in and the runs out, the fold adds the runs in and copies the interior out, with no
//! per-pixel bounds or fills. Both are bound by memory traffic: `K·P` floats
//! per image, small next to the GEMM's `2·co·K·P` flops.

use super::Geo;

/// The output positions `o` in `0..out` whose tap `o·stride + off − pad` lands inside
/// `0..len`, as a half-open range `lo..hi` (empty ranges come back as `lo == hi`).
pub(super) fn valid_range(
    off: usize,
    pad: usize,
    stride: usize,
    len: usize,
    out: usize,
) -> (usize, usize) {
    let lo = if pad > off {
        (pad - off).div_ceil(stride)
    } else {
        0
    };
    let hi = if len + pad > off {
        (len + pad - off).div_ceil(stride)
    } else {
        0
    };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}

/// Largest zero-padded plane (floats) that [`im2col_channel`]'s stride-1 path builds on the
/// stack (16 KB: planes up to 62×62 with padding 1).
pub(super) const PADDED_MAX: usize = 4096;

/// Unfolds one input plane into its `kh·kw` rows of the column matrix (`rows[kh·kw×P]`, rows
/// `rs ≥ P` floats apart; the `rs − P` floats past each row are left untouched).
pub(super) fn im2col_channel(g: &Geo, plane: &[f32], rows: &mut [f32], rs: usize) {
    let padded_len = (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
    if g.sh == 1 && g.sw == 1 && g.ow >= 8 && g.w >= 8 && padded_len <= PADDED_MAX {
        im2col_channel_stride1(g, plane, rows, rs);
        return;
    }
    let mut rows = rows.chunks_mut(rs).map(|r| &mut r[..g.p()]);
    for i in 0..g.kh {
        let (oh_lo, oh_hi) = valid_range(i, g.ph, g.sh, g.h, g.oh);
        for j in 0..g.kw {
            let row = rows.next().expect("im2col: col too short");
            let (ow_lo, ow_hi) = valid_range(j, g.pw, g.sw, g.w, g.ow);
            row[..oh_lo * g.ow].fill(0.0);
            row[oh_hi * g.ow..].fill(0.0);
            for oy in oh_lo..oh_hi {
                let dst = &mut row[oy * g.ow..(oy + 1) * g.ow];
                let src = &plane[(oy * g.sh + i - g.ph) * g.w..][..g.w];
                dst[..ow_lo].fill(0.0);
                dst[ow_hi..].fill(0.0);
                if ow_lo == ow_hi {
                    continue;
                }
                let first = ow_lo * g.sw + j - g.pw;
                if g.sw == 1 {
                    dst[ow_lo..ow_hi].copy_from_slice(&src[first..first + (ow_hi - ow_lo)]);
                } else {
                    for (d, s) in dst[ow_lo..ow_hi]
                        .iter_mut()
                        .zip(src[first..].iter().step_by(g.sw))
                    {
                        *d = *s;
                    }
                }
            }
        }
    }
}

/// Copies `src[..len]` to `dst[..len]` (`len ≥ 8`) as 8-float blocks, the last one ending at
/// `len` (overlapping its neighbour), for every one of `runs` runs `src_step` / `dst_step`
/// floats apart. Blocks outside, runs inside: the compiler turns a loop of contiguous block
/// copies into a `memcpy` call, which costs more than the copy for runs of 14–28 floats.
#[inline(always)]
pub(super) fn copy_runs(
    dst: &mut [f32],
    dst_step: usize,
    src: &[f32],
    src_step: usize,
    runs: usize,
    len: usize,
) {
    debug_assert!(len >= 8);
    let last = len - 8;
    for x0 in (0..last).step_by(8).chain(std::iter::once(last)) {
        for r in 0..runs {
            let s: &[f32; 8] = src[r * src_step + x0..][..8].try_into().unwrap();
            let d: &mut [f32; 8] = (&mut dst[r * dst_step + x0..][..8]).try_into().unwrap();
            *d = *s;
        }
    }
}

/// [`im2col_channel`] for stride 1 (rows of at least 8 outputs): the plane is copied once into
/// a zero-bordered `padded[(h+2ph) × (w+2pw)]` on the stack, where row `(i, j)` of the column
/// matrix at output row `oy` is the contiguous run `padded[oy + i, j .. j + ow]`; no per-pixel
/// bounds or fills.
fn im2col_channel_stride1(g: &Geo, plane: &[f32], rows: &mut [f32], rs: usize) {
    with_padded_plane(g, plane, |padded, wp| {
        for i in 0..g.kh {
            for j in 0..g.kw {
                let row = &mut rows[(i * g.kw + j) * rs..];
                copy_runs(row, g.ow, &padded[i * wp + j..], wp, g.oh, g.ow);
            }
        }
    })
}

/// `buf` zeroed, as floats. The padded planes live in uninitialised stack arrays zeroed over
/// the used part only: a small plane uses a fraction of the 16 KB, and zeroing all of it would
/// cost more than its unfold.
fn zeroed(buf: &mut [std::mem::MaybeUninit<f32>]) -> &mut [f32] {
    for v in buf.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was initialised just above; MaybeUninit<f32> has f32's layout.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<f32>(), buf.len()) }
}

/// Runs `f(padded, wp)` on a zero-bordered copy of `plane`, `padded[(h+2ph) × wp]` with
/// `wp = w+2pw`, on the stack (`(h+2ph)·wp ≤` [`PADDED_MAX`], `w ≥ 8`).
pub(super) fn with_padded_plane<R>(
    g: &Geo,
    plane: &[f32],
    f: impl FnOnce(&[f32], usize) -> R,
) -> R {
    let (wp, hp) = (g.w + 2 * g.pw, g.h + 2 * g.ph);
    let mut buf = [std::mem::MaybeUninit::<f32>::uninit(); PADDED_MAX];
    let padded = zeroed(&mut buf[..hp * wp]);
    copy_runs(&mut padded[g.ph * wp + g.pw..], wp, plane, g.w, g.h, g.w);
    f(padded, wp)
}

/// `dst[..len] += src[..len]` (`len ≥ 8`) as 8-float blocks for every one of `runs` runs,
/// `src_step` / `dst_step` floats apart. The last block ends at `len` and overlaps its
/// neighbour: it is loaded before the other blocks are stored and stored after them, so the
/// overlapped floats are written twice with the same sum `dst + src`.
#[inline(always)]
fn add_runs(
    dst: &mut [f32],
    dst_step: usize,
    src: &[f32],
    src_step: usize,
    runs: usize,
    len: usize,
) {
    debug_assert!(len >= 8);
    let last = len - 8;
    for r in 0..runs {
        let (d, s) = (&mut dst[r * dst_step..][..len], &src[r * src_step..][..len]);
        let mut tail: [f32; 8] = d[last..].try_into().unwrap();
        for (t, v) in tail.iter_mut().zip(&s[last..]) {
            *t += *v;
        }
        for x0 in (0..last).step_by(8) {
            let sb: &[f32; 8] = s[x0..][..8].try_into().unwrap();
            let db: &mut [f32; 8] = (&mut d[x0..][..8]).try_into().unwrap();
            for (a, b) in db.iter_mut().zip(sb) {
                *a += *b;
            }
        }
        d[last..].copy_from_slice(&tail);
    }
}

/// Folds one input channel's `kh·kw` column rows back into its plane: the plane is zeroed,
/// then every column entry is added to the pixel it was read from, in a fixed order (tap by
/// tap, row by row). Rows are `rs ≥ P` floats apart.
pub(super) fn col2im_channel(g: &Geo, rows: &[f32], plane: &mut [f32], rs: usize) {
    let padded_len = (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
    if g.sh == 1 && g.sw == 1 && g.ow >= 8 && g.w >= 8 && padded_len <= PADDED_MAX {
        col2im_channel_stride1(g, rows, plane, rs);
        return;
    }
    plane.fill(0.0);
    let mut rows = rows.chunks(rs).map(|r| &r[..g.p()]);
    for i in 0..g.kh {
        let (oh_lo, oh_hi) = valid_range(i, g.ph, g.sh, g.h, g.oh);
        for j in 0..g.kw {
            let row = rows.next().expect("col2im: col too short");
            let (ow_lo, ow_hi) = valid_range(j, g.pw, g.sw, g.w, g.ow);
            if ow_lo == ow_hi {
                continue;
            }
            let first = ow_lo * g.sw + j - g.pw;
            for oy in oh_lo..oh_hi {
                let src = &row[oy * g.ow + ow_lo..oy * g.ow + ow_hi];
                let dst = &mut plane[(oy * g.sh + i - g.ph) * g.w..][..g.w];
                if g.sw == 1 {
                    for (d, s) in dst[first..first + src.len()].iter_mut().zip(src) {
                        *d += *s;
                    }
                } else {
                    for (d, s) in dst[first..].iter_mut().step_by(g.sw).zip(src) {
                        *d += *s;
                    }
                }
            }
        }
    }
}

/// [`col2im_channel`] for stride 1 (rows of at least 8 outputs): every row is added as whole
/// runs into a zero-bordered `padded[(h+2ph) × (w+2pw)]` on the stack (the adjoint of
/// [`im2col_channel_stride1`]: no per-pixel bounds), then the interior is copied out. Each
/// pixel sums its taps in the same order as the general loop, so the bits are the same.
fn col2im_channel_stride1(g: &Geo, rows: &[f32], plane: &mut [f32], rs: usize) {
    let (wp, hp) = (g.w + 2 * g.pw, g.h + 2 * g.ph);
    let mut buf = [std::mem::MaybeUninit::<f32>::uninit(); PADDED_MAX];
    let padded = zeroed(&mut buf[..hp * wp]);
    for i in 0..g.kh {
        for j in 0..g.kw {
            let row = &rows[(i * g.kw + j) * rs..];
            add_runs(&mut padded[i * wp + j..], wp, row, g.ow, g.oh, g.ow);
        }
    }
    copy_runs(plane, g.w, &padded[g.ph * wp + g.pw..], wp, g.h, g.w);
}
