//! Mean squared error between two equal-length slices, with its gradient: the loss of feature
//! (hint) distillation. `loss = Σ (a − b)² / n`; `grad = ∂loss/∂a = 2(a − b)/n` (the gradient
//! wrt `b` is its negative, which the engine takes from this one).
//!
//! One pass per element: the difference `d = a − b` in f32 (the gradient needs it), the
//! gradient `d · (2/n)` when asked, and `d²` added in f64. An f32 squared is exact in f64
//! (48 significant bits < 53), so only the additions round.
//!
//! Determinism: the slices are cut into fixed chunks of [`CHUNK`] (16K) elements; inside a
//! chunk, element `i` goes to lane `i mod 8` of eight f64 accumulators, which a fixed tree
//! combines; the chunk partials are added in chunk order on the calling thread. All of it
//! depends only on the length, so the loss is bit-identical for every thread count, and for
//! every path: each keeps the same eight lanes and adds each lane's elements in index order
//! (`avx2.rs`: two `__m256d`; `avx512.rs`: one `__m512d` taking two vectors' halves in turn;
//! `neon.rs`: four `float64x2_t`); an FMA of an exact `d²` rounds exactly as the scalar path's
//! multiply-then-add.
//!
//! Bound: memory. 8 bytes read per element, 4 more written with the gradient; the f64
//! accumulation (one f64 FMA per 4, 8 or 2 elements) is far below what the loads take.
//!
//! Threads: rayon over the chunks; an input of one chunk or less runs on the calling thread.
//! Memory: one f64 per chunk.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

use rayon::prelude::*;

use crate::elementwise::CHUNK;
use crate::simd::{self, SimdLevel};

/// Accumulator lanes of a chunk sum (one AVX2 register of f32 differences).
pub(super) const LANES: usize = 8;

/// `Σ (a − b)² / n` over equal-length slices; `grad`, when given, gets `2(a − b)/n`.
/// 0 for empty slices.
pub fn mse_loss(a: &[f32], b: &[f32], grad: Option<&mut [f32]>) -> f32 {
    mse_loss_at(simd::level(), a, b, grad)
}

/// [`mse_loss`] on a given SIMD level (AVX-512, AVX2+FMA and NEON have their own paths; the
/// others take the portable one, which LLVM vectorises). Every level gives the same bits.
pub fn mse_loss_at(level: SimdLevel, a: &[f32], b: &[f32], grad: Option<&mut [f32]>) -> f32 {
    assert_eq!(a.len(), b.len(), "mse_loss: a and b lengths differ");
    if let Some(g) = &grad {
        assert_eq!(g.len(), a.len(), "mse_loss: grad and a lengths differ");
    }
    let n = a.len();
    if n == 0 {
        return 0.0;
    }
    let scale = (2.0 / n as f64) as f32;
    let chunk = |a: &[f32], b: &[f32], g: Option<&mut [f32]>| chunk_sum(level, a, b, g, scale);
    let total = if n <= CHUNK {
        // One chunk: the same arithmetic as one task of the parallel path.
        chunk(a, b, grad)
    } else if let Some(g) = grad {
        in_order(
            a.par_chunks(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .zip(g.par_chunks_mut(CHUNK))
                .map(|((a, b), g)| chunk(a, b, Some(g)))
                .collect(),
        )
    } else {
        in_order(
            a.par_chunks(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .map(|(a, b)| chunk(a, b, None))
                .collect(),
        )
    };
    (total / n as f64) as f32
}

/// Σ of the chunk partials, in chunk order.
fn in_order(partials: Vec<f64>) -> f64 {
    let mut total = 0.0f64;
    for p in partials {
        total += p;
    }
    total
}

/// Σ (a − b)² of one chunk in f64 (and its gradient), on the path `level` has; levels
/// without one (scalar, WebAssembly) take the portable chunk, which LLVM vectorises.
fn chunk_sum(level: SimdLevel, a: &[f32], b: &[f32], grad: Option<&mut [f32]>, scale: f32) -> f64 {
    let (g, with_grad) = match grad {
        Some(g) => (g, true),
        None => (&mut [][..], false),
    };
    // SAFETY (each vector path): the level's promise that the CPU has its instructions; the
    // lengths are checked by the caller.
    match (level, with_grad) {
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx512, true) => unsafe { avx512::chunk::<true>(a, b, g, scale) },
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx512, false) => unsafe { avx512::chunk::<false>(a, b, g, scale) },
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx2Fma, true) => unsafe { avx2::chunk::<true>(a, b, g, scale) },
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx2Fma, false) => unsafe { avx2::chunk::<false>(a, b, g, scale) },
        #[cfg(target_arch = "aarch64")]
        (SimdLevel::Neon, true) => unsafe { neon::chunk::<true>(a, b, g, scale) },
        #[cfg(target_arch = "aarch64")]
        (SimdLevel::Neon, false) => unsafe { neon::chunk::<false>(a, b, g, scale) },
        (_, true) => chunk_scalar::<true>(a, b, g, scale),
        (_, false) => chunk_scalar::<false>(a, b, g, scale),
    }
}

/// The eight lanes added in a fixed tree.
#[inline(always)]
pub(super) fn lane_tree(l: [f64; LANES]) -> f64 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

/// The portable chunk, the reference of the vector ones: element `i` into lane `i mod 8`.
fn chunk_scalar<const GRAD: bool>(a: &[f32], b: &[f32], g: &mut [f32], scale: f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    for (i, (&a, &b)) in a.iter().zip(b).enumerate() {
        let d = a - b;
        if GRAD {
            g[i] = d * scale;
        }
        let d = d as f64;
        acc[i % LANES] += d * d;
    }
    lane_tree(acc)
}
