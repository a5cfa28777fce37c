//! The MSE kernel against an f64 reference and finite differences, on lengths around the SIMD
//! width (masked tails) and the chunk size (threaded path); bit-identical results across SIMD
//! levels and thread counts.

use distill_kernels::elementwise::CHUNK;
use distill_kernels::mse;
use distill_kernels::simd;

mod common;
use common::{Rng, TestRng};

/// Lengths below, at and past one vector (4 on NEON, 8 on AVX2, 16 on AVX-512), around the
/// chunk boundary, and long.
const SIZES: &[usize] = &[
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    9,
    15,
    16,
    17,
    31,
    33,
    100,
    1023,
    CHUNK - 1,
    CHUNK,
    CHUNK + 3,
    50_001,
];

fn reference(a: &[f32], b: &[f32]) -> (f64, Vec<f64>) {
    let n = a.len() as f64;
    let loss = a
        .iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum::<f64>()
        / n;
    let grad = a
        .iter()
        .zip(b)
        .map(|(&a, &b)| 2.0 * (a as f64 - b as f64) / n)
        .collect();
    (loss, grad)
}

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

#[test]
fn loss_and_gradient_match_the_f64_reference_on_every_level() {
    let mut rng = Rng::new(71);
    for &n in SIZES {
        let a = rng.vec(n, 3.0);
        let b = rng.vec(n, 2.0);
        let (want, want_grad) = reference(&a, &b);
        for level in simd::available() {
            // Guard values past the end: a masked store must not touch them.
            let mut g = vec![f32::NAN; n + 9];
            let loss = mse::mse_loss_at(level, &a, &b, Some(&mut g[..n]));
            assert!(
                ((loss as f64) - want).abs() <= 1e-6 * want,
                "{level} n={n}: loss {loss} vs {want}"
            );
            let no_grad = mse::mse_loss_at(level, &a, &b, None);
            assert_eq!(no_grad.to_bits(), loss.to_bits(), "{level} n={n}");
            for i in 0..n {
                let w = want_grad[i];
                assert!(
                    (g[i] as f64 - w).abs() <= 2.5e-7 * w.abs().max(1e-30),
                    "{level} n={n} grad[{i}] {} vs {w}",
                    g[i]
                );
            }
            assert!(
                g[n..].iter().all(|v| v.is_nan()),
                "{level} n={n}: wrote past the end"
            );
        }
    }
}

#[test]
fn gradient_matches_finite_differences() {
    let mut rng = Rng::new(72);
    for n in [3usize, 11, 40] {
        let a = rng.vec(n, 1.0);
        let b = rng.vec(n, 1.0);
        let mut g = vec![0.0f32; n];
        mse::mse_loss(&a, &b, Some(&mut g));
        let f = |a: &[f64]| -> f64 {
            a.iter()
                .zip(&b)
                .map(|(&a, &b)| (a - b as f64).powi(2))
                .sum::<f64>()
                / n as f64
        };
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        for i in 0..n {
            let h = 1e-4;
            let (mut p, mut m) = (a64.clone(), a64.clone());
            p[i] += h;
            m[i] -= h;
            let numeric = (f(&p) - f(&m)) / (2.0 * h);
            assert!((g[i] as f64 - numeric).abs() < 1e-5, "n={n} i={i}");
        }
    }
}

#[test]
fn hand_computed_case() {
    // (1−0)² + (2−4)² + (−1−(−1))² = 1 + 4 + 0 over 3 elements.
    let mut g = [0.0f32; 3];
    let loss = mse::mse_loss(&[1.0, 2.0, -1.0], &[0.0, 4.0, -1.0], Some(&mut g));
    assert!((loss - 5.0 / 3.0).abs() < 1e-7, "{loss}");
    let two_thirds = 2.0f32 / 3.0;
    assert_eq!(g, [two_thirds, -2.0 * two_thirds, 0.0]);
    assert_eq!(mse::mse_loss(&[], &[], None), 0.0);
    assert_eq!(mse::mse_loss(&[5.0; 33], &[5.0; 33], None), 0.0);
}

#[test]
fn bit_identical_across_levels_and_thread_counts() {
    let mut rng = Rng::new(73);
    for n in [CHUNK * 3 + 5, 200_003] {
        let a = rng.vec(n, 10.0);
        let b = rng.vec(n, 10.0);
        let mut first: Option<(u32, Vec<f32>)> = None;
        for level in simd::available() {
            for threads in [1, 2, 3] {
                let mut g = vec![0.0f32; n];
                let loss = pool(threads).install(|| mse::mse_loss_at(level, &a, &b, Some(&mut g)));
                match &first {
                    None => first = Some((loss.to_bits(), g)),
                    Some((l, g0)) => {
                        assert_eq!(loss.to_bits(), *l, "{level} {threads} threads n={n}");
                        assert!(
                            g == *g0,
                            "{level} {threads} threads n={n}: gradient differs"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn nan_propagates() {
    let mut a = vec![1.0f32; 20];
    a[13] = f32::NAN;
    for level in simd::available() {
        assert!(
            mse::mse_loss_at(level, &a, &[0.0; 20], None).is_nan(),
            "{level}"
        );
    }
}

#[test]
#[should_panic(expected = "lengths differ")]
fn mismatched_lengths_panic() {
    mse::mse_loss(&[1.0, 2.0], &[1.0], None);
}
