//! Element-wise maps (`relu`, `relu_backward`, `add`, `scale`, `axpy`, `fill`) and simple
//! reductions (`sum`, `mean`, `column_sums`) over dense f32 slices.
//!
//! Threads: every kernel splits its slices into fixed chunks of [`CHUNK`] elements and hands
//! them to rayon; an input of one chunk or less runs on the calling thread (a rayon fork
//! costs more than touching 16K floats).
//!
//! Paths: the maps have explicit AVX-512 (`avx512.rs`, 16 lanes, masked ends) and NEON
//! (`neon.rs`, 4 lanes) paths, chosen per call by the `*_at(level, …)` entry points; the
//! other levels run the portable loops below (plain zips that LLVM vectorises for the
//! build's baseline: SSE2 on x86-64). Every path does the same f32 operations in the same
//! order, so all levels give the same bits. Bound: memory (8 to 12 bytes per element
//! against one or two arithmetic operations); the reductions stay portable.
//!
//! Determinism: reductions sum each fixed chunk into an f64 partial (eight f64 lanes, combined
//! in a fixed tree), then add the partials in chunk order on the calling thread. The chunk
//! boundaries depend only on the input length (and `cols` for `column_sums`), never on the
//! number of threads, so the result is bit-identical on every run and every pool size.
//!
//! Memory: maps allocate nothing. `sum`/`mean` allocate one f64 per chunk (len/2048 bytes).
//! `column_sums` allocates one f64 row of partials per block of rows, at most
//! `8·cols·(rows/64 + 1)` bytes (≤ 1/32 of the input plus one row).

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use crate::simd::{self, SimdLevel};
use rayon::prelude::*;

/// Elements per task for maps and reductions. Fixed: reductions depend on it for determinism.
pub const CHUNK: usize = 1 << 14;

/// Column strip width (in columns) of one `column_sums` task: 4096 f64 partials = 32 KiB,
/// which stays in L1/L2 while the task streams whole rows (narrower strips measured slower:
/// they read each row in short strided pieces).
const COL_STRIP: usize = 4096;
/// Lower bound on the rows per `column_sums` block; bounds its partials to 1/32 of the input.
const MIN_BLOCK_ROWS: usize = 64;

/// `f(y_chunk, x_chunk)` over matching fixed chunks; serial when it all fits in one chunk.
fn zip2<F>(y: &mut [f32], x: &[f32], f: F)
where
    F: Fn(&mut [f32], &[f32]) + Sync,
{
    if y.len() <= CHUNK {
        f(y, x);
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| f(y, x));
    }
}

/// `f(y_chunk, a_chunk, b_chunk)` over matching fixed chunks.
fn zip3<F>(y: &mut [f32], a: &[f32], b: &[f32], f: F)
where
    F: Fn(&mut [f32], &[f32], &[f32]) + Sync,
{
    if y.len() <= CHUNK {
        f(y, a, b);
    } else {
        y.par_chunks_mut(CHUNK)
            .zip(a.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((y, a), b)| f(y, a, b));
    }
}

/// `y = max(0, x)`.
///
/// NaN inputs propagate (`y = NaN`), so a diverging run stays visible.
pub fn relu(x: &[f32], y: &mut [f32]) {
    relu_at(simd::level(), x, y)
}

/// [`relu`] on a given SIMD level.
pub fn relu_at(level: SimdLevel, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "relu: x and y lengths differ");
    // SAFETY (each vector path): the level's promise that the CPU has its instructions.
    zip2(y, x, |y, x| match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::relu(x, y) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::relu(x, y) },
        // No path of its own: the portable loop.
        _ => relu_scalar(x, y),
    });
}

/// The portable [`relu`] of one chunk, the reference of the vector paths.
fn relu_scalar(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = if x < 0.0 { 0.0 } else { x };
    }
}

/// `dx = dy` where `x > 0`, else 0.
pub fn relu_backward(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    relu_backward_at(simd::level(), x, dy, dx)
}

/// [`relu_backward`] on a given SIMD level.
pub fn relu_backward_at(level: SimdLevel, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    assert_eq!(x.len(), dx.len(), "relu_backward: x and dx lengths differ");
    assert_eq!(
        dy.len(),
        dx.len(),
        "relu_backward: dy and dx lengths differ"
    );
    // SAFETY (each vector path): as in `relu_at`.
    zip3(dx, x, dy, |dx, x, dy| match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::relu_backward(x, dy, dx) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::relu_backward(x, dy, dx) },
        _ => relu_backward_scalar(x, dy, dx),
    });
}

/// The portable [`relu_backward`] of one chunk.
fn relu_backward_scalar(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        *dx = if x > 0.0 { dy } else { 0.0 };
    }
}

/// `y = a + b`.
pub fn add(a: &[f32], b: &[f32], y: &mut [f32]) {
    add_at(simd::level(), a, b, y)
}

/// [`add`] on a given SIMD level.
pub fn add_at(level: SimdLevel, a: &[f32], b: &[f32], y: &mut [f32]) {
    assert_eq!(a.len(), y.len(), "add: a and y lengths differ");
    assert_eq!(b.len(), y.len(), "add: b and y lengths differ");
    // SAFETY (each vector path): as in `relu_at`.
    zip3(y, a, b, |y, a, b| match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::add(a, b, y) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::add(a, b, y) },
        _ => add_scalar(a, b, y),
    });
}

/// The portable [`add`] of one chunk.
fn add_scalar(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a + b;
    }
}

