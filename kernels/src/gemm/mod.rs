//! GEMM: `C = op(A)·op(B)` with a fused epilogue (accumulate, bias, ReLU).
//!
//! # Algorithm (BLIS / Goto)
//!
//! ```text
//! for jc in 0..n step NC                      (B panel: KC×NC, lives in L3, shared by threads)
//!   for pc in 0..k step KC
//!     pack op(B)[pc.., jc..] into NR-wide slivers        (parallel over slivers)
//!     for each macro-tile (MC rows × a run of NR slivers)  (parallel: rayon over tiles)
//!       pack op(A)[ic.., pc..] into MR-tall slivers       (thread-local buffer, stays in L2)
//!       for jr in slivers of B                            (one KC×NR sliver: stays in L1)
//!         for ir in slivers of A                          (streamed from L2)
//!           microkernel: MR×NR tile of C += Σ_p a[:,p] ⊗ b[p,:], kept in registers
//! ```
//!
//! Packing (`pack.rs`) makes every operand read of the microkernel (`microkernel.rs`)
//! unit-stride and aligned, whatever the transposes: `Trans::N`/`Trans::T` only change how the
//! packers gather, so no transposed copy of A or B is ever made. Slivers are zero-padded to
//! MR/NR, so the microkernel always runs a full tile; edge tiles go through a small stack
//! buffer and only the valid part is copied out, or, on AVX-512, store through lane masks
//! from a kernel of just their rows and vectors. A single row against a transposed B, and an
//! empty k, skip all of this (`gemv.rs`). A caller that produces B itself can write it in the
//! packed layout directly ([`PackedB`], [`gemm_serial_packed_b_at`]; conv2d's unfold does).
//!
//! # Tiling (per SIMD level, from the cache sizes read at run time: [`blocking`])
//!
//! - **MR×NR = 14×32 (AVX-512), 6×16 (AVX2+FMA, NEON, scalar).** AVX-512 has 32 zmm
//!   registers: 28 accumulators, 2 for the B row, 1 for the broadcast A value. AVX2 has 16 ymm
//!   registers: 12 accumulators, 2 for B, 1 for A. Each k step is 28 (12) FMAs against 2 vector
//!   loads and 14 (6) broadcasts, so two FMA pipes stay fed without the loads becoming the
//!   limit, and the independent accumulators cover FMA latency (4 cycles × 2 pipes = 8
//!   needed). 6×16 suits NEON too (24 of its 32 q registers, `fmla` by lane). The packed
//!   layout follows the level's tile.
//! - **KC**: the largest multiple of 64 (at most 512) with one packed B sliver plus one A
//!   sliver ((MR+NR)×KC×4 B) in ¾ of L1d, so both stay in L1 across the ir loop, and KC is
//!   long enough to amortise loading/storing the C tile (256 for AVX2 and 128 for AVX-512 at
//!   a 32 KiB L1d; KC from 192 to 512 measured the same on AVX2). A problem taller than one
//!   MC block uses `KC_DEEP` = 512 instead: fewer passes over C beat an L1-resident B
//!   sliver there, while the conv GEMMs (one row block) lose with it (docs/performance.md).
//!   Each call cuts k into blocks of equal depth up to KC.
//! - **MC**: the packed A block (MC×KC×4 B) in ⅜ of L2, next to the streaming B slivers (a
//!   multiple of MR; 192 for AVX2 at 512 KiB); the real MC is chosen per call so blocks come
//!   out even.
//! - **NC**: the packed B panel (KC×NC×4 B) in a tenth of L3, shared by all threads (a multiple
//!   of 512; 3072 for AVX2 at 32 MiB).
//!
//! Where the cache sizes cannot be read, [`crate::simd::CacheSizes::FALLBACK`] gives the AVX2
//! blocking 256 / 192 / 3072.
//!
//! # Parallelism
//!
//! Rayon over macro-tiles in both dimensions: the m range is cut into MC blocks and the B
//! panel into runs of NR slivers, aiming at ≥ 4 tiles per thread, so a small-m problem
//! (m = 64, say) still feeds every thread. Tiles write disjoint parts of C. When m fits one
//! MC block and k spans several KC blocks (conv weight gradients: m = out channels, k = pixels)
//! each tile instead packs its own B slivers and runs the whole k loop: with one row block
//! that duplicates nothing and needs one fork/join per call instead of two per KC block.
//! Problems below [`PARALLEL_MIN_FLOPS`] run on the caller's thread. Every C element sums its
//! k terms in the same order whatever the tiling, so results do not depend on thread count.
//!
//! # Epilogue
//!
//! Fused into the microkernel's store: the first KC block loads C only when accumulating, later
//! blocks always add to C, and the last block adds the bias and applies ReLU while the tile is
//! still in registers. So `C = relu(C_old? + A·B + bias)`.
//!
//! # What bounds it
//!
//! The microkernel is bound by the two FMA pipes (32 flop/cycle/core with 256-bit vectors, 64
//! with 512-bit ones on a CPU that runs them at full width); what it loses to that is the
//! per-tile C load/store and loop overhead, so it prefetches the C tile before the k loop. Outside the microkernel the losses are packing (A is copied once per NC panel
//! and per column run, B once: k·n copies against 2·m·n·k flops, so it dominates when m is
//! small), load imbalance and fork/join. Small or thin problems (k or n of a few dozen) are
//! bound by packing and C traffic instead.

