//! Row-wise softmax family over `rows × cols` logits (row-major): softmax and log-softmax with
//! a temperature and their backward passes, cross-entropy, Hinton knowledge-distillation loss
//! (with its gradient wrt the student) and the arg-max accuracy count.
//!
//! Numerics: every row subtracts its maximum before `exp`; logarithms come from log-sum-exp
//! (`log p_j = (x_j − max)/T − ln Σ exp((x_k − max)/T)`), and the KL divergence is computed
//! from log-probabilities so that teacher probabilities of 0 contribute exactly 0. The forward
//! maps (`softmax`, `log_softmax`) use f32 `exp` with f64 row sums — on the vector paths, for
//! rows of one vector or more, a vector `exp` (within one f32 epsilon, the same bits at every
//! width) and one f64 partial sum per lane: 16 lanes on AVX-512 (`avx512.rs`, masked ragged
//! ends), 8 on AVX2 (`avx2.rs`), 4 on NEON (`neon.rs`), the last two with scalar ragged ends.
//! The log-softmax backward's `exp(y)` takes the same vector `exp` there; the softmax
//! backward has AVX-512 and NEON rows (its `Σ y·dy` in the same f64 lanes). The losses
//! (`losses.rs`) do their row arithmetic in f64 (rows are short: one per class) and round the
//! gradient to f32 once.
//!
//! Bound: memory for the vector forward maps on long rows (read x, write y, then read and write
//! y again for the scaling pass: 16 bytes per element, the second pass from L1/L2); the
//! scalar rows and the f64 losses are bound by their serial `exp` and add chains.
//!
//! Threads: rows are independent. A job of at most `CHUNK` (16K) elements runs on the calling
//! thread; larger jobs hand rayon blocks of `max(1, 16K / cols)` whole rows. Losses write each
//! row's loss (f64) into a per-row buffer and add it up in row order on the calling thread, so
//! the loss does not depend on the number of threads.
//!
//! Memory: the maps and backward passes allocate nothing; the losses allocate one f64 per row.
//!
//! Contracts (checked with `assert!`): slice lengths match `rows × cols` / `rows`; every label
//! is `< cols` (the engine validates labels before calling), except that the KD loss and the
//! accuracy count accept [`NO_LABEL`] (a row of a transfer set with soft targets only); the
//! temperature is finite and > 0.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod losses;
#[cfg(target_arch = "aarch64")]
mod neon;

use crate::elementwise::CHUNK;
use crate::simd::{self, SimdLevel};
use rayon::prelude::*;

pub use losses::{count_correct, cross_entropy, kd_loss};

/// The label of a row that has none: an image of a transfer set that only the teacher's soft
/// targets describe. The KD loss gives such a row its KD term only (as PyTorch's
/// `ignore_index`, the cross-entropy term is averaged over the labelled rows); the accuracy
/// count skips it.
pub const NO_LABEL: u32 = u32::MAX;

/// Whole rows per rayon task.
fn rows_per_task(cols: usize) -> usize {
    (CHUNK / cols.max(1)).max(1)
}

fn check_temperature(t: f32, what: &str) {
    assert!(
        t.is_finite() && t > 0.0,
        "{what}: temperature must be finite and > 0 (got {t})"
    );
}

fn check_labels(labels: &[u32], rows: usize, cols: usize, what: &str) {
    check_labels_or_none(labels, rows, cols, what, false)
}

/// As [`check_labels`]; `allow_none` also accepts [`NO_LABEL`].
fn check_labels_or_none(labels: &[u32], rows: usize, cols: usize, what: &str, allow_none: bool) {
    assert_eq!(labels.len(), rows, "{what}: labels length is not rows");
    let bad = |l: u32| l as usize >= cols && !(allow_none && l == NO_LABEL);
    if let Some((r, &l)) = labels.iter().enumerate().find(|(_, &l)| bad(l)) {
        panic!("{what}: label {l} at row {r} is out of range for {cols} classes");
    }
}

