//! GEMM rung 4 — packed panels and a register-tile microkernel (portable Rust).
//!
//! Change against rung 3: C is no longer updated one row at a time. An MR×NR = 6×16 tile of
//! C is held in local accumulators for a whole KC-deep block and written once, so C traffic
//! drops from one load+store per FMA to one per KC FMAs. To feed the tile, A and B are first
//! copied ("packed") into the order the microkernel reads them:
//!
//! ```text
//! B block KC×NC  →  NR-wide slivers,  sliver s: b[p·NR + c]  = B[pc+p, jc+s·NR+c]
//! A block MC×KC  →  MR-tall slivers,  sliver t: a[p·MR + r]  = A[ic+t·MR+r, pc+p]
//! for each B sliver (KC×NR = 16 KiB: stays in L1)
//!   for each A sliver (streamed from the packed block in L2)
//!     tile[MR×NR] = Σ_p a[p, :] ⊗ b[p, :]        (the microkernel)
//!     C[rows, cols] += tile                      (valid part only)
//! ```
//!
//! Both operands are now read unit-stride and from small, hot buffers, whatever m, n, k are,
//! and slivers are zero-padded so the microkernel always runs a full tile. KC 256 and NC 3072
//! are what the production GEMM derives from this machine's caches (kernels/src/gemm/mod.rs);
//! MC is 96 rather than 192 so rung 7 has more row blocks to share among threads. The
//! microkernel here is plain Rust: the compiler
//! vectorises it with the baseline SIMD only (SSE2 on x86-64, 4 lanes, no FMA), which is what
//! the next rung changes. The blocked driver is shared by rungs 5 and 7.

pub(crate) const MR: usize = 6;
pub(crate) const NR: usize = 16;
pub(crate) const KC: usize = 256;
pub(crate) const MC: usize = 96;
pub(crate) const NC: usize = 3072;

/// `tile[r·NR + s] = Σ_{p<kc} a[p·MR + r] · b[p·NR + s]`.
///
/// Safety contract: `a` holds `kc·MR` and `b` `kc·NR` floats, and the CPU supports the
/// instructions the kernel was compiled for.
pub(crate) type MicroKernel = unsafe fn(usize, &[f32], &[f32], &mut [f32; MR * NR]);

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten.
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    // SAFETY: the portable kernel needs no CPU feature.
    unsafe { packed_gemm(kernel_portable, m, k, n, a, b, c) }
}

fn kernel_portable(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a[..kc * MR]
        .chunks_exact(MR)
        .zip(b[..kc * NR].chunks_exact(NR))
    {
        for r in 0..MR {
            for s in 0..NR {
                acc[r][s] += ap[r] * bp[s];
            }
        }
    }
    for r in 0..MR {
        tile[r * NR..(r + 1) * NR].copy_from_slice(&acc[r]);
    }
}

/// The blocked loops above, single-threaded, with `kernel` as the microkernel.
///
/// Safety: `kernel`'s CPU requirements hold.
pub(crate) unsafe fn packed_gemm(
    kernel: MicroKernel,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) {
    c.fill(0.0);
    let mut b_pack = Vec::new();
    let mut a_pack = Vec::new();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, n, pc, kc, jc, nc, &mut b_pack);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                pack_a(a, k, ic, mc, pc, kc, &mut a_pack);
                let c_rows = &mut c[ic * n..(ic + mc) * n];
                macro_tile(kernel, &a_pack, &b_pack, mc, nc, kc, c_rows, n, jc);
            }
        }
    }
}

/// Packs `B[pc..pc+kc, jc..jc+nc]` as NR-wide slivers, zero past column `jc+nc`.
pub(crate) fn pack_b(
    b: &[f32],
    n: usize,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    dst: &mut Vec<f32>,
) {
    let slivers = nc.div_ceil(NR);
    dst.clear();
    dst.resize(slivers * kc * NR, 0.0);
    for (s, sliver) in dst.chunks_exact_mut(kc * NR).enumerate() {
        let j0 = jc + s * NR;
        let cols = NR.min(jc + nc - j0);
        for (p, row) in sliver.chunks_exact_mut(NR).enumerate() {
            let src = (pc + p) * n + j0;
            row[..cols].copy_from_slice(&b[src..src + cols]);
        }
    }
}

/// Packs `A[ic..ic+mc, pc..pc+kc]` as MR-tall slivers, zero past row `ic+mc`.
pub(crate) fn pack_a(
    a: &[f32],
    k: usize,
    ic: usize,
    mc: usize,
    pc: usize,
    kc: usize,
    dst: &mut Vec<f32>,
) {
    let slivers = mc.div_ceil(MR);
    dst.clear();
    dst.resize(slivers * kc * MR, 0.0);
    for (t, sliver) in dst.chunks_exact_mut(kc * MR).enumerate() {
        let i0 = ic + t * MR;
        let rows = MR.min(ic + mc - i0);
        for r in 0..rows {
            let src = &a[(i0 + r) * k + pc..(i0 + r) * k + pc + kc];
            for (p, v) in src.iter().enumerate() {
                sliver[p * MR + r] = *v;
            }
        }
    }
}

/// Every MR×NR tile of one packed A block against one packed B panel, added into
/// `c_rows` (the block's rows of C; columns from `jc`).
///
/// Safety: `kernel`'s CPU requirements hold.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn macro_tile(
    kernel: MicroKernel,
    a_pack: &[f32],
    b_pack: &[f32],
    mc: usize,
    nc: usize,
    kc: usize,
    c_rows: &mut [f32],
    n: usize,
    jc: usize,
) {
    let mut tile = [0.0f32; MR * NR];
    for (s, b_sliver) in b_pack.chunks_exact(kc * NR).enumerate() {
        let j0 = jc + s * NR;
        let cols = NR.min(jc + nc - j0);
        for (t, a_sliver) in a_pack.chunks_exact(kc * MR).enumerate() {
            let rows = MR.min(mc - t * MR);
            kernel(kc, a_sliver, b_sliver, &mut tile);
            for r in 0..rows {
                let c_row = &mut c_rows[(t * MR + r) * n + j0..][..cols];
                for (cv, tv) in c_row.iter_mut().zip(&tile[r * NR..]) {
                    *cv += tv;
                }
            }
        }
    }
}