mod gemv;
mod microkernel;
mod pack;
#[cfg(target_arch = "x86_64")]
mod pack_avx512;

use std::ops::Range;

use rayon::prelude::*;

use crate::simd::{self, CacheSizes, SimdLevel};
use crate::{Bias, Epilogue, Trans};
use gemv::{epilogue_only, gemv_rows};
use microkernel::{
    edge_tile, microkernel, partial_tile, Kernel, TileEp, MR_AVX2, MR_AVX512, NR_AVX2, NR_AVX512,
};
pub(crate) use pack::{aligned, ALIGN_PAD};
use pack::{pack_a, pack_b_panel, with_buf, PACK_A, PACK_B};

/// KC for problems taller than one MC block (1024³, say). There every KC block is a pass over
/// all of C (too big for L2, and at a power-of-two row length its rows fight over a few L1
/// sets) and a B pack with two fork/joins; halving the passes is worth more than keeping the
/// B sliver in L1 (it streams from L2 instead). Shorter problems keep the L1-sized KC: their
/// B sliver is reused by every A sliver of the one row block.
const KC_DEEP: usize = 512;

/// Widest column run of a tile that packs its own B (512 KiB at KC = 256: stays in L2).
const PRIVATE_NC: usize = 512;

/// The register tile and cache blocking the GEMM uses at one SIMD level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Blocking {
    pub level: SimdLevel,
    /// Microkernel tile: rows × columns of C per register block.
    pub mr: usize,
    pub nr: usize,
    /// Depth of one packed block (B sliver KC×NR and A sliver MR×KC stay in L1).
    pub kc: usize,
    /// Most rows of one packed A block (MC×KC stays in L2).
    pub mc: usize,
    /// Columns of one packed B panel (KC×NC is shared from L3).
    pub nc: usize,
    /// The cache sizes it was derived from.
    pub caches: CacheSizes,
}

impl Blocking {
    /// The blocking of an `mr×nr` tile for the given caches (see the module header).
    pub fn derive(level: SimdLevel, mr: usize, nr: usize, caches: CacheSizes) -> Blocking {
        let bytes_per_depth = (mr + nr) * 4;
        let kc_fit = caches.l1d * 3 / 4 / bytes_per_depth;
        let kc = (kc_fit / 64 * 64).clamp(64, 512);
        let mc = (caches.l2 * 3 / 8 / (kc * 4) / mr * mr).clamp(mr, 4096 / mr * mr);
        let nc = (caches.l3 / 10 / (kc * 4) / 512 * 512).clamp(512, 16384);
        Blocking {
            level,
            mr,
            nr,
            kc,
            mc,
            nc,
            caches,
        }
    }
}

impl std::fmt::Display for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: tile {}×{}, KC {} ({} past one MC block), MC {}, NC {} (from {})",
            self.level.name(),
            self.mr,
            self.nr,
            self.kc,
            self.kc.max(KC_DEEP),
            self.mc,
            self.nc,
            self.caches
        )
    }
}

