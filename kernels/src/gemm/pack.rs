//! Packing of the GEMM operands into the microkernel's layout, and the buffers they live in.
//!
//! op(A) is cut into MR-tall slivers (`kc` depths × MR rows, depth-major) and op(B) into
//! NR-wide slivers (`kc` depths × NR columns), zero-padded past the matrix edge, so the
//! microkernel reads both unit-stride and always runs a full tile. The transposes only change
//! the gather: each packer reads its source along the stored rows. Two of the four gathers
//! transpose (A stored row-major, B stored transposed); at the AVX-512 tile they go 16 depths
//! at a time through a transpose in registers (`pack_avx512.rs`).
//!
//! Pack buffers are a thread-local free list of 64-byte aligned buffers, grown on demand, so
//! steady-state calls do not allocate. A buffer is taken off the list for the duration of its
//! use (no borrow is held across user code), so a re-entrant call on the same thread (a rayon
//! worker that steals another GEMM while it waits) simply takes a second buffer.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::Trans;

#[derive(Default)]
pub(super) struct PackBuf(Vec<f32>);

impl PackBuf {
    pub(super) fn get(&mut self, len: usize) -> &mut [f32] {
        if self.0.len() < len + ALIGN_PAD {
            self.0 = vec![0.0; len + ALIGN_PAD];
        }
        aligned(&mut self.0, len)
    }
}

/// Floats a buffer needs beyond `len` so that [`aligned`] can cut `len` of them out.
pub const ALIGN_PAD: usize = 16;

/// `len` floats of `buf` from its first 64-byte boundary (`buf` holds `len + ALIGN_PAD`): the
/// microkernel reads packed operands a cache line per vector.
pub fn aligned(buf: &mut [f32], len: usize) -> &mut [f32] {
    let off = buf.as_ptr().align_offset(64).min(ALIGN_PAD);
    &mut buf[off..off + len]
}

pub(super) type FreeList = RefCell<Vec<PackBuf>>;

thread_local! {
    pub(super) static PACK_A: FreeList = const { RefCell::new(Vec::new()) };
    pub(super) static PACK_B: FreeList = const { RefCell::new(Vec::new()) };
}

pub(super) fn with_buf<R>(
    key: &'static std::thread::LocalKey<FreeList>,
    f: impl FnOnce(&mut PackBuf) -> R,
) -> R {
    let mut buf = key.with(|l| l.borrow_mut().pop()).unwrap_or_default();
    let r = f(&mut buf);
    key.with(|l| l.borrow_mut().push(buf));
    r
}

/// Pack rows `i0..i0+mc`, depths `p0..p0+kc` of op(A) as MR-tall slivers (MR: the level's
/// tile height): sliver s holds
/// `dst[s·MR·kc + p·MR + r] = op(A)[i0 + s·MR + r, p0 + p]`, zero past row m.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_a<const MR: usize>(
    ta: Trans,
    a: &[f32],
    m: usize,
    k: usize,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    debug_assert!(i0 + mc <= m && p0 + kc <= k && a.len() >= m * k);
    debug_assert!(dst.len() == mc.div_ceil(MR) * MR * kc);
    match ta {
        Trans::N => {
            for (s, d) in dst.chunks_exact_mut(MR * kc).enumerate() {
                let r0 = i0 + s * MR;
                let rows = MR.min(i0 + mc - r0);
                // Row-major m×k: each row of the sliver is a contiguous run of kc floats.
                if rows == MR {
                    let done = gather_rows_simd::<MR>(&a[r0 * k + p0..], k, kc, d);
                    let src: [&[f32]; MR] =
                        std::array::from_fn(|r| &a[(r0 + r) * k + p0..(r0 + r) * k + p0 + kc]);
                    for (p, dp) in d.chunks_exact_mut(MR).enumerate().skip(done) {
                        for r in 0..MR {
                            dp[r] = src[r][p];
                        }
                    }
                } else {
                    d.fill(0.0);
                    for r in 0..rows {
                        let src = &a[(r0 + r) * k + p0..(r0 + r) * k + p0 + kc];
                        for (p, &v) in src.iter().enumerate() {
                            d[p * MR + r] = v;
                        }
                    }
                }
            }
        }
        Trans::T => {
            // Stored k×m: walk depth by depth so each read is one contiguous run of mc floats
            // (sliver by sliver would hop between kc rows for every 6 floats).
            let full = mc / MR;
            for p in 0..kc {
                let src = &a[(p0 + p) * m + i0..(p0 + p) * m + i0 + mc];
                for s in 0..full {
                    dst[s * MR * kc + p * MR..][..MR].copy_from_slice(&src[s * MR..][..MR]);
                }
                if full * MR < mc {
                    let rows = mc - full * MR;
                    let d = &mut dst[full * MR * kc + p * MR..][..MR];
                    d[..rows].copy_from_slice(&src[full * MR..]);
                    d[rows..].fill(0.0);
                }
            }
        }
    }
}

