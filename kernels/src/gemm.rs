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
//! Packing makes every operand read of the microkernel unit-stride and aligned, whatever the
//! transposes: `Trans::N`/`Trans::T` only change how the packers gather, so no transposed copy
//! of A or B is ever made. Slivers are zero-padded to MR/NR, so the microkernel always runs a
//! full tile; edge tiles go through a small stack buffer and only the valid part is copied out.
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
//! The microkernel is bound by the two 256-bit FMA pipes (32 flop/cycle/core): in cache it
//! runs at ~93% of a pure FMA loop; the rest is the per-tile C load/store and loop overhead.
//! Prefetching the C tile before the k loop is worth ~9% at 1024³; block sizes between KC 192
//! and 512 measured the same. Outside the microkernel the losses are packing (A is copied
//! once per NC panel and per column run, B once: k·n copies against 2·m·n·k flops, so it
//! dominates when m is small — at m = 64, k = 12544 packing B is ~25% of the time), load
//! imbalance and fork/join. Measured on Zen 5 (AVX2 peak 135 GFLOP/s per core): 1024³ at ~90%
//! of peak on one thread, ~88% on two (against the two-thread peak, on a quiet machine).
//! Small or thin problems (k or n of a few dozen) are bound by packing and C traffic instead.

use std::cell::RefCell;
use std::ops::Range;

use rayon::prelude::*;

use crate::simd::{self, SimdLevel};
use crate::{Bias, Epilogue, Trans};

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

/// `C[m×n] = op(A)·op(B)` then the epilogue. `op(A)` is m×k: A is stored dense row-major as
/// m×k (`Trans::N`) or k×m (`Trans::T`); likewise B as k×n or n×k. C is dense m×n.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    gemm_at(simd::level(), ta, tb, m, n, k, a, b, c, ep)
}

/// [`gemm`] on an explicit SIMD path. A level the CPU cannot run falls back to scalar.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at(
    level: SimdLevel,
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    gemm_impl(level, ta, tb, m, n, k, a, b, c, ep, true)
}

/// [`gemm_at`] entirely on the calling thread, whatever its size: for callers that run
/// several GEMMs in parallel themselves (the chunks of a conv2d), where a GEMM that forks
/// would nest, and pay a fork/join per KC block on problems with few tiles.
#[allow(clippy::too_many_arguments)]
pub fn gemm_serial_at(
    level: SimdLevel,
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
) {
    gemm_impl(level, ta, tb, m, n, k, a, b, c, ep, false)
}

#[allow(clippy::too_many_arguments)]
fn gemm_impl(
    level: SimdLevel,
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
    parallel: bool,
) {
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

/// The epilogue alone, for k = 0.
/// `c[j] = epilogue(x · b[j, :])` for the `n` rows of a row-major `[n, k]` matrix; rows are
/// split across threads in fixed blocks, and each dot product is summed in a fixed order.
#[allow(clippy::too_many_arguments)]
fn gemv_rows(
    level: SimdLevel,
    n: usize,
    k: usize,
    x: &[f32],
    b: &[f32],
    c: &mut [f32],
    ep: Epilogue,
    parallel: bool,
) {
    const ROWS_PER_TASK: usize = 64;
    let run = |j0: usize, out: &mut [f32]| {
        for (dj, v) in out.iter_mut().enumerate() {
            let j = j0 + dj;
            let mut acc = dot(level, x, &b[j * k..(j + 1) * k]);
            if ep.accumulate {
                acc += *v;
            }
            match ep.bias {
                Bias::None => {}
                Bias::PerRow(bias) => acc += bias[0],
                Bias::PerCol(bias) => acc += bias[j],
            }
            *v = if ep.relu && acc < 0.0 { 0.0 } else { acc };
        }
    };
    if parallel && 2.0 * (n * k) as f64 >= PARALLEL_MIN_FLOPS {
        use rayon::prelude::*;
        c.par_chunks_mut(ROWS_PER_TASK)
            .enumerate()
            .for_each(|(t, out)| run(t * ROWS_PER_TASK, out));
    } else {
        run(0, c);
    }
}

fn dot(level: SimdLevel, x: &[f32], y: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if level == SimdLevel::Avx2Fma {
        // SAFETY: the level is only Avx2Fma when the CPU has AVX2 and FMA.
        return unsafe { dot_avx2(x, y) };
    }
    let _ = level;
    // Four partial sums in a fixed order (so LLVM may keep them in registers).
    let mut acc = [0.0f32; 4];
    let chunks = x.len() / 4;
    for i in 0..chunks {
        for l in 0..4 {
            acc[l] += x[4 * i + l] * y[4 * i + l];
        }
    }
    let mut total = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for i in chunks * 4..x.len() {
        total += x[i] * y[i];
    }
    total
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(x: &[f32], y: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = x.len().min(y.len());
    let (xp, yp) = (x.as_ptr(), y.as_ptr());
    // Four independent accumulators hide the FMA latency.
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (l, a) in acc.iter_mut().enumerate() {
            let o = i + 8 * l;
            *a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(o)), _mm256_loadu_ps(yp.add(o)), *a);
        }
        i += 32;
    }
    while i + 8 <= n {
        acc[0] = _mm256_fmadd_ps(
            _mm256_loadu_ps(xp.add(i)),
            _mm256_loadu_ps(yp.add(i)),
            acc[0],
        );
        i += 8;
    }
    let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    let mut lanes = [0.0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
    let mut total = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
    while i < n {
        total += x[i] * y[i];
        i += 1;
    }
    total
}