/// The blocking [`gemm_at`] uses at `level` on this machine (a level the CPU cannot run gets
/// the scalar kernel's).
pub fn blocking(level: SimdLevel) -> Blocking {
    let (_, mr, nr, _) = microkernel(level);
    let level = if level.is_supported() {
        level
    } else {
        SimdLevel::Scalar
    };
    Blocking::derive(level, mr, nr, simd::cache_sizes())
}

type PackA = fn(Trans, &[f32], usize, usize, usize, usize, usize, usize, &mut [f32]);
type PackB = fn(Trans, &[f32], usize, usize, usize, usize, usize, usize, &mut [f32], usize);

/// A level's microkernel, its packers and its blocking.
#[derive(Clone, Copy)]
struct Plan {
    kern: Kernel,
    /// The kernel stores partial tiles itself (masked) instead of going through [`edge_tile`].
    masked_tails: bool,
    /// The level, for the kernels of tiles cut short by the matrix edge ([`partial_tile`]).
    level: SimdLevel,
    pack_a: PackA,
    pack_b: PackB,
    mr: usize,
    nr: usize,
    kc: usize,
    mc: usize,
    nc: usize,
}

impl Plan {
    fn new(level: SimdLevel) -> Plan {
        let (kern, mr, nr, masked_tails) = microkernel(level);
        let Blocking { kc, mc, nc, .. } = Blocking::derive(level, mr, nr, simd::cache_sizes());
        let (pack_a, pack_b): (PackA, PackB) = match (mr, nr) {
            (MR_AVX512, NR_AVX512) => (pack_a::<MR_AVX512>, pack_b_panel::<NR_AVX512>),
            (MR_AVX2, NR_AVX2) => (pack_a::<MR_AVX2>, pack_b_panel::<NR_AVX2>),
            _ => unreachable!("no packers for a {mr}×{nr} tile"),
        };
        Plan {
            kern,
            masked_tails,
            level,
            pack_a,
            pack_b,
            mr,
            nr,
            kc,
            mc,
            nc,
        }
    }
}
/// Below this many flops (2·m·n·k; ~8 µs of one core) a call stays on the caller's thread:
/// waking workers and joining would cost about as much as the split saves. Callers that run
/// many GEMMs in parallel themselves (conv2d over images) key off the same figure.
pub const PARALLEL_MIN_FLOPS: f64 = 1.0e6;

/// The GEMM problem: `C[m×n] = op(A)·op(B)`, A dense as m×k (`N`) or k×m (`T`), B as k×n or n×k.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GemmShape {
    pub ta: Trans,
    pub tb: Trans,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// `C[m×n] = op(A)·op(B)` then the epilogue. `op(A)` is m×k: A is stored dense row-major as
/// m×k (`Trans::N`) or k×m (`Trans::T`); likewise B as k×n or n×k. C is dense m×n.
pub fn gemm(shape: GemmShape, a: &[f32], b: &[f32], c: &mut [f32], ep: Epilogue) {
    gemm_at(simd::level(), shape, a, b, c, ep)
}

/// [`gemm`] on an explicit SIMD path. A level the CPU cannot run falls back to scalar.
pub fn gemm_at(
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    gemm_impl(level, shape, a, b, c, ep, true)
}

/// [`gemm_at`] entirely on the calling thread, whatever its size: for callers that run
/// several GEMMs in parallel themselves (the chunks of a conv2d), where a GEMM that forks
/// would nest, and pay a fork/join per KC block on problems with few tiles.
pub fn gemm_serial_at(
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    gemm_impl(level, shape, a, b, c, ep, false)
}

fn gemm_impl(
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
    parallel: bool,
) {
    gemm_plan(Plan::new(level), level, shape, a, b, c, ep, parallel, None)
}

