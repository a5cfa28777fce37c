//! GEMM rung 1 — naive: the definition of the product, one dot product per output.
//!
//! `C[i,j] = Σ_p A[i,p]·B[p,j]`, loops i, j, p. The inner loop walks B down a column: every
//! step jumps `n` floats, so each load touches a new cache line and uses one float of it, and
//! the sum is a single dependency chain (one add per FMA latency). Bound by memory latency on
//! B for any n larger than a few cache lines. This rung is the correctness baseline and the
//! number every later rung is a multiple of.

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten.
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    for i in 0..m {
        for j in 0..n {
            let mut sum = 0.0f32;
            for p in 0..k {
                sum += a[i * k + p] * b[p * n + j];
            }
            c[i * n + j] = sum;
        }
    }
}
