//! GEMM: C = op(A)·op(B) with a fused epilogue (accumulate, bias, ReLU).
//!
//! PLACEHOLDER: a plain correct loop so the rest of the engine can be built against the final
//! signature. Replaced by the BLIS-style packed kernel.

use crate::simd::{self, SimdLevel};
use crate::{Bias, Epilogue, Trans};

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

/// [`gemm`] on an explicit SIMD path.
#[allow(clippy::too_many_arguments)]
pub fn gemm_at(
    _level: SimdLevel,
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
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm: operand too short"
    );
    let a_at = |i: usize, p: usize| {
        if ta == Trans::N {
            a[i * k + p]
        } else {
            a[p * m + i]
        }
    };
    let b_at = |p: usize, j: usize| {
        if tb == Trans::N {
            b[p * n + j]
        } else {
            b[j * k + p]
        }
    };
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..k {
                acc += a_at(i, p) * b_at(p, j);
            }
            let mut v = if ep.accumulate {
                c[i * n + j] + acc
            } else {
                acc
            };
            match ep.bias {
                Bias::None => {}
                Bias::PerRow(bias) => v += bias[i],
                Bias::PerCol(bias) => v += bias[j],
            }
            if ep.relu && v < 0.0 {
                v = 0.0;
            }
            c[i * n + j] = v;
        }
    }
}