/// `f(x_row, y_row)` for every row; rows in parallel when the job is large.
fn map_rows<F>(rows: usize, cols: usize, x: &[f32], y: &mut [f32], f: F)
where
    F: Fn(&[f32], &mut [f32]) + Sync,
{
    if rows == 0 || cols == 0 {
        return;
    }
    let per_block = |x: &[f32], y: &mut [f32]| {
        for (x, y) in x.chunks_exact(cols).zip(y.chunks_exact_mut(cols)) {
            f(x, y);
        }
    };
    if rows * cols <= CHUNK {
        per_block(x, y);
    } else {
        let n = rows_per_task(cols) * cols;
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(y, x)| per_block(x, y));
    }
}

/// `f(a_row, b_row, y_row)` for every row; rows in parallel when the job is large.
fn map_rows2<F>(rows: usize, cols: usize, a: &[f32], b: &[f32], y: &mut [f32], f: F)
where
    F: Fn(&[f32], &[f32], &mut [f32]) + Sync,
{
    if rows == 0 || cols == 0 {
        return;
    }
    let per_block = |a: &[f32], b: &[f32], y: &mut [f32]| {
        for ((a, b), y) in a
            .chunks_exact(cols)
            .zip(b.chunks_exact(cols))
            .zip(y.chunks_exact_mut(cols))
        {
            f(a, b, y);
        }
    };
    if rows * cols <= CHUNK {
        per_block(a, b, y);
    } else {
        let n = rows_per_task(cols) * cols;
        y.par_chunks_mut(n)
            .zip(a.par_chunks(n))
            .zip(b.par_chunks(n))
            .for_each(|((y, a), b)| per_block(a, b, y));
    }
}

/// Runs `f(row, grad_row)` for every row (rows in parallel when the job is large), storing
/// each row's f64 loss, and returns their sum taken in row order.
fn loss_rows<F>(rows: usize, cols: usize, grad: Option<&mut [f32]>, f: F) -> f64
where
    F: Fn(usize, Option<&mut [f32]>) -> f64 + Sync,
{
    let mut per_row = vec![0.0f64; rows];
    let serial = rows * cols <= CHUNK;
    let rpt = rows_per_task(cols);
    match grad {
        Some(g) => {
            let block = |r0: usize, ls: &mut [f64], gs: &mut [f32]| {
                for (i, (l, gr)) in ls.iter_mut().zip(gs.chunks_exact_mut(cols)).enumerate() {
                    *l = f(r0 + i, Some(gr));
                }
            };
            if serial {
                block(0, &mut per_row, g);
            } else {
                per_row
                    .par_chunks_mut(rpt)
                    .zip(g.par_chunks_mut(rpt * cols))
                    .enumerate()
                    .for_each(|(b, (ls, gs))| block(b * rpt, ls, gs));
            }
        }
        None => {
            let block = |r0: usize, ls: &mut [f64]| {
                for (i, l) in ls.iter_mut().enumerate() {
                    *l = f(r0 + i, None);
                }
            };
            if serial {
                block(0, &mut per_row);
            } else {
                per_row
                    .par_chunks_mut(rpt)
                    .enumerate()
                    .for_each(|(b, ls)| block(b * rpt, ls));
            }
        }
    }
    let mut total = 0.0f64;
    for &l in &per_row {
        total += l;
    }
    total
}

/// Row maximum (NaN-ignoring).
#[inline]
fn row_max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// The row kernels of one SIMD path.
#[derive(Clone, Copy)]
enum RowPath {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

/// The path rows of `cols` take on `level`: from one full vector on (16 lanes on AVX-512,
/// 8 on AVX2, 4 on NEON); shorter rows, and levels without row kernels, stay scalar. At the
/// AVX-512 level rows of 8 to 15 take the AVX2 path.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_variables)
)]
fn row_path(level: SimdLevel, cols: usize) -> RowPath {
    match level {
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 if cols >= 16 => RowPath::Avx512,
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx512 | SimdLevel::Avx2Fma if cols >= 8 => RowPath::Avx2,
        #[cfg(target_arch = "aarch64")]
        SimdLevel::Neon if cols >= 4 => RowPath::Neon,
        _ => RowPath::Scalar,
    }
}

/// `(max, ln Σ_j exp((x_j − max) · inv_t))` of one row, in f64.
#[inline]
fn row_lse(x: &[f32], inv_t: f64) -> (f64, f64) {
    let m = row_max(x) as f64;
    let mut z = 0.0f64;
    for &v in x {
        z += ((v as f64 - m) * inv_t).exp();
    }
    (m, z.ln())
}