/// `y = s · x`.
pub fn scale(x: &[f32], s: f32, y: &mut [f32]) {
    scale_at(simd::level(), x, s, y)
}

/// [`scale`] on a given SIMD level.
pub fn scale_at(level: SimdLevel, x: &[f32], s: f32, y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "scale: x and y lengths differ");
    // SAFETY (each vector path): as in `relu_at`.
    zip2(y, x, |y, x| match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::scale(x, s, y) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::scale(x, s, y) },
        _ => scale_scalar(x, s, y),
    });
}

/// The portable [`scale`] of one chunk.
fn scale_scalar(x: &[f32], s: f32, y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = s * x;
    }
}

/// `y += alpha · x`.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    axpy_at(simd::level(), alpha, x, y)
}

/// [`axpy`] on a given SIMD level.
pub fn axpy_at(level: SimdLevel, alpha: f32, x: &[f32], y: &mut [f32]) {
    assert_eq!(x.len(), y.len(), "axpy: x and y lengths differ");
    // SAFETY (each vector path): as in `relu_at`.
    zip2(y, x, |y, x| match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 => unsafe { avx512::axpy(alpha, x, y) },
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon => unsafe { neon::axpy(alpha, x, y) },
        _ => axpy_scalar(alpha, x, y),
    });
}

/// The portable [`axpy`] of one chunk: the product rounded, then the add (no FMA).
fn axpy_scalar(alpha: f32, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

/// `y = v` everywhere.
pub fn fill(y: &mut [f32], v: f32) {
    if y.len() <= CHUNK {
        y.fill(v);
    } else {
        y.par_chunks_mut(CHUNK).for_each(|c| c.fill(v));
    }
}

/// Σ of one chunk in f64: eight independent lanes (vectorisable, no reassociation needed),
/// combined in a fixed tree, then the tail in order.
#[inline]
fn chunk_sum_f64(x: &[f32]) -> f64 {
    const LANES: usize = 8;
    let mut acc = [0.0f64; LANES];
    let mut it = x.chunks_exact(LANES);
    for c in &mut it {
        for k in 0..LANES {
            acc[k] += c[k] as f64;
        }
    }
    let mut tail = 0.0f64;
    for &v in it.remainder() {
        tail += v as f64;
    }
    (((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) + tail
}

/// Σ x in f64 over fixed chunks, partials added in chunk order.
fn sum_f64(x: &[f32]) -> f64 {
    if x.len() <= CHUNK {
        return chunk_sum_f64(x);
    }
    let partials: Vec<f64> = x.par_chunks(CHUNK).map(chunk_sum_f64).collect();
    let mut total = partials[0];
    for &p in &partials[1..] {
        total += p;
    }
    total
}

/// Σ x, deterministic (fixed chunks, fixed combine order, f64 partials).
pub fn sum(x: &[f32]) -> f32 {
    sum_f64(x) as f32
}

/// Σ x / len (0 for empty input).
pub fn mean(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (sum_f64(x) / x.len() as f64) as f32
}

/// Adds rows `r0..r1` of the columns `c0..c0 + acc.len()` of `x` into `acc`, in row order.
#[inline]
fn accumulate_rows(x: &[f32], cols: usize, r0: usize, r1: usize, c0: usize, acc: &mut [f64]) {
    let w = acc.len();
    for r in r0..r1 {
        let row = &x[r * cols + c0..r * cols + c0 + w];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += v as f64;
        }
    }
}

/// `out[j] = Σ_i x[i, j]` over a `rows × cols` matrix (a linear layer's bias gradient).
///
/// Rows are cut into fixed blocks (`max(CHUNK / cols, 64)` rows) and columns into strips of
/// 4096; each (block, strip) task sums its rows in order into f64 partials; the partials of
/// each column are then added in block order. Bit-identical for any thread count.
pub fn column_sums(rows: usize, cols: usize, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), rows * cols, "column_sums: x is not rows × cols");
    assert_eq!(out.len(), cols, "column_sums: out length is not cols");
    if cols == 0 {
        return;
    }
    let block_rows = (CHUNK / cols).max(MIN_BLOCK_ROWS);
    let blocks = rows.div_ceil(block_rows);
    if blocks <= 1 && cols <= COL_STRIP {
        // One task: same arithmetic as the parallel path with a single block.
        let mut acc = vec![0.0f64; cols];
        accumulate_rows(x, cols, 0, rows, 0, &mut acc);
        for (o, a) in out.iter_mut().zip(&acc) {
            *o = *a as f32;
        }
        return;
    }
    // partials[b * cols + j] = Σ over block b of column j.
    let mut partials = vec![0.0f64; blocks * cols];
    partials
        .par_chunks_mut(cols)
        .enumerate()
        .for_each(|(b, part)| {
            let r0 = b * block_rows;
            let r1 = (r0 + block_rows).min(rows);
            part.par_chunks_mut(COL_STRIP)
                .enumerate()
                .for_each(|(s, acc)| accumulate_rows(x, cols, r0, r1, s * COL_STRIP, acc));
        });
    let partials = &partials;
    let combine = |c0: usize, out: &mut [f32]| {
        for (k, o) in out.iter_mut().enumerate() {
            let j = c0 + k;
            let mut a = partials[j];
            for b in 1..blocks {
                a += partials[b * cols + j];
            }
            *o = a as f32;
        }
    };
    if cols <= COL_STRIP {
        combine(0, out);
    } else {
        out.par_chunks_mut(COL_STRIP)
            .enumerate()
            .for_each(|(s, o)| combine(s * COL_STRIP, o));
    }
}
