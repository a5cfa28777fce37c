//! GEMM rung 7 — threads: rung 5's blocked AVX2 GEMM with rayon over row blocks of C.
//!
//! Change against rung 5: the MC-row blocks of C are independent (each reads all of the
//! packed B panel and its own rows of A, and writes only its own rows of C), so they run on
//! rayon's workers, each with its own packed A block in its core's L2. The B panel is packed
//! once per (jc, pc) block and shared read-only through L3. Expected gain: the core count on
//! large problems; on a problem with fewer MC blocks than cores (m ≤ 96) nothing, which is
//! what the production GEMM fixes by also splitting the columns.

use rayon::prelude::*;

use super::gemm_04_packed_scalar::{macro_tile, pack_a, pack_b, KC, MC, NC};
use super::gemm_05_avx2::kernel_avx2;
use crate::simd::SimdLevel;

/// `C[m×n] = A[m×k]·B[k×n]`, row-major, C overwritten. Panics where the CPU lacks AVX2+FMA.
pub fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    super::check_lens(m, k, n, a, b, c);
    assert!(
        SimdLevel::Avx2Fma.is_supported(),
        "gemm_07_threads needs AVX2+FMA"
    );
    c.fill(0.0);
    if n == 0 {
        return;
    }
    let mut b_pack = Vec::new();
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, n, pc, kc, jc, nc, &mut b_pack);
            let b_pack = &b_pack;
            c.par_chunks_mut(MC * n).enumerate().for_each_init(
                Vec::new,
                |a_pack, (block, c_rows)| {
                    let ic = block * MC;
                    let mc = c_rows.len() / n;
                    pack_a(a, k, ic, mc, pc, kc, a_pack);
                    // SAFETY: AVX2+FMA checked above.
                    unsafe { macro_tile(kernel_avx2, a_pack, b_pack, mc, nc, kc, c_rows, n, jc) };
                },
            );
        }
    }
}