/// `y = softmax(x / T)` per row.
pub fn softmax(rows: usize, cols: usize, x: &[f32], temperature: f32, y: &mut [f32]) {
    softmax_at(simd::level(), rows, cols, x, temperature, y)
}

/// [`softmax`] on a given SIMD level (rows of one vector or more take its vector path: 16 on
/// AVX-512, 8 on AVX2, 4 on NEON).
pub fn softmax_at(
    level: SimdLevel,
    rows: usize,
    cols: usize,
    x: &[f32],
    temperature: f32,
    y: &mut [f32],
) {
    assert_eq!(x.len(), rows * cols, "softmax: x is not rows × cols");
    assert_eq!(y.len(), rows * cols, "softmax: y is not rows × cols");
    check_temperature(temperature, "softmax");
    let inv_t = 1.0 / temperature;
    // SAFETY (each vector path): the level's promise that the CPU has its instructions;
    // `row_path` gives it only rows of at least one vector.
    match row_path(level, cols) {
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx512 => map_rows(rows, cols, x, y, |x, y| unsafe {
            avx512::softmax_row(x, inv_t, y)
        }),
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx2 => map_rows(rows, cols, x, y, |x, y| unsafe {
            avx2::softmax_row(x, inv_t, y)
        }),
        #[cfg(target_arch = "aarch64")]
        RowPath::Neon => map_rows(rows, cols, x, y, |x, y| unsafe {
            neon::softmax_row(x, inv_t, y)
        }),
        RowPath::Scalar => map_rows(rows, cols, x, y, |x, y| softmax_row(x, inv_t, y)),
    }
}

/// The scalar row of [`softmax_at`]: f32 `exp`, f64 sum; the reference the vector rows
/// follow.
fn softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    let m = row_max(x);
    let mut z = 0.0f64;
    for (y, &x) in y.iter_mut().zip(x) {
        let e = ((x - m) * inv_t).exp();
        *y = e;
        z += e as f64;
    }
    let inv_z = (1.0 / z) as f32;
    for y in y.iter_mut() {
        *y *= inv_z;
    }
}

/// Given `y = softmax(x/T)` and `dy`, `dx = y ⊙ (dy − Σ dy⊙y) / T`.
pub fn softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    dy: &[f32],
    temperature: f32,
    dx: &mut [f32],
) {
    softmax_backward_at(simd::level(), rows, cols, y, dy, temperature, dx)
}

/// [`softmax_backward`] on a given SIMD level (rows of one vector or more take its vector
/// path: 16 on AVX-512, 4 on NEON; AVX2 has none and runs the scalar row).
pub fn softmax_backward_at(
    level: SimdLevel,
    rows: usize,
    cols: usize,
    y: &[f32],
    dy: &[f32],
    temperature: f32,
    dx: &mut [f32],
) {
    assert_eq!(
        y.len(),
        rows * cols,
        "softmax_backward: y is not rows × cols"
    );
    assert_eq!(
        dy.len(),
        rows * cols,
        "softmax_backward: dy is not rows × cols"
    );
    assert_eq!(
        dx.len(),
        rows * cols,
        "softmax_backward: dx is not rows × cols"
    );
    check_temperature(temperature, "softmax_backward");
    let inv_t = 1.0 / temperature;
    // SAFETY (each vector path): as in `softmax_at`.
    match row_path(level, cols) {
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx512 => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| unsafe {
            avx512::softmax_backward_row(y, dy, inv_t, dx)
        }),
        #[cfg(target_arch = "aarch64")]
        RowPath::Neon => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| unsafe {
            neon::softmax_backward_row(y, dy, inv_t, dx)
        }),
        // No AVX2 row: the scalar one.
        _ => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| {
            softmax_backward_row(y, dy, inv_t, dx)
        }),
    }
}

/// The scalar row of [`softmax_backward_at`]: `Σ y·dy` in f64 (each product exact), then
/// `y·(dy − dot)·inv_t` in f32.
fn softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    let mut dot = 0.0f64;
    for (&y, &dy) in y.iter().zip(dy) {
        dot += y as f64 * dy as f64;
    }
    let dot = dot as f32;
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = y * (dy - dot) * inv_t;
    }
}

/// `y = log_softmax(x / T)` per row.
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], temperature: f32, y: &mut [f32]) {
    log_softmax_at(simd::level(), rows, cols, x, temperature, y)
}

