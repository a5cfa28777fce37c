//! Row-wise softmax family over `rows × cols` logits (row-major): softmax and log-softmax with
//! a temperature and their backward passes, cross-entropy, Hinton knowledge-distillation loss
//! (with its gradient wrt the student) and the arg-max accuracy count.
//!
//! Numerics: every row subtracts its maximum before `exp`; logarithms come from log-sum-exp
//! (`log p_j = (x_j − max)/T − ln Σ exp((x_k − max)/T)`), and the KL divergence is computed
//! from log-probabilities so that teacher probabilities of 0 contribute exactly 0. The forward
//! maps (`softmax`, `log_softmax`) use f32 `exp` with f64 row sums — on AVX2, for rows of 8 or
//! more, an 8-lane `exp` (within one f32 epsilon) and 8 f64 partial sums per row (module
//! `avx2`: ~27 GB/s at 4096×1000 against ~5 GB/s for the scalar rows; the log-softmax
//! backward's `exp(y)` takes the same vector `exp` there); the losses do their row
//! arithmetic in f64 (rows are short: one per class) and round the gradient to f32 once.
//!
//! Bound: memory for the AVX2 forward maps on long rows (read x, write y, then read and write
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
//! is `< cols` (the engine validates labels before calling); the temperature is finite and > 0.

use crate::elementwise::CHUNK;
use crate::simd::{self, SimdLevel};
use rayon::prelude::*;

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
    assert_eq!(labels.len(), rows, "{what}: labels length is not rows");
    if let Some((r, &l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= cols) {
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

/// Whether rows of `cols` take the AVX2 path (module `avx2`) on `level`: from one full
/// vector on; shorter rows stay scalar.
fn avx2_rows(level: SimdLevel, cols: usize) -> bool {
    level == SimdLevel::Avx2Fma && cols >= 8
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

/// [`softmax`] on a given SIMD level (rows of at least 8 take the AVX2 path there).
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
    if avx2_rows(level, cols) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX2+FMA is the level's promise.
            map_rows(rows, cols, x, y, |x, y| unsafe {
                avx2::softmax_row(x, inv_t, y)
            });
            return;
        }
    }
    map_rows(rows, cols, x, y, |x, y| {
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
    });
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
    map_rows2(rows, cols, y, dy, dx, |y, dy, dx| {
        let mut dot = 0.0f64;
        for (&y, &dy) in y.iter().zip(dy) {
            dot += y as f64 * dy as f64;
        }
        let dot = dot as f32;
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = y * (dy - dot) * inv_t;
        }
    });
}

/// `y = log_softmax(x / T)` per row.
pub fn log_softmax(rows: usize, cols: usize, x: &[f32], temperature: f32, y: &mut [f32]) {
    log_softmax_at(simd::level(), rows, cols, x, temperature, y)
}

/// [`log_softmax`] on a given SIMD level (rows of at least 8 take the AVX2 path there).
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
    if avx2_rows(level, cols) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX2+FMA is the level's promise.
            map_rows(rows, cols, x, y, |x, y| unsafe {
                avx2::log_softmax_row(x, inv_t, y)
            });
            return;
        }
    }
    map_rows(rows, cols, x, y, |x, y| {
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
    });
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

/// [`log_softmax_backward`] on a given SIMD level (rows of at least 8 take the AVX2 path
/// there, which expects `y` to be log-probabilities, `≤ 0`, as the forward writes them).
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
    if avx2_rows(level, cols) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: AVX2+FMA is the level's promise.
            map_rows2(rows, cols, y, dy, dx, |y, dy, dx| unsafe {
                avx2::log_softmax_backward_row(y, dy, inv_t, dx)
            });
            return;
        }
    }
    map_rows2(rows, cols, y, dy, dx, |y, dy, dx| {
        let mut s = 0.0f64;
        for &d in dy {
            s += d as f64;
        }
        let s = s as f32;
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = (dy - y.exp() * s) * inv_t;
        }
    });
}

