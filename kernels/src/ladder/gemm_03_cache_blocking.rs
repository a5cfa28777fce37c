//! GEMM rung 3 — cache blocking: the i, p, j loops of rung 2, run block by block.
//!
//! Change against rung 2: the three loops are cut into blocks (MC rows of A and C, KC depths,
//! NC columns of B and C) so the data one block touches fits a cache level: the KC×NC block
//! of B (256×256 floats = 256 KiB) stays in L2 while all MC rows of A use it, and the MC×NC
//! block of C (32 KiB) stays close to L1 across the KC depths. Rung 2 streamed all of B
//! from memory once per row of A; here B is read from memory once per MC rows. The inner
//! loop is unchanged (vectorised `C[i, j..] += a·B[p, j..]`), so what is left is its load and
//! store of C per FMA: bound by L1 bandwidth, not by arithmetic.

const MC: usize = 32;
const KC: usize = 256;
const NC: usize = 256;

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten.
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    c.fill(0.0);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                for i in ic..ic + mc {
                    let c_row = &mut c[i * n + jc..i * n + jc + nc];
                    for p in pc..pc + kc {
                        let a_ip = a[i * k + p];
                        let b_row = &b[p * n + jc..p * n + jc + nc];
                        for (cj, bj) in c_row.iter_mut().zip(b_row) {
                            *cj += a_ip * bj;
                        }
                    }
                }
            }
        }
    }
}