/// [`log_softmax`] on a given SIMD level (rows of one vector or more take its vector path: 16 on
/// AVX-512, 8 on AVX2, 4 on NEON).
pub fn log_softmax_at(
    level: SimdLevel,
    rows: usize,
    cols: usize,
    x: &[f32],
    temperature: f32,
    y: &mut [f32],
) {
    assert_eq!(x.len(), rows * cols, "log_softmax: x is not rows × cols");
    assert_eq!(y.len(), rows * cols, "log_softmax: y is not rows × cols");
    check_temperature(temperature, "log_softmax");
    let inv_t = 1.0 / temperature;
    // SAFETY (each vector path): as in `softmax_at`.
    match row_path(level, cols) {
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx512 => map_rows(rows, cols, x, y, |x, y| unsafe {
            avx512::log_softmax_row(x, inv_t, y)
        }),
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx2 => map_rows(rows, cols, x, y, |x, y| unsafe {
            avx2::log_softmax_row(x, inv_t, y)
        }),
        #[cfg(target_arch = "aarch64")]
        RowPath::Neon => map_rows(rows, cols, x, y, |x, y| unsafe {
            neon::log_softmax_row(x, inv_t, y)
        }),
        RowPath::Scalar => map_rows(rows, cols, x, y, |x, y| log_softmax_row(x, inv_t, y)),
    }
}

/// The scalar row of [`log_softmax_at`]: `s − ln Σ e^s` with `s = (x − max)·inv_t`.
fn log_softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
    let m = row_max(x);
    let mut z = 0.0f64;
    for (y, &x) in y.iter_mut().zip(x) {
        let s = (x - m) * inv_t;
        *y = s;
        z += s.exp() as f64;
    }
    let log_z = z.ln() as f32;
    for y in y.iter_mut() {
        *y -= log_z;
    }
}

/// Given `y = log_softmax(x/T)` and `dy`, `dx = (dy − exp(y) Σ dy) / T`.
pub fn log_softmax_backward(
    rows: usize,
    cols: usize,
    y: &[f32],
    dy: &[f32],
    temperature: f32,
    dx: &mut [f32],
) {
    log_softmax_backward_at(simd::level(), rows, cols, y, dy, temperature, dx)
}

/// [`log_softmax_backward`] on a given SIMD level (rows of one vector or more take its vector
/// path, which expects `y` to be log-probabilities, `≤ 0`, as the forward writes them).
pub fn log_softmax_backward_at(
    level: SimdLevel,
    rows: usize,
    cols: usize,
    y: &[f32],
    dy: &[f32],
    temperature: f32,
    dx: &mut [f32],
) {
    assert_eq!(
        y.len(),
        rows * cols,
        "log_softmax_backward: y is not rows × cols"
    );
    assert_eq!(
        dy.len(),
        rows * cols,
        "log_softmax_backward: dy is not rows × cols"
    );
    assert_eq!(
        dx.len(),
        rows * cols,
        "log_softmax_backward: dx is not rows × cols"
    );
    check_temperature(temperature, "log_softmax_backward");
    let inv_t = 1.0 / temperature;
    // SAFETY (each vector path): as in `softmax_at`.
    match row_path(level, cols) {
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx512 => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| unsafe {
            avx512::log_softmax_backward_row(y, dy, inv_t, dx)
        }),
        #[cfg(target_arch = "x86_64")]
        RowPath::Avx2 => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| unsafe {
            avx2::log_softmax_backward_row(y, dy, inv_t, dx)
        }),
        #[cfg(target_arch = "aarch64")]
        RowPath::Neon => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| unsafe {
            neon::log_softmax_backward_row(y, dy, inv_t, dx)
        }),
        RowPath::Scalar => map_rows2(rows, cols, y, dy, dx, |y, dy, dx| {
            log_softmax_backward_row(y, dy, inv_t, dx)
        }),
    }
}

/// The scalar row of [`log_softmax_backward_at`].
fn log_softmax_backward_row(y: &[f32], dy: &[f32], inv_t: f32, dx: &mut [f32]) {
    let mut s = 0.0f64;
    for &d in dy {
        s += d as f64;
    }
    let s = s as f32;
    for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
        *dx = (dy - y.exp() * s) * inv_t;
    }
}