/// Mean over rows of `−log softmax(logits)[label]`; `grad` (if given) gets ∂loss/∂logits
/// `= (softmax − onehot) / rows`.
pub fn cross_entropy(
    rows: usize,
    cols: usize,
    logits: &[f32],
    labels: &[u32],
    grad: Option<&mut [f32]>,
) -> f32 {
    assert_eq!(
        logits.len(),
        rows * cols,
        "cross_entropy: logits is not rows × cols"
    );
    check_labels(labels, rows, cols, "cross_entropy");
    if let Some(g) = &grad {
        assert_eq!(
            g.len(),
            rows * cols,
            "cross_entropy: grad is not rows × cols"
        );
    }
    if rows == 0 {
        return 0.0;
    }
    let inv_rows = 1.0 / rows as f64;
    let total = loss_rows(rows, cols, grad, |r, g| {
        let x = &logits[r * cols..(r + 1) * cols];
        let label = labels[r] as usize;
        let (m, log_z) = row_lse(x, 1.0);
        if let Some(g) = g {
            for (j, (g, &v)) in g.iter_mut().zip(x).enumerate() {
                let p = (v as f64 - m - log_z).exp();
                let onehot = if j == label { 1.0 } else { 0.0 };
                *g = ((p - onehot) * inv_rows) as f32;
            }
        }
        log_z - (x[label] as f64 - m)
    });
    (total * inv_rows) as f32
}

/// Hinton KD: `α·T²·(1/rows)·Σ KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, labels)`;
/// `grad` gets ∂loss/∂student `= α·T·(softmax(s/T) − softmax(t/T))/rows + (1−α)(softmax(s) − onehot)/rows`.
#[allow(clippy::too_many_arguments)]
pub fn kd_loss(
    rows: usize,
    cols: usize,
    student: &[f32],
    teacher: &[f32],
    labels: &[u32],
    temperature: f32,
    alpha: f32,
    grad: Option<&mut [f32]>,
) -> f32 {
    assert_eq!(
        student.len(),
        rows * cols,
        "kd_loss: student is not rows × cols"
    );
    assert_eq!(
        teacher.len(),
        rows * cols,
        "kd_loss: teacher is not rows × cols"
    );
    check_labels(labels, rows, cols, "kd_loss");
    check_temperature(temperature, "kd_loss");
    assert!(
        alpha.is_finite(),
        "kd_loss: alpha must be finite (got {alpha})"
    );
    if let Some(g) = &grad {
        assert_eq!(g.len(), rows * cols, "kd_loss: grad is not rows × cols");
    }
    if rows == 0 {
        return 0.0;
    }
    let t = temperature as f64;
    let inv_t = 1.0 / t;
    let a = alpha as f64;
    let (kd_w, ce_w) = (a * t * t, 1.0 - a); // loss weights of KL and CE
    let (kd_gw, ce_gw) = (a * t, 1.0 - a); // gradient weights of (q − p) and (q₁ − onehot)
    let inv_rows = 1.0 / rows as f64;
    let (use_kd, use_ce) = (alpha != 0.0, ce_w != 0.0);
    let total = loss_rows(rows, cols, grad, |r, mut g| {
        let s = &student[r * cols..(r + 1) * cols];
        let tt = &teacher[r * cols..(r + 1) * cols];
        let label = labels[r] as usize;
        // Soft targets at temperature T (student q, teacher p) and hard-label softmax q₁.
        let (ms, lzs) = if use_kd {
            row_lse(s, inv_t)
        } else {
            (0.0, 0.0)
        };
        let (mt, lzt) = if use_kd {
            row_lse(tt, inv_t)
        } else {
            (0.0, 0.0)
        };
        let (m1, lz1) = if !use_ce {
            (0.0, 0.0)
        } else if use_kd && temperature == 1.0 {
            (ms, lzs)
        } else {
            row_lse(s, 1.0)
        };
        let mut kl = 0.0f64;
        for j in 0..cols {
            let mut gj = 0.0f64;
            if use_kd {
                let log_q = (s[j] as f64 - ms) * inv_t - lzs;
                let log_p = (tt[j] as f64 - mt) * inv_t - lzt;
                let p = log_p.exp();
                if p > 0.0 {
                    kl += p * (log_p - log_q);
                }
                gj += kd_gw * (log_q.exp() - p);
            }
            if use_ce {
                let q1 = (s[j] as f64 - m1 - lz1).exp();
                let onehot = if j == label { 1.0 } else { 0.0 };
                gj += ce_gw * (q1 - onehot);
            }
            if let Some(g) = g.as_deref_mut() {
                g[j] = (gj * inv_rows) as f32;
            }
        }
        let kd_part = if use_kd { kd_w * kl } else { 0.0 };
        let ce_part = if use_ce {
            ce_w * (lz1 - (s[label] as f64 - m1))
        } else {
            0.0
        };
        kd_part + ce_part
    });
    (total * inv_rows) as f32
}

