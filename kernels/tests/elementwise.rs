//! Element-wise kernels against naive f64 references; determinism of the reductions across
//! thread-pool sizes.

use distill_kernels::elementwise as ew;
use distill_kernels::simd::{self, SimdLevel};

mod common;
use common::{Rng, TestRng};

/// Sizes around the chunk boundaries and well past them (threaded path).
const SIZES: &[usize] = &[0, 1, 3, 7, 13, 127, 1000, 16384, 16385, 100_003, 250_000];

fn pool(n: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
}

#[test]
fn relu_and_backward_match_reference() {
    let mut rng = Rng::new(1);
    for &n in SIZES {
        let x = rng.vec(n, 3.0);
        let dy = rng.vec(n, 1.0);
        let mut y = vec![f32::NAN; n];
        ew::relu(&x, &mut y);
        for i in 0..n {
            assert_eq!(y[i], x[i].max(0.0), "relu n={n} i={i}");
        }
        let mut dx = vec![f32::NAN; n];
        ew::relu_backward(&x, &dy, &mut dx);
        for i in 0..n {
            let want = if x[i] > 0.0 { dy[i] } else { 0.0 };
            assert_eq!(dx[i], want, "relu_backward n={n} i={i}");
        }
    }
}

#[test]
fn relu_edge_values() {
    let x = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1e-40,
        1e-40,
    ];
    let mut y = [9.0f32; 6];
    ew::relu(&x, &mut y);
    assert_eq!(y, [0.0, -0.0, f32::INFINITY, 0.0, 0.0, 1e-40]);
    let mut y = [0.0f32];
    ew::relu(&[f32::NAN], &mut y);
    assert!(y[0].is_nan(), "relu propagates NaN");
    let mut dx = [9.0f32; 6];
    ew::relu_backward(&x, &[1.0; 6], &mut dx);
    assert_eq!(dx, [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]);
}

