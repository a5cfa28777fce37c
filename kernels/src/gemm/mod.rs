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
//! buffer and only the valid part is copied out. A single row against a transposed B, and an
//! empty k, skip all of this (`gemv.rs`).
//!
//! # Tiling (Zen 5: L1d 48 KiB, L2 1 MiB per core, L3 32 MiB shared)
//!
//! - **MR×NR = 6×16.** AVX2 has 16 ymm registers: 6×16 floats = 12 accumulators, plus 2 for
//!   the B row and 1 for the broadcast A value. Each k step is 12 FMAs against 2 vector loads
//!   and 6 broadcasts, so two FMA pipes stay fed without the loads becoming the limit, and 12
//!   independent accumulators cover FMA latency (4 cycles × 2 pipes = 8 needed). The same
//!   shape suits NEON (24 of its 32 q registers as accumulators, `fmla` by lane), so one packed
//!   layout serves every path.
//! - **KC = 256.** One packed B sliver (KC×NR×4 B = 16 KiB) plus one A sliver (6 KiB) stay in
//!   L1 across the ir loop, and KC is long enough to amortise loading/storing the C tile.
//! - **MC ≤ 192.** The packed A block (MC×KC×4 B ≤ 192 KiB) sits comfortably in L2 next to the
//!   streaming B slivers; the real MC is chosen per call so blocks come out even.
//! - **NC = 3072.** The packed B panel (KC×NC×4 B = 3 MiB) is shared by all threads from L3.
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
//! The microkernel is bound by the two 256-bit FMA pipes (32 flop/cycle/core); what it loses
//! to that is the per-tile C load/store and loop overhead, so it prefetches the C tile before
//! the k loop. Outside the microkernel the losses are packing (A is copied once per NC panel
//! and per column run, B once: k·n copies against 2·m·n·k flops, so it dominates when m is
//! small), load imbalance and fork/join. Small or thin problems (k or n of a few dozen) are
//! bound by packing and C traffic instead.

mod gemv;
mod microkernel;
mod pack;

use std::ops::Range;

use rayon::prelude::*;

use crate::simd::{self, SimdLevel};
use crate::{Bias, Epilogue, Trans};
use gemv::{epilogue_only, gemv_rows};
use microkernel::{edge_tile, microkernel, Kernel, TileEp};
use pack::{pack_a, pack_b_panel, with_buf, PACK_A, PACK_B};

/// Microkernel tile height (rows of C per register block).
pub const MR: usize = 6;
/// Microkernel tile width (columns of C per register block).
pub const NR: usize = 16;
const KC: usize = 256;
const MC_MAX: usize = 192;
const NC: usize = 3072;
/// Widest column run of a tile that packs its own B (512 KiB at KC = 256: stays in L2).
const PRIVATE_NC: usize = 512;
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

/// The driver: checks, the degenerate shapes, then the blocked loops of the module header.
fn gemm_impl(
    level: SimdLevel,
    shape: GemmShape,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
    parallel: bool,
) {
    let GemmShape { ta, tb, m, n, k } = shape;
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
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
    if m == 1 && tb == Trans::T {
        // A single row against a row-major [n, k] matrix (a linear layer at batch 1): n dot
        // products over contiguous rows. Packing B would copy all of it for one use; this
        // streams it once, so batch-1 inference runs at memory bandwidth.
        gemv_rows(level, n, k, &a[..k], b, &mut c[..n], ep, parallel);
        return;
    }
    let kern = microkernel(level);
    let threads = if parallel && 2.0 * (m * n) as f64 * k as f64 >= PARALLEL_MIN_FLOPS {
        rayon::current_num_threads()
    } else {
        1
    };
    let cp = SendPtr(c.as_mut_ptr());

    let step = |pc: usize, jc: usize, nc: usize| {
        let kc = KC.min(k - pc);
        Step {
            kern,
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

    if threads > 1 && m <= MC_MAX && k > KC {
        // Short and deep (the weight gradient of a conv, say): one row block, many KC blocks.
        // Each tile owns a run of columns for the whole k loop and packs its own B slivers,
        // which costs nothing extra with a single row block and needs one fork/join per call
        // instead of two per KC block.
        let n_sl = n.div_ceil(NR);
        let grid = Grid::new(m, n_sl, threads, PRIVATE_NC / NR, false);
        (0..grid.tiles())
            .into_par_iter()
            .with_max_len(1)
            .for_each(|t| {
                let (ms, ns) = grid.ranges(t);
                if ms.is_empty() || ns.is_empty() {
                    return;
                }
                let (j0, j1) = (ns.start * NR, (ns.end * NR).min(n));
                with_buf(&PACK_B, |bbuf| {
                    for pc in (0..k).step_by(KC) {
                        let st = step(pc, j0, j1 - j0);
                        let bpack = bbuf.get(ns.len() * NR * st.kc);
                        pack_b_panel(tb, b, k, n, pc, st.kc, j0, j1 - j0, bpack, 1);
                        st.block(ms.clone(), 0..ns.len(), bpack);
                    }
                });
            });
        return;
    }

    // The BLIS order: one packed B panel per (jc, pc), shared by every tile.
    with_buf(&PACK_B, |bbuf_all| {
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            let n_sl = nc.div_ceil(NR);
            let grid = Grid::new(m, n_sl, threads, n_sl, true);
            for pc in (0..k).step_by(KC) {
                let st = step(pc, jc, nc);
                let bbuf = bbuf_all.get(n_sl * NR * st.kc);
                pack_b_panel(tb, b, k, n, pc, st.kc, jc, nc, bbuf, threads);
                let bbuf: &[f32] = bbuf;
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
    /// `max_tile_sl`: the widest a tile may be, in NR slivers. `split_m_first`: reach the
    /// tile count by cutting rows before columns.
    fn new(m: usize, n_sl: usize, threads: usize, max_tile_sl: usize, split_m_first: bool) -> Grid {
        let m_sl = m.div_ceil(MR);
        let mut mb = m.div_ceil(MC_MAX);
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
    kern: Kernel,
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
        let (ms0, ms1, ns0, ns1) = (ms.start, ms.end, ns.start, ns.end);
        let i0 = ms0 * MR;
        let mc = (ms1 * MR).min(self.m) - i0;
        let kc = self.kc;
        with_buf(&PACK_A, |abuf| {
            let apack = abuf.get((ms1 - ms0) * MR * kc);
            pack_a(self.ta, self.a, self.m, self.k, i0, mc, self.pc, kc, apack);
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
                let j = self.jc + js * NR;
                let cols = NR.min(self.jc + self.nc - j);
                let bs = &bpack[js * NR * kc..(js + 1) * NR * kc];
                for is in 0..(ms1 - ms0) {
                    let i = i0 + is * MR;
                    let rows = MR.min(self.m - i);
                    let as_ = &apack[is * MR * kc..(is + 1) * MR * kc];
                    // SAFETY: (i, j) is inside C and inside this tile, which no other task
                    // touches; packed slivers hold kc·MR / kc·NR floats.
                    unsafe {
                        let cptr = self.c.0.add(i * self.n + j);
                        if rows == MR && cols == NR {
                            let tep = TileEp {
                                load_c: self.load_c,
                                row_bias: row_bias.map_or(std::ptr::null(), |b| b.as_ptr().add(i)),
                                col_bias: col_bias.map_or(std::ptr::null(), |b| b.as_ptr().add(j)),
                                relu,
                            };
                            (self.kern)(kc, as_.as_ptr(), bs.as_ptr(), cptr, self.n, &tep);
                        } else {
                            edge_tile(
                                self.kern,
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