fn epilogue_only(m: usize, n: usize, c: &mut [f32], ep: Epilogue) {
    for (i, row) in c.chunks_exact_mut(n).enumerate().take(m) {
        for (j, v) in row.iter_mut().enumerate() {
            let mut x = if ep.accumulate { *v } else { 0.0 };
            match ep.bias {
                Bias::None => {}
                Bias::PerRow(bias) => x += bias[i],
                Bias::PerCol(bias) => x += bias[j],
            }
            if ep.relu && x < 0.0 {
                x = 0.0;
            }
            *v = x;
        }
    }
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
            // tall and wide. Cutting rows packs each A block once and shares the B panel
            // (measured +12% at 512³ over cutting columns); a tile that packs its own B wants
            // columns cut instead, or B would be packed once per row block.
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
            while (mb * nb) % threads != 0 && nb < n_sl {
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

/// A partial tile: run the full microkernel on a padded copy in a stack buffer, so edges get
/// exactly the same arithmetic as interior tiles, then copy the valid part back.
///
/// # Safety
/// `c` must address `rows` rows of `cols` valid floats with row stride `ldc`.
#[allow(clippy::too_many_arguments)]
unsafe fn edge_tile(
    kern: Kernel,
    kc: usize,
    a: &[f32],
    b: &[f32],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    load_c: bool,
    row_bias: Option<&[f32]>,
    col_bias: Option<&[f32]>,
    relu: bool,
) {
    let mut tmp = Aligned([0.0f32; MR * NR]);
    if load_c {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(c.add(r * ldc), tmp.0[r * NR..].as_mut_ptr(), cols);
        }
    }
    let mut rb = [0.0f32; MR];
    let mut cb = [0.0f32; NR];
    if let Some(bias) = row_bias {
        rb[..rows].copy_from_slice(bias);
    }
    if let Some(bias) = col_bias {
        cb[..cols].copy_from_slice(bias);
    }
    let tep = TileEp {
        load_c,
        row_bias: if row_bias.is_some() {
            rb.as_ptr()
        } else {
            std::ptr::null()
        },
        col_bias: if col_bias.is_some() {
            cb.as_ptr()
        } else {
            std::ptr::null()
        },
        relu,
    };
    kern(kc, a.as_ptr(), b.as_ptr(), tmp.0.as_mut_ptr(), NR, &tep);
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(tmp.0[r * NR..].as_ptr(), c.add(r * ldc), cols);
    }
}

#[repr(C, align(64))]
struct Aligned<T>(T);

// ---------------------------------------------------------------------------------------------
// Pack buffers: a thread-local free list of 64-byte aligned buffers, grown on demand, so
// steady-state calls do not allocate. A buffer is taken off the list for the duration of its
// use (no borrow is held across user code), so a re-entrant call on the same thread (a rayon
// worker that steals another GEMM while it waits) simply takes a second buffer.

#[derive(Default)]
struct PackBuf(Vec<f32>);

impl PackBuf {
    fn get(&mut self, len: usize) -> &mut [f32] {
        const ALIGN_F32: usize = 16; // 64 bytes
        if self.0.len() < len + ALIGN_F32 {
            self.0 = vec![0.0; len + ALIGN_F32];
        }
        let off = self.0.as_ptr().align_offset(64).min(ALIGN_F32);
        &mut self.0[off..off + len]
    }
}

type FreeList = RefCell<Vec<PackBuf>>;