#[test]
fn add_scale_axpy_fill_match_reference() {
    let mut rng = Rng::new(2);
    for &n in SIZES {
        let a = rng.vec(n, 2.0);
        let b = rng.vec(n, 2.0);
        let mut y = vec![f32::NAN; n];
        ew::add(&a, &b, &mut y);
        for i in 0..n {
            assert_eq!(y[i], a[i] + b[i], "add n={n} i={i}");
        }
        ew::scale(&a, -0.37, &mut y);
        for i in 0..n {
            assert_eq!(y[i], -0.37 * a[i], "scale n={n} i={i}");
        }
        let mut y2 = b.clone();
        ew::axpy(1.75, &a, &mut y2);
        for i in 0..n {
            let want = b[i] as f64 + 1.75 * a[i] as f64;
            assert!(
                (y2[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "axpy n={n} i={i}"
            );
        }
        ew::fill(&mut y, 4.5);
        assert!(y.iter().all(|&v| v == 4.5), "fill n={n}");
    }
}

#[test]
fn sum_and_mean_match_f64_reference() {
    let mut rng = Rng::new(3);
    for &n in SIZES {
        // A positive offset makes the relative error meaningful.
        let x: Vec<f32> = rng.vec(n, 1.0).iter().map(|v| v + 0.5).collect();
        let want: f64 = x.iter().map(|&v| v as f64).sum();
        let got = ew::sum(&x) as f64;
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "sum n={n}: {got} vs {want}"
        );
        let m = ew::mean(&x) as f64;
        let want_m = if n == 0 { 0.0 } else { want / n as f64 };
        assert!(
            (m - want_m).abs() <= 1e-6 * want_m.abs().max(1e-3),
            "mean n={n}: {m} vs {want_m}"
        );
    }
    assert_eq!(ew::mean(&[]), 0.0);
    assert_eq!(ew::sum(&[]), 0.0);
}

#[test]
fn sum_is_f64_accurate() {
    // 2^24 + many ones: an f32 accumulator would get stuck at 2^24.
    let mut x = vec![1.0f32; 300_000];
    x[0] = 16_777_216.0;
    assert_eq!(ew::sum(&x), 16_777_216.0 + 299_999.0);
}

#[test]
fn column_sums_match_reference() {
    let mut rng = Rng::new(4);
    let shapes = [
        (1, 1),
        (3, 7),
        (13, 1),
        (1, 13),
        (127, 10),
        (1000, 3),
        (64, 1000),
        (5000, 33),
        (20_000, 10),
        (3, 70_000),
        (130, 1500),
    ];
    for &(rows, cols) in &shapes {
        let x = rng.vec(rows * cols, 1.0);
        let mut out = vec![f32::NAN; cols];
        ew::column_sums(rows, cols, &x, &mut out);
        for j in 0..cols {
            let want: f64 = (0..rows).map(|i| x[i * cols + j] as f64).sum();
            assert!(
                (out[j] as f64 - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "column_sums {rows}x{cols} j={j}: {} vs {want}",
                out[j]
            );
        }
    }
    // Degenerate shapes.
    let mut out = vec![f32::NAN; 4];
    ew::column_sums(0, 4, &[], &mut out);
    assert_eq!(out, [0.0; 4]);
    ew::column_sums(5, 0, &[], &mut []);
}

#[test]
fn reductions_are_bit_identical_across_thread_counts() {
    let mut rng = Rng::new(5);
    let x = rng.vec(1_000_003, 10.0);
    let (rows, cols) = (40_000, 25);
    let m = rng.vec(rows * cols, 10.0);
    let (wr, wc) = (7, 90_000);
    let w = rng.vec(wr * wc, 10.0);
    let run = || {
        let mut cs = vec![0.0f32; cols];
        ew::column_sums(rows, cols, &m, &mut cs);
        let mut cw = vec![0.0f32; wc];
        ew::column_sums(wr, wc, &w, &mut cw);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        (
            ew::sum(&x).to_bits(),
            ew::mean(&x).to_bits(),
            bits(&cs),
            bits(&cw),
        )
    };
    let one = pool(1).install(run);
    let two = pool(2).install(run);
    let four = pool(4).install(run);
    let default = run();
    assert_eq!(one, two);
    assert_eq!(one, four);
    assert_eq!(one, default);
}

/// Every level's maps give the scalar level's bits, on lengths around each vector width (4,
/// 8, 16), past a chunk, and with special values (NaN, ±0, ±∞, subnormals) among the inputs.
#[test]
fn maps_at_every_level_are_the_scalar_maps_bitwise() {
    let mut rng = Rng::new(7);
    let special = [
        f32::NAN,
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1e-40,
        1e-40,
    ];
    for n in [1usize, 3, 4, 5, 15, 16, 17, 33, 16_385, 40_001] {
        let mut x = rng.vec(n, 3.0);
        for (i, &v) in special.iter().enumerate() {
            if 3 * i < n {
                x[3 * i] = v;
            }
        }
        let b = rng.vec(n, 2.0);
        let run = |level: SimdLevel| {
            let mut out = vec![vec![f32::NAN; n]; 5];
            ew::relu_at(level, &x, &mut out[0]);
            ew::relu_backward_at(level, &x, &b, &mut out[1]);
            ew::add_at(level, &x, &b, &mut out[2]);
            ew::scale_at(level, &x, -0.37, &mut out[3]);
            out[4].copy_from_slice(&b);
            ew::axpy_at(level, 1.7, &x, &mut out[4]);
            bits(&out)
        };
        let want = run(SimdLevel::Scalar);
        for level in simd::available() {
            let got = run(level);
            for (k, name) in ["relu", "relu_backward", "add", "scale", "axpy"]
                .iter()
                .enumerate()
            {
                if let Some(i) = (0..n).find(|&i| got[k][i] != want[k][i]) {
                    panic!(
                        "{name} n={n} [{level}] at {i}: {} against {}",
                        f32::from_bits(got[k][i]),
                        f32::from_bits(want[k][i])
                    );
                }
            }
        }
    }
}

/// The bits of each vector.
fn bits(vs: &[Vec<f32>]) -> Vec<Vec<u32>> {
    vs.iter()
        .map(|v| v.iter().map(|v| v.to_bits()).collect())
        .collect()
}

#[test]
#[should_panic(expected = "lengths differ")]
fn mismatched_lengths_panic() {
    let mut y = [0.0f32; 3];
    ew::add(&[1.0, 2.0, 3.0], &[1.0, 2.0], &mut y);
}