/// The depth of one KC block of a problem with `m` rows and depth `k` (see the module header).
fn kc_blocks(plan: &Plan, m: usize, k: usize) -> usize {
    // More rows than one MC block: every KC block re-reads and re-writes all of C and pays
    // a pack and two fork/joins, so the deepest KC pays off there (see `KC_DEEP`).
    let kc_limit = if m > plan.mc {
        plan.kc.max(KC_DEEP)
    } else {
        plan.kc
    };
    // KC blocks of equal depth: k = 576 in blocks of at most 512 runs as 2 × 288, not as
    // 512 + a 64-deep block that pays a whole C tile load and store for little work.
    k.div_ceil(k.div_ceil(kc_limit).max(1)).max(1)
}

/// The layout of a B operand that its producer writes straight into the GEMM's packed slivers
/// ([`gemm_serial_packed_b_at`]): a conv2d's unfold or gather then writes B once, instead of
/// into a dense matrix that the GEMM would copy into slivers again.
///
/// B (k×n) is cut into the KC blocks the GEMM uses for this shape; block `b` starts at
/// `b·KC·n_pad` floats and holds `n_pad / NR` slivers of `kc_b × NR` (depth-major), so
/// element `(kk, j)` lies at `b·KC·n_pad + (j / NR)·NR·kc_b + (kk − b·KC)·NR + j mod NR`.
/// Columns `n..n_pad` must be zero ([`PackedB::zero_padding`]).
#[derive(Clone, Copy, Debug)]
pub struct PackedB {
    nr: usize,
    k: usize,
    n: usize,
    n_pad: usize,
    kc: usize,
}

impl PackedB {
    /// The layout for `C[m×n] = op(A)·B[k×n]` at `level`, or `None` where the GEMM would cut
    /// B into several column panels (n > NC) or `k` or `n` is zero.
    pub fn new(level: SimdLevel, m: usize, n: usize, k: usize) -> Option<PackedB> {
        let plan = Plan::new(level);
        if n == 0 || k == 0 || n > plan.nc {
            return None;
        }
        Some(PackedB {
            nr: plan.nr,
            k,
            n,
            n_pad: n.div_ceil(plan.nr) * plan.nr,
            kc: kc_blocks(&plan, m, k),
        })
    }

    /// Floats the packed operand takes.
    pub fn len(&self) -> usize {
        self.k * self.n_pad
    }

    /// Never true: a layout exists only for a non-empty B.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes `src` as row `kk` of B from column `j` on (`j + src.len() ≤ n`).
    pub fn write_row(&self, dst: &mut [f32], kk: usize, j: usize, src: &[f32]) {
        debug_assert!(kk < self.k && j + src.len() <= self.n);
        let (nr, blk) = (self.nr, kk / self.kc);
        let kc_b = self.kc.min(self.k - blk * self.kc);
        let base = blk * self.kc * self.n_pad + (kk - blk * self.kc) * nr;
        let (mut j, mut src) = (j, src);
        while !src.is_empty() {
            // One sliver's part of the row is contiguous: NR floats at this depth.
            let (t, c) = (j / nr, j % nr);
            let run = (nr - c).min(src.len());
            let at = base + t * nr * kc_b + c;
            dst[at..at + run].copy_from_slice(&src[..run]);
            (j, src) = (j + run, &src[run..]);
        }
    }

    /// Zeroes columns `n..n_pad` of every row (the last sliver's padding).
    pub fn zero_padding(&self, dst: &mut [f32]) {
        if self.n == self.n_pad {
            return;
        }
        let (nr, t) = (self.nr, self.n / self.nr);
        for blk in 0..self.k.div_ceil(self.kc) {
            let kc_b = self.kc.min(self.k - blk * self.kc);
            let sliver = blk * self.kc * self.n_pad + t * nr * kc_b;
            for p in 0..kc_b {
                dst[sliver + p * nr + self.n % nr..sliver + (p + 1) * nr].fill(0.0);
            }
        }
    }
}