thread_local! {
    static PACK_A: FreeList = const { RefCell::new(Vec::new()) };
    static PACK_B: FreeList = const { RefCell::new(Vec::new()) };
}

fn with_buf<R>(
    key: &'static std::thread::LocalKey<FreeList>,
    f: impl FnOnce(&mut PackBuf) -> R,
) -> R {
    let mut buf = key.with(|l| l.borrow_mut().pop()).unwrap_or_default();
    let r = f(&mut buf);
    key.with(|l| l.borrow_mut().push(buf));
    r
}

// ---------------------------------------------------------------------------------------------
// Packing

/// Pack rows `i0..i0+mc`, depths `p0..p0+kc` of op(A) as MR-tall slivers: sliver s holds
/// `dst[s·MR·kc + p·MR + r] = op(A)[i0 + s·MR + r, p0 + p]`, zero past row m.
#[allow(clippy::too_many_arguments)]
fn pack_a(
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
    match ta {
        Trans::N => {
            for (s, d) in dst.chunks_exact_mut(MR * kc).enumerate() {
                let r0 = i0 + s * MR;
                let rows = MR.min(i0 + mc - r0);
                // Row-major m×k: each row of the sliver is a contiguous run of kc floats.
                if rows == MR {
                    let src: [&[f32]; MR] =
                        std::array::from_fn(|r| &a[(r0 + r) * k + p0..(r0 + r) * k + p0 + kc]);
                    for (p, dp) in d.chunks_exact_mut(MR).enumerate() {
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

/// Pack depths `p0..p0+kc`, columns `j0..j0+nc` of op(B) as NR-wide slivers: sliver t holds
/// `dst[t·NR·kc + p·NR + c] = op(B)[p0 + p, j0 + t·NR + c]`, zero past column n.
#[allow(clippy::too_many_arguments)]
fn pack_b_panel(
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
                // (the 16 KiB sliver is L1-resident, so the scattered writes are cheap).
                if cols < NR {
                    d.fill(0.0);
                }
                for cc in 0..cols {
                    let src = &b[(c0 + cc) * k + p0..(c0 + cc) * k + p0 + kc];
                    for (p, &v) in src.iter().enumerate() {
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

// ---------------------------------------------------------------------------------------------
// Microkernels: `C[MR×NR] (+)= Σ_p a[p·MR..][..MR] ⊗ b[p·NR..][..NR]`, then the epilogue.

/// What the microkernel does when it stores its tile.
struct TileEp {
    /// Add the tile to C (accumulate, or a later KC block) instead of overwriting it.
    load_c: bool,
    /// MR row biases, or null.
    row_bias: *const f32,
    /// NR column biases, or null.
    col_bias: *const f32,
    relu: bool,
}

/// `kern(kc, a_sliver, b_sliver, c, ldc, ep)`.
///
/// Safety contract: `a` holds `kc·MR`, `b` holds `kc·NR` floats; `c` addresses MR rows of NR
/// floats at stride `ldc`; non-null biases hold MR / NR floats.
type Kernel = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, &TileEp);

fn microkernel(level: SimdLevel) -> Kernel {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2Fma if simd::detect() == SimdLevel::Avx2Fma => kernel_avx2,
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon if simd::detect() == SimdLevel::Neon => kernel_neon,
        _ => kernel_scalar,
    }
}

/// Portable reference microkernel (the compiler may still auto-vectorise it).
unsafe fn kernel_scalar(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    let a = std::slice::from_raw_parts(a, kc * MR);
    let b = std::slice::from_raw_parts(b, kc * NR);
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for r in 0..MR {
            for (x, &bv) in acc[r].iter_mut().zip(bp) {
                // Not `mul_add`: without hardware FMA that is a libm call per element.
                *x += ap[r] * bv;
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        let cr = std::slice::from_raw_parts_mut(c.add(r * ldc), NR);
        for (j, (cv, &x)) in cr.iter_mut().zip(row).enumerate() {
            let mut v = if ep.load_c { x + *cv } else { x };
            if !ep.row_bias.is_null() {
                v += *ep.row_bias.add(r);
            }
            if !ep.col_bias.is_null() {
                v += *ep.col_bias.add(j);
            }
            if ep.relu && v < 0.0 {
                v = 0.0;
            }
            *cv = v;
        }
    }
}

/// AVX2+FMA 6×16: 12 ymm accumulators, 2 ymm of B, 1 broadcast of A per row.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_avx2(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    use std::arch::x86_64::*;
    const NV: usize = NR / 8;
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    // Start pulling the C tile in now; it is needed only after the k loop.
    for r in 0..MR {
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(c.add(r * ldc + NR - 1) as *const i8);
    }
    let (mut a, mut b) = (a, b);
    let step = |a: *const f32, b: *const f32, acc: &mut [[__m256; NV]; MR]| {
        let bv: [__m256; NV] = std::array::from_fn(|v| _mm256_load_ps(b.add(8 * v)));
        for (r, accr) in acc.iter_mut().enumerate() {
            let ar = _mm256_broadcast_ss(&*a.add(r));
            for (x, &bb) in accr.iter_mut().zip(&bv) {
                *x = _mm256_fmadd_ps(ar, bb, *x);
            }
        }
    };
    // Unrolled by 4 to thin out the loop overhead between FMAs.
    for _ in 0..kc / 4 {
        step(a, b, &mut acc);
        step(a.add(MR), b.add(NR), &mut acc);
        step(a.add(2 * MR), b.add(2 * NR), &mut acc);
        step(a.add(3 * MR), b.add(3 * NR), &mut acc);
        a = a.add(4 * MR);
        b = b.add(4 * NR);
    }
    for _ in 0..kc % 4 {
        step(a, b, &mut acc);
        a = a.add(MR);
        b = b.add(NR);
    }
    let zero = _mm256_setzero_ps();
    let cb: [__m256; NV] = if ep.col_bias.is_null() {
        [zero; NV]
    } else {
        std::array::from_fn(|v| _mm256_loadu_ps(ep.col_bias.add(8 * v)))
    };
    for (r, accr) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        let rb = if ep.row_bias.is_null() {
            zero
        } else {
            _mm256_broadcast_ss(&*ep.row_bias.add(r))
        };
        for (v, &x) in accr.iter().enumerate() {
            let mut y = x;
            if ep.load_c {
                y = _mm256_add_ps(y, _mm256_loadu_ps(cr.add(8 * v)));
            }
            if !ep.row_bias.is_null() {
                y = _mm256_add_ps(y, rb);
            }
            if !ep.col_bias.is_null() {
                y = _mm256_add_ps(y, cb[v]);
            }
            if ep.relu {
                // max(0, y) with y second: NaN passes through, like the scalar `y < 0` test.
                y = _mm256_max_ps(zero, y);
            }
            _mm256_storeu_ps(cr.add(8 * v), y);
        }
    }
}

/// NEON 6×16: 24 q-register accumulators; A's 6 values are loaded as 4+2 lanes and used with
/// `fmla` by lane, so no broadcasts are needed.
#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn kernel_neon(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    ep: &TileEp,
) {
    use std::arch::aarch64::*;
    let mut acc = [[vdupq_n_f32(0.0); 4]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let bv = [
            vld1q_f32(b),
            vld1q_f32(b.add(4)),
            vld1q_f32(b.add(8)),
            vld1q_f32(b.add(12)),
        ];
        let a03 = vld1q_f32(a);
        let a45 = vld1_f32(a.add(4));
        for q in 0..4 {
            acc[0][q] = vfmaq_laneq_f32::<0>(acc[0][q], bv[q], a03);
            acc[1][q] = vfmaq_laneq_f32::<1>(acc[1][q], bv[q], a03);
            acc[2][q] = vfmaq_laneq_f32::<2>(acc[2][q], bv[q], a03);
            acc[3][q] = vfmaq_laneq_f32::<3>(acc[3][q], bv[q], a03);
            acc[4][q] = vfmaq_lane_f32::<0>(acc[4][q], bv[q], a45);
            acc[5][q] = vfmaq_lane_f32::<1>(acc[5][q], bv[q], a45);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let zero = vdupq_n_f32(0.0);
    for (r, accr) in acc.iter().enumerate() {
        let cr = c.add(r * ldc);
        for (q, &x) in accr.iter().enumerate() {
            let mut v = x;
            if ep.load_c {
                v = vaddq_f32(v, vld1q_f32(cr.add(4 * q)));
            }
            if !ep.row_bias.is_null() {
                v = vaddq_f32(v, vdupq_n_f32(*ep.row_bias.add(r)));
            }
            if !ep.col_bias.is_null() {
                v = vaddq_f32(v, vld1q_f32(ep.col_bias.add(4 * q)));
            }
            if ep.relu {
                v = vmaxq_f32(v, zero);
            }
            vst1q_f32(cr.add(4 * q), v);
        }
    }
}