/// Number of rows whose arg-max (first maximum) equals the label.
pub fn count_correct(rows: usize, cols: usize, logits: &[f32], labels: &[u32]) -> u32 {
    assert_eq!(
        logits.len(),
        rows * cols,
        "count_correct: logits is not rows × cols"
    );
    check_labels(labels, rows, cols, "count_correct");
    if rows == 0 {
        return 0;
    }
    let count_block = |x: &[f32], l: &[u32]| -> u32 {
        let mut n = 0u32;
        for (row, &label) in x.chunks_exact(cols).zip(l) {
            let mut best = 0usize;
            for (j, &v) in row.iter().enumerate().skip(1) {
                if v > row[best] {
                    best = j;
                }
            }
            n += (best == label as usize) as u32;
        }
        n
    };
    if rows * cols <= CHUNK {
        count_block(logits, labels)
    } else {
        let rpt = rows_per_task(cols);
        logits
            .par_chunks(rpt * cols)
            .zip(labels.par_chunks(rpt))
            .map(|(x, l)| count_block(x, l))
            .sum()
    }
}

/// AVX2+FMA rows for the forward maps: the row max, `exp` and the sum run 8 lanes at a time
/// (the sum in four f64 lanes per half, added up in a fixed order at the end), the ragged end
/// of a row in scalar code. The scalar rows above are a serial chain of `expf` calls and f64
/// adds, ~5 GB/s; these are bound by memory instead.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `e^x` in 8 lanes, for `x ≤ 88` (the callers pass `(x − max)/T ≤ 0`): `x = n·ln 2 + r`
    /// with `n` the nearest integer to `x·log2 e` and `|r| ≤ ln2/2`, `e^r` from its Taylor
    /// series to `r⁷` (truncation < 1e-8 relative) by FMA Horner steps, scaled by `2^n`
    /// written straight into the exponent field; measured worst error 7.6e-8 relative (0.64
    /// of f32's epsilon) over [−87, 0]. `ln 2` is split
    /// into a short high part (`n·LN2_HI` is exact) and a low correction. Results below
    /// f32's smallest normal (`x < −87.33`) are flushed to 0; NaN stays NaN.
    #[inline(always)]
    pub(super) unsafe fn exp(x: __m256) -> __m256 {
        const LN2_HI: f32 = 0.693_359_4; // 355/512: 9 significant bits
        const LN2_LO: f32 = -2.121_944_4e-4; // ln 2 − LN2_HI
                                             // min(88, x) with x second: a NaN x comes through.
        let x = _mm256_min_ps(_mm256_set1_ps(88.0), x);
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
        // 1/k! for k = 7 down to 0.
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let two_n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        )));
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.33));
        _mm256_andnot_ps(under, _mm256_mul_ps(p, two_n))
    }

    /// A sum of f32 vectors kept in 8 f64 lanes (two 4-lane halves), added up in lane order
    /// at the end: exact enough for a row sum, and the same order on every run.
    #[derive(Clone, Copy)]
    struct LaneSum(__m256d, __m256d);

    impl LaneSum {
        #[inline(always)]
        unsafe fn new() -> LaneSum {
            LaneSum(_mm256_setzero_pd(), _mm256_setzero_pd())
        }

        #[inline(always)]
        unsafe fn add(self, v: __m256) -> LaneSum {
            LaneSum(
                _mm256_add_pd(self.0, _mm256_cvtps_pd(_mm256_castps256_ps128(v))),
                _mm256_add_pd(self.1, _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v))),
            )
        }

        #[inline(always)]
        unsafe fn total(self) -> f64 {
            let mut lanes = [0.0f64; 8];
            _mm256_storeu_pd(lanes.as_mut_ptr(), self.0);
            _mm256_storeu_pd(lanes.as_mut_ptr().add(4), self.1);
            lanes.iter().sum()
        }
    }

    /// NaN-ignoring maximum of a row of at least 8.
    #[inline(always)]
    unsafe fn row_max(x: &[f32]) -> f32 {
        let (full, tail) = x.split_at(x.len() / 8 * 8);
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for v in full.chunks_exact(8) {
            // max(v, m) returns m where v is NaN.
            m = _mm256_max_ps(_mm256_loadu_ps(v.as_ptr()), m);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        lanes
            .iter()
            .chain(tail)
            .copied()
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// `y = s = (x − max)·inv_t` (`store_exp` false) or `y = e^s` (true), returning `Σ e^s`
    /// in f64: a [`LaneSum`] over the full vectors, then the tail.
    #[inline(always)]
    unsafe fn shifted_exp_sum(
        x: &[f32],
        m: f32,
        inv_t: f32,
        y: &mut [f32],
        store_exp: bool,
    ) -> f64 {
        let n = x.len() / 8 * 8;
        let (mv, tv) = (_mm256_set1_ps(m), _mm256_set1_ps(inv_t));
        let mut sum = LaneSum::new();
        for i in (0..n).step_by(8) {
            let s = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), mv), tv);
            let e = exp(s);
            _mm256_storeu_ps(y.as_mut_ptr().add(i), if store_exp { e } else { s });
            sum = sum.add(e);
        }
        let mut z = sum.total();
        for (y, &x) in y[n..].iter_mut().zip(&x[n..]) {
            let s = (x - m) * inv_t;
            let e = s.exp();
            *y = if store_exp { e } else { s };
            z += e as f64;
        }
        z
    }

    /// `y *= a` (`add` false) or `y += a` (true) over a row.
    #[inline(always)]
    unsafe fn apply(y: &mut [f32], a: f32, add: bool) {
        let n = y.len() / 8 * 8;
        let av = _mm256_set1_ps(a);
        for i in (0..n).step_by(8) {
            let p = y.as_mut_ptr().add(i);
            let v = _mm256_loadu_ps(p);
            _mm256_storeu_ps(
                p,
                if add {
                    _mm256_add_ps(v, av)
                } else {
                    _mm256_mul_ps(v, av)
                },
            );
        }
        for v in &mut y[n..] {
            *v = if add { *v + a } else { *v * a };
        }
    }

    /// One row of `softmax(x·inv_t)`, `x.len() ≥ 8`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
        debug_assert!(x.len() >= 8 && y.len() == x.len());
        let m = row_max(x);
        let z = shifted_exp_sum(x, m, inv_t, y, true);
        apply(y, (1.0 / z) as f32, false);
    }

    /// One row of `log_softmax(x·inv_t)`, `x.len() ≥ 8`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn log_softmax_row(x: &[f32], inv_t: f32, y: &mut [f32]) {
        debug_assert!(x.len() >= 8 && y.len() == x.len());
        let m = row_max(x);
        let z = shifted_exp_sum(x, m, inv_t, y, false);
        apply(y, -(z.ln() as f32), true);
    }

    /// One row of the log-softmax backward, `dx = (dy − e^y·Σdy)·inv_t`, `y.len() ≥ 8`:
    /// `Σdy` in a [`LaneSum`], then one pass with the vector `exp`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn log_softmax_backward_row(
        y: &[f32],
        dy: &[f32],
        inv_t: f32,
        dx: &mut [f32],
    ) {
        debug_assert!(y.len() >= 8 && dy.len() == y.len() && dx.len() == y.len());
        let n = y.len() / 8 * 8;
        let mut sum = LaneSum::new();
        for i in (0..n).step_by(8) {
            sum = sum.add(_mm256_loadu_ps(dy.as_ptr().add(i)));
        }
        let mut s = sum.total();
        for &d in &dy[n..] {
            s += d as f64;
        }
        let s = s as f32;
        let (sv, tv) = (_mm256_set1_ps(s), _mm256_set1_ps(inv_t));
        for i in (0..n).step_by(8) {
            let e = exp(_mm256_loadu_ps(y.as_ptr().add(i)));
            let d = _mm256_loadu_ps(dy.as_ptr().add(i));
            _mm256_storeu_ps(
                dx.as_mut_ptr().add(i),
                _mm256_mul_ps(_mm256_fnmadd_ps(e, sv, d), tv),
            );
        }
        for ((dx, &y), &dy) in dx[n..].iter_mut().zip(&y[n..]).zip(&dy[n..]) {
            *dx = (dy - y.exp() * s) * inv_t;
        }
    }

    #[cfg(test)]
    mod tests {
        /// The vector exp against f64 over [−87, 0] and a few points beyond: within one f32
        /// epsilon of relative error (measured worst: 7.6e-8); 0 below the normal range; NaN
        /// through.
        #[test]
        fn exp_is_within_one_epsilon() {
            if !is_x86_feature_detected!("avx2") || !is_x86_feature_detected!("fma") {
                return;
            }
            let mut worst = 0.0f64;
            let mut xs: Vec<f32> = (0..=200_000)
                .map(|i| -87.0 + 87.0 * i as f32 / 200_000.0)
                .collect();
            xs.extend([0.0, -0.0, 1.0, 10.0, 88.0, -1e-7, -0.346_573_6, 0.346_573_6]);
            for c in xs.chunks(8) {
                let mut v = [0.0f32; 8];
                v[..c.len()].copy_from_slice(c);
                let mut out = [0.0f32; 8];
                // SAFETY: AVX2 and FMA were detected above.
                unsafe {
                    use std::arch::x86_64::*;
                    _mm256_storeu_ps(out.as_mut_ptr(), super::exp(_mm256_loadu_ps(v.as_ptr())));
                }
                for (&x, &e) in v.iter().zip(&out) {
                    let want = (x as f64).exp();
                    let rel = (e as f64 - want).abs() / want;
                    worst = worst.max(rel);
                }
            }
            assert!(
                worst <= f32::EPSILON as f64,
                "worst relative error {worst:e}"
            );
            let special = [
                f32::NAN,
                -88.0,
                -1e4,
                f32::NEG_INFINITY,
                -87.4,
                0.0,
                0.0,
                0.0,
            ];
            let mut out = [0.0f32; 8];
            // SAFETY: as above.
            unsafe {
                use std::arch::x86_64::*;
                _mm256_storeu_ps(
                    out.as_mut_ptr(),
                    super::exp(_mm256_loadu_ps(special.as_ptr())),
                );
            }
            assert!(out[0].is_nan());
            assert_eq!(&out[1..6], &[0.0, 0.0, 0.0, 0.0, 1.0]);
        }
    }
}