/// Pack depths `p0..p0+kc`, columns `j0..j0+nc` of op(B) as NR-wide slivers (NR: the level's
/// tile width): sliver t holds
/// `dst[t·NR·kc + p·NR + c] = op(B)[p0 + p, j0 + t·NR + c]`, zero past column n.
#[allow(clippy::too_many_arguments)]
pub(super) fn pack_b_panel<const NR: usize>(
    tb: Trans,
    b: &[f32],
    k: usize,
    n: usize,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
    threads: usize,
) {
    debug_assert!(j0 + nc <= n && p0 + kc <= k && b.len() >= k * n);
    debug_assert!(dst.len() == nc.div_ceil(NR) * NR * kc);
    let one = |t: usize, d: &mut [f32]| {
        let c0 = j0 + t * NR;
        let cols = NR.min(j0 + nc - c0);
        match tb {
            Trans::N => {
                // Row-major k×n: one depth of the sliver is a contiguous run of NR floats.
                if cols == NR {
                    // Fixed-size copies compile to two vector moves, not a memmove call.
                    for (p, dp) in d.chunks_exact_mut(NR).enumerate() {
                        let src = &b[(p0 + p) * n + c0..][..NR];
                        dp.copy_from_slice(src);
                    }
                } else {
                    for (p, dp) in d.chunks_exact_mut(NR).enumerate() {
                        let src = &b[(p0 + p) * n + c0..][..cols];
                        dp[..cols].copy_from_slice(src);
                        dp[cols..].fill(0.0);
                    }
                }
            }
            Trans::T => {
                // Stored n×k: read each column's kc depths contiguously, write with stride NR
                // (the KC×NR sliver is L1-resident, so the scattered writes are cheap).
                if cols < NR {
                    d.fill(0.0);
                }
                let done = if cols == NR {
                    gather_rows_simd::<NR>(&b[c0 * k + p0..], k, kc, d)
                } else {
                    0
                };
                if done == kc {
                    return;
                }
                for cc in 0..cols {
                    let src = &b[(c0 + cc) * k + p0..(c0 + cc) * k + p0 + kc];
                    for (p, &v) in src.iter().enumerate().skip(done) {
                        d[p * NR + cc] = v;
                    }
                }
            }
        }
    };
    let sliver = NR * kc;
    // Splitting the copy only pays once the panel is big (here ≥ 256 KiB).
    if threads > 1 && kc * nc >= 64 * 1024 {
        dst.par_chunks_mut(sliver * 4)
            .enumerate()
            .for_each(|(g, d4)| {
                for (t, d) in d4.chunks_exact_mut(sliver).enumerate() {
                    one(g * 4 + t, d);
                }
            });
    } else {
        for (t, d) in dst.chunks_exact_mut(sliver).enumerate() {
            one(t, d);
        }
    }
}

/// The first depths of a transposing gather, `dst[p·W + r] = src[r·stride + p]` for `W` rows,
/// done in registers where the level has a transpose for a `W`-row sliver (the AVX-512 tile:
/// 14 rows of A, 32 of B; `pack_avx512.rs`). Returns how many depths it did (a multiple of
/// 16, or 0); the caller gathers the rest.
fn gather_rows_simd<const W: usize>(
    src: &[f32],
    stride: usize,
    kc: usize,
    dst: &mut [f32],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    use super::microkernel::{MR_AVX512, NR_AVX512};
    #[cfg(target_arch = "x86_64")]
    if (W == MR_AVX512 || W == NR_AVX512)
        && kc >= 16
        && crate::simd::SimdLevel::Avx512.is_supported()
    {
        let blocks = kc / 16;
        assert!(src.len() >= (W - 1) * stride + blocks * 16 && dst.len() >= blocks * 16 * W);
        // SAFETY: AVX-512F checked above; the bounds just asserted are the functions' contract.
        unsafe {
            if W == MR_AVX512 {
                super::pack_avx512::gather_14_rows(src.as_ptr(), stride, blocks, dst.as_mut_ptr());
            } else {
                super::pack_avx512::gather_32_rows(src.as_ptr(), stride, blocks, dst.as_mut_ptr());
            }
        }
        return blocks * 16;
    }
    let _ = (src, stride, kc, dst);
    0
}
