//! GEMM rung 2 — loop order: i, p, j instead of i, j, p.
//!
//! Change against rung 1: the reduction index p moves out of the innermost loop. The inner
//! loop is now `C[i, :] += A[i,p] · B[p, :]`: one scalar times a row of B added to a row of
//! C, both unit-stride. Every float of a loaded cache line is used, the hardware prefetcher
//! sees a stream, and the j iterations are independent, so the compiler vectorises the loop
//! (8 lanes with AVX2) without any intrinsics. Still bound by memory: each FMA loads one B
//! float and loads+stores one C float, and for large n the C row and B no longer fit in cache.

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten.
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    c.fill(0.0);
    for i in 0..m {
        let c_row = &mut c[i * n..(i + 1) * n];
        for p in 0..k {
            let a_ip = a[i * k + p];
            let b_row = &b[p * n..(p + 1) * n];
            for (cj, bj) in c_row.iter_mut().zip(b_row) {
                *cj += a_ip * bj;
            }
        }
    }
}