/// [`gemm_serial_at`] with B already packed in the [`PackedB`] layout `layout` (made for the
/// same level, m, n and k): `C[m×n] = op(A)·B`, on the calling thread. Gives the same bits as
/// [`gemm_serial_at`] on the dense B.
pub fn gemm_serial_packed_b_at(
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    layout: &PackedB,
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    let GemmShape { m, n, k, .. } = shape;
    let plan = Plan::new(level);
    assert!(
        layout.n == n
            && layout.k == k
            && layout.nr == plan.nr
            && layout.kc == kc_blocks(&plan, m, k),
        "gemm: B was packed for another shape"
    );
    assert!(b.len() >= layout.len(), "gemm: packed B too short");
    let shape = GemmShape {
        tb: Trans::N,
        ..shape
    };
    gemm_plan(plan, level, shape, a, &[], c, ep, false, Some((layout, b)))
}

/// The driver: checks, the degenerate shapes, then the blocked loops of the module header.
#[allow(clippy::too_many_arguments)]
fn gemm_plan(
    plan: Plan,
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
    parallel: bool,
    packed_b: Option<(&PackedB, &[f32])>,
) {
    let GemmShape { ta, tb, m, n, k } = shape;
    assert!(
        a.len() >= m * k && (packed_b.is_some() || b.len() >= k * n) && c.len() >= m * n,
        "gemm: operand too short"
    );
    match ep.bias {
        Bias::None => {}
        Bias::PerRow(bias) => assert!(bias.len() >= m, "gemm: per-row bias shorter than m"),
        Bias::PerCol(bias) => assert!(bias.len() >= n, "gemm: per-col bias shorter than n"),
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // Empty product: C = relu(C? + bias).
        epilogue_only(m, n, &mut c[..m * n], ep);
        return;
    }
    if m == 1 && tb == Trans::T && packed_b.is_none() {
        // A single row against a row-major [n, k] matrix (a linear layer at batch 1): n dot
        // products over contiguous rows. Packing B would copy all of it for one use; this
        // streams it once, so batch-1 inference runs at memory bandwidth.
        gemv_rows(level, n, k, &a[..k], b, &mut c[..n], ep, parallel);
        return;
    }
    let Plan {
        mr,
        nr,
        mc: mc_max,
        nc: nc_max,
        ..
    } = plan;
    let kc_max = kc_blocks(&plan, m, k);
    let threads = if parallel && 2.0 * (m * n) as f64 * k as f64 >= PARALLEL_MIN_FLOPS {
        rayon::current_num_threads()
    } else {
        1
    };
    let cp = SendPtr(c.as_mut_ptr());

    let step = |pc: usize, jc: usize, nc: usize| {
        let kc = kc_max.min(k - pc);
        Step {
            plan,
            ta,
            a,
            m,
            k,
            n,
            pc,
            kc,
            jc,
            nc,
            c: cp,
            load_c: ep.accumulate || pc > 0,
            last: pc + kc == k,
            ep,
        }
    };

    if threads > 1 && m <= mc_max && k > kc_max {
        // Short and deep (the weight gradient of a conv, say): one row block, many KC blocks.
        // Each tile owns a run of columns for the whole k loop and packs its own B slivers,
        // which costs nothing extra with a single row block and needs one fork/join per call
        // instead of two per KC block.
        let n_sl = n.div_ceil(nr);
        let grid = Grid::new(m, mr, mc_max, n_sl, threads, PRIVATE_NC / nr, false);
        (0..grid.tiles())
            .into_par_iter()
            .with_max_len(1)
            .for_each(|t| {
                let (ms, ns) = grid.ranges(t);
                if ms.is_empty() || ns.is_empty() {
                    return;
                }
                let (j0, j1) = (ns.start * nr, (ns.end * nr).min(n));
                with_buf(&PACK_B, |bbuf| {
                    for pc in (0..k).step_by(kc_max) {
                        let st = step(pc, j0, j1 - j0);
                        let bpack = bbuf.get(ns.len() * nr * st.kc);
                        (plan.pack_b)(tb, b, k, n, pc, st.kc, j0, j1 - j0, bpack, 1);
                        st.block(ms.clone(), 0..ns.len(), bpack);
                    }
                });
            });
        return;
    }

    // The BLIS order: one packed B panel per (jc, pc), shared by every tile.
    with_buf(&PACK_B, |bbuf_all| {
        for jc in (0..n).step_by(nc_max) {
            let nc = nc_max.min(n - jc);
            let n_sl = nc.div_ceil(nr);
            let grid = Grid::new(m, mr, mc_max, n_sl, threads, n_sl, true);
            for pc in (0..k).step_by(kc_max) {
                let st = step(pc, jc, nc);
                let bbuf: &[f32] = match packed_b {
                    // One panel (PackedB::new checked n ≤ NC): block pc starts at pc·n_pad.
                    Some((_, pk)) => &pk[pc * n_sl * nr..][..n_sl * nr * st.kc],
                    None => {
                        let bbuf = bbuf_all.get(n_sl * nr * st.kc);
                        (plan.pack_b)(tb, b, k, n, pc, st.kc, jc, nc, bbuf, threads);
                        bbuf
                    }
                };
                let tile = |t: usize| {
                    let (ms, ns) = grid.ranges(t);
                    if !ms.is_empty() && !ns.is_empty() {
                        st.block(ms, ns, bbuf);
                    }
                };
                if threads > 1 {
                    (0..grid.tiles())
                        .into_par_iter()
                        .with_max_len(1)
                        .for_each(tile);
                } else {
                    (0..grid.tiles()).for_each(tile);
                }
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Work decomposition

/// Macro-tile grid of one (jc, pc) step: `mb` blocks of rows × `nb` runs of B slivers. Block
/// boundaries are balanced (sizes differ by at most one sliver) so threads finish together.
struct Grid {
    m_sl: usize,
    mb: usize,
    n_sl: usize,
    nb: usize,
}

impl Grid {
    /// `mr`: the tile height; `mc`: the most rows of one block. `max_tile_sl`: the widest a
    /// tile may be, in NR slivers. `split_m_first`: reach the tile count by cutting rows
    /// before columns.
    fn new(
        m: usize,
        mr: usize,
        mc: usize,
        n_sl: usize,
        threads: usize,
        max_tile_sl: usize,
        split_m_first: bool,
    ) -> Grid {
        let m_sl = m.div_ceil(mr);
        let mut mb = m.div_ceil(mc);
        let mut nb = n_sl.div_ceil(max_tile_sl.max(1));
        if threads > 1 {
            // Aim for ≥ 4 tiles per thread so rayon can balance, keeping tiles ≥ 4 slivers
            // tall and wide. Cutting rows packs each A block once and shares the B panel; a
            // tile that packs its own B wants columns cut instead, or B would be packed once
            // per row block.
            let want = 4 * threads;
            if split_m_first {
                mb = mb.max(want.min(m_sl.div_ceil(4)));
            }
            nb = nb.max(want.div_ceil(mb).min(n_sl.div_ceil(4)));
            if mb * nb < want {
                mb = mb.max(want.div_ceil(nb).min(m_sl));
            }
            // A tile count that is a multiple of the thread count: 9 tiles on 2 threads
            // leave one thread idle for a ninth of the time.
            while !(mb * nb).is_multiple_of(threads) && nb < n_sl {
                nb += 1;
            }
        }
        Grid {
            m_sl,
            mb,
            n_sl,
            nb: nb.max(1),
        }
    }
    fn tiles(&self) -> usize {
        self.mb * self.nb
    }
    /// Row-sliver and column-sliver ranges of tile `t` (either may be empty).
    fn ranges(&self, t: usize) -> (Range<usize>, Range<usize>) {
        let split =
            |total: usize, parts: usize, i: usize| total * i / parts..total * (i + 1) / parts;
        (
            split(self.m_sl, self.mb, t / self.nb),
            split(self.n_sl, self.nb, t % self.nb),
        )
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tiles write disjoint regions of C; the pointer outlives the parallel region.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// Everything one (jc, pc) step needs; `block` runs one macro-tile of it.
struct Step<'a> {
    plan: Plan,
    ta: Trans,
    a: &'a [f32],
    m: usize,
    k: usize,
    n: usize,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    c: SendPtr,
    load_c: bool,
    last: bool,
    ep: Epilogue<'a>,
}

impl Step<'_> {
    /// Row slivers `ms` (of C) × column slivers `ns` (of this step's B panel `bpack`).
    fn block(&self, ms: Range<usize>, ns: Range<usize>, bpack: &[f32]) {
        let Plan {
            kern,
            masked_tails,
            level,
            mr,
            nr,
            ..
        } = self.plan;
        let (ms0, ms1, ns0, ns1) = (ms.start, ms.end, ns.start, ns.end);
        let i0 = ms0 * mr;
        let mc = (ms1 * mr).min(self.m) - i0;
        let kc = self.kc;
        with_buf(&PACK_A, |abuf| {
            let apack = abuf.get((ms1 - ms0) * mr * kc);
            (self.plan.pack_a)(self.ta, self.a, self.m, self.k, i0, mc, self.pc, kc, apack);
            let (row_bias, col_bias, relu) = if self.last {
                match self.ep.bias {
                    Bias::None => (None, None, self.ep.relu),
                    Bias::PerRow(b) => (Some(b), None, self.ep.relu),
                    Bias::PerCol(b) => (None, Some(b), self.ep.relu),
                }
            } else {
                (None, None, false)
            };
            for js in ns0..ns1 {
                let j = self.jc + js * nr;
                let cols = nr.min(self.jc + self.nc - j);
                let bs = &bpack[js * nr * kc..(js + 1) * nr * kc];
                for is in 0..(ms1 - ms0) {
                    let i = i0 + is * mr;
                    let rows = mr.min(self.m - i);
                    let as_ = &apack[is * mr * kc..(is + 1) * mr * kc];
                    // SAFETY: (i, j) is inside C and inside this tile, which no other task
                    // touches; packed slivers hold kc·mr / kc·nr floats; the kernel reads and
                    // writes only `rows × cols` of C and of the biases (the whole tile when
                    // it has no masked stores, and then the tile is full).
                    unsafe {
                        let cptr = self.c.0.add(i * self.n + j);
                        if masked_tails || (rows == mr && cols == nr) {
                            // A tile cut by the edge: the kernel of just its rows and vectors.
                            let kern = if rows < mr || cols < nr {
                                partial_tile(level, rows, cols).unwrap_or(kern)
                            } else {
                                kern
                            };
                            let tep = TileEp {
                                load_c: self.load_c,
                                row_bias: row_bias.map_or(std::ptr::null(), |b| b.as_ptr().add(i)),
                                col_bias: col_bias.map_or(std::ptr::null(), |b| b.as_ptr().add(j)),
                                relu,
                                rows,
                                cols,
                            };
                            kern(kc, as_.as_ptr(), bs.as_ptr(), cptr, self.n, &tep);
                        } else {
                            edge_tile(
                                kern,
                                (mr, nr),
                                kc,
                                as_,
                                bs,
                                cptr,
                                self.n,
                                rows,
                                cols,
                                self.load_c,
                                row_bias.map(|b| &b[i..i + rows]),
                                col_bias.map(|b| &b[j..j + cols]),
                                relu,
                            );
                        }
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::microkernel::kernel_masked_model;
    use super::*;

    /// `plan` on a given tile with the model kernel, blocked as that tile is on this machine.
    fn model_plan<const MR: usize, const NR: usize>(masked_tails: bool) -> Plan {
        let b = Blocking::derive(SimdLevel::Scalar, MR, NR, simd::cache_sizes());
        Plan {
            kern: kernel_masked_model::<MR, NR>,
            masked_tails,
            level: SimdLevel::Scalar,
            pack_a: pack_a::<MR>,
            pack_b: pack_b_panel::<NR>,
            mr: MR,
            nr: NR,
            kc: b.kc,
            mc: b.mc,
            nc: b.nc,
        }
    }

    fn run(plan: Plan, s: GemmShape, a: &[f32], b: &[f32], c0: &[f32], ep: Epilogue) -> Vec<f32> {
        let mut c = c0.to_vec();
        gemm_plan(plan, SimdLevel::Scalar, s, a, b, &mut c, ep, true, None);
        c
    }

    fn fill(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// The AVX-512 tile (14×32, masked tails, its own KC/MC/NC) through the whole driver,
    /// against an f64 reference, with every transpose and epilogue: checks the packers and
    /// the masked-tail contract on any CPU. Thread counts give the same bits.
    #[test]
    fn avx512_tile_layout_matches_reference() {
        let plan = model_plan::<MR_AVX512, NR_AVX512>(true);
        let shapes = [
            (1, 1, 1),
            (13, 31, 33),
            (14, 32, 129),
            (15, 33, 300),
            (29, 65, 127),
            (127, 95, 257),
            (401, 45, 520),
            (30, 700, 900),
        ];
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            for (ta, tb) in [
                (Trans::N, Trans::N),
                (Trans::N, Trans::T),
                (Trans::T, Trans::N),
                (Trans::T, Trans::T),
            ] {
                let s = GemmShape { ta, tb, m, n, k };
                let seed = 100 + si as u64;
                let (a, b, c0) = (
                    fill(m * k, seed),
                    fill(k * n, seed + 1),
                    fill(m * n, seed + 2),
                );
                let (rb, cb) = (fill(m, seed + 3), fill(n, seed + 4));
                let eps = [
                    Epilogue::default(),
                    Epilogue {
                        accumulate: true,
                        bias: Bias::PerRow(&rb),
                        relu: false,
                    },
                    Epilogue {
                        accumulate: true,
                        bias: Bias::PerCol(&cb),
                        relu: true,
                    },
                ];
                for ep in eps {
                    let got = run(plan, s, &a, &b, &c0, ep);
                    for i in 0..m {
                        for j in 0..n {
                            let (mut want, mut mag) = (0.0f64, 0.0f64);
                            for p in 0..k {
                                let av = match ta {
                                    Trans::N => a[i * k + p],
                                    Trans::T => a[p * m + i],
                                };
                                let bv = match tb {
                                    Trans::N => b[p * n + j],
                                    Trans::T => b[j * k + p],
                                };
                                want += av as f64 * bv as f64;
                                mag += (av as f64 * bv as f64).abs();
                            }
                            let mut extra = |x: f32| {
                                want += x as f64;
                                mag += (x as f64).abs();
                            };
                            if ep.accumulate {
                                extra(c0[i * n + j]);
                            }
                            match ep.bias {
                                Bias::PerRow(r) => extra(r[i]),
                                Bias::PerCol(c) => extra(c[j]),
                                Bias::None => {}
                            }
                            if ep.relu {
                                want = want.max(0.0);
                            }
                            let tol = 2.0 * f32::EPSILON as f64 * (k as f64 + 2.0) * mag + 1e-30;
                            let g = got[i * n + j] as f64;
                            assert!(
                                (g - want).abs() <= tol,
                                "{ta:?}{tb:?} m={m} n={n} k={k} C[{i},{j}] = {g}, want {want}"
                            );
                        }
                    }
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(3)
                        .build()
                        .unwrap();
                    assert_eq!(
                        got,
                        pool.install(|| run(plan, s, &a, &b, &c0, ep)),
                        "threads"
                    );
                }
            }
        }
    }

    /// The model is the SIMD kernels' arithmetic: on the AVX2 tile it gives the AVX2 kernel's
    /// bits, masked tails or padded edge tiles alike.
    #[test]
    fn model_kernel_is_bit_exact_with_avx2() {
        if !SimdLevel::Avx2Fma.is_supported() {
            return;
        }
        for masked in [false, true] {
            let plan = model_plan::<MR_AVX2, NR_AVX2>(masked);
            for &(m, n, k) in &[(13, 37, 300), (64, 100, 520), (6, 16, 7)] {
                let s = GemmShape {
                    ta: Trans::N,
                    tb: Trans::T,
                    m,
                    n,
                    k,
                };
                let (a, b, c0, cb) = (fill(m * k, 1), fill(k * n, 2), fill(m * n, 3), fill(n, 4));
                let ep = Epilogue {
                    accumulate: true,
                    bias: Bias::PerCol(&cb),
                    relu: true,
                };
                let want = run(Plan::new(SimdLevel::Avx2Fma), s, &a, &b, &c0, ep);
                assert_eq!(
                    run(plan, s, &a, &b, &c0, ep),
                    want,
                    "m={m} n={n} k={k} masked={masked}"
                );
            }
        }
    }
}
