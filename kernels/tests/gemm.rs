//! GEMM against a naive f64 reference: every transpose pair, every epilogue, every SIMD level
//! this CPU has, on shapes that hit full tiles, edge tiles, several KC blocks and the
//! multi-threaded split.

use distill_kernels::gemm::{
    blocking, gemm, gemm_at, gemm_serial_at, gemm_serial_packed_b_at, Blocking, PackedB,
};
use distill_kernels::simd::{self, CacheSizes, SimdLevel};
use distill_kernels::{Bias, Epilogue, GemmShape, Trans};

mod common;
use common::{Rng, TestRng};

fn shape(ta: Trans, tb: Trans, m: usize, n: usize, k: usize) -> GemmShape {
    GemmShape { ta, tb, m, n, k }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Ep {
    Plain,
    Accumulate,
    RowBias,
    ColBias,
    Relu,
    /// Everything at once: accumulate + per-col bias + ReLU.
    All,
}

const EPS: [Ep; 6] = [
    Ep::Plain,
    Ep::Accumulate,
    Ep::RowBias,
    Ep::ColBias,
    Ep::Relu,
    Ep::All,
];
const TRANS: [(Trans, Trans); 4] = [
    (Trans::N, Trans::N),
    (Trans::N, Trans::T),
    (Trans::T, Trans::N),
    (Trans::T, Trans::T),
];

/// Element (i, p) of op(A) and (p, j) of op(B) in their stored layouts.
fn a_at(ta: Trans, a: &[f32], m: usize, k: usize, i: usize, p: usize) -> f32 {
    match ta {
        Trans::N => a[i * k + p],
        Trans::T => a[p * m + i],
    }
}
fn b_at(tb: Trans, b: &[f32], k: usize, n: usize, p: usize, j: usize) -> f32 {
    match tb {
        Trans::N => b[p * n + j],
        Trans::T => b[j * k + p],
    }
}

/// One (transposes, shape) case: random operands and the f64 reference product, computed
/// once and then checked against every SIMD level and every epilogue.
struct Case {
    ta: Trans,
    tb: Trans,
    m: usize,
    n: usize,
    k: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c0: Vec<f32>,
    row_bias: Vec<f32>,
    col_bias: Vec<f32>,
    /// Σ_p op(A)[i,p]·op(B)[p,j] in f64, and Σ_p |…| (the rounding-error scale).
    prod: Vec<f64>,
    mag: Vec<f64>,
}

impl Case {
    fn new(ta: Trans, tb: Trans, m: usize, n: usize, k: usize, seed: u64) -> Case {
        let mut rng = Rng::new(seed ^ ((m * 1_000_003 + n * 1009 + k) as u64));
        let a = rng.vec(m * k, 1.0);
        let b = rng.vec(k * n, 1.0);
        let mut prod = vec![0.0f64; m * n];
        let mut mag = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    let t = a_at(ta, &a, m, k, i, p) as f64 * b_at(tb, &b, k, n, p, j) as f64;
                    prod[i * n + j] += t;
                    mag[i * n + j] += t.abs();
                }
            }
        }
        Case {
            ta,
            tb,
            m,
            n,
            k,
            a,
            b,
            c0: rng.vec(m * n, 1.0),
            row_bias: rng.vec(m, 1.0),
            col_bias: rng.vec(n, 1.0),
            prod,
            mag,
        }
    }

    /// Run on `level` with epilogue `ep` and compare with the reference; panics with context.
    fn check(&self, level: SimdLevel, ep: Ep) {
        let Case {
            ta, tb, m, n, k, ..
        } = *self;
        let accumulate = matches!(ep, Ep::Accumulate | Ep::All);
        let relu = matches!(ep, Ep::Relu | Ep::All);
        let bias = match ep {
            Ep::RowBias => Bias::PerRow(&self.row_bias),
            Ep::ColBias | Ep::All => Bias::PerCol(&self.col_bias),
            _ => Bias::None,
        };
        let mut c = self.c0.clone();
        let epi = Epilogue {
            accumulate,
            bias,
            relu,
        };
        gemm_at(level, shape(ta, tb, m, n, k), &self.a, &self.b, &mut c, epi);
        for i in 0..m {
            for j in 0..n {
                let (mut want, mut mag) = (self.prod[i * n + j], self.mag[i * n + j]);
                let mut add = |x: f32| {
                    want += x as f64;
                    mag += (x as f64).abs();
                };
                if accumulate {
                    add(self.c0[i * n + j]);
                }
                match bias {
                    Bias::PerRow(bb) => add(bb[i]),
                    Bias::PerCol(bb) => add(bb[j]),
                    Bias::None => {}
                }
                if relu {
                    want = want.max(0.0);
                }
                let got = c[i * n + j] as f64;
                // f32 sums of k+2 terms: error ≤ (k+2)·ε·Σ|terms| (blocked FMA sums do better).
                let tol = 2.0 * f32::EPSILON as f64 * (k as f64 + 2.0) * mag + 1e-30;
                assert!(
                    (got - want).abs() <= tol,
                    "{level:?} {ta:?}{tb:?} m={m} n={n} k={k} {ep:?}: \
                     C[{i},{j}] = {got}, want {want} (tol {tol})"
                );
                if relu {
                    assert!(got >= 0.0, "relu left a negative at C[{i},{j}]");
                }
            }
        }
    }

    fn check_all(&self) {
        for level in simd::available() {
            for &ep in &EPS {
                self.check(level, ep);
            }
        }
    }
}

fn shapes() -> Vec<(usize, usize, usize)> {
    vec![
        (1, 1, 1),
        (3, 3, 3),
        (7, 13, 1),
        (6, 16, 7),
        (13, 7, 13),
        (12, 32, 256),
        (7, 17, 257),
        (127, 1, 3),
        (1, 127, 13),
        (1000, 7, 13),
        (13, 1000, 3),
        (3, 13, 1000),
        (127, 127, 127),
        (64, 300, 65),
        // m = 1 with B transposed takes the streaming dot-product path (batch-1 inference);
        // the first is large enough for its threaded split.
        (1, 1000, 700),
        (1, 5, 1001),
    ]
}

#[test]
fn matches_reference_every_transpose_epilogue_and_level() {
    for &(ta, tb) in &TRANS {
        for &(m, n, k) in &shapes() {
            Case::new(ta, tb, m, n, k, 17).check_all();
        }
    }
}

/// Odd sizes in every dimension, and sizes around both tiles (6×16 and 14×32), so full tiles,
/// ragged tails in rows and columns, and ragged last KC blocks all meet every level.
#[test]
fn odd_sizes_every_level() {
    const ODD: [usize; 7] = [1, 7, 13, 31, 33, 65, 127];
    let mut shapes = Vec::new();
    for &s in &ODD {
        shapes.extend([(s, s, s), (s, 31, 33), (33, s, 13), (13, 65, s)]);
    }
    shapes.extend([
        (14, 32, 5),
        (15, 33, 129),
        (28, 64, 128),
        (29, 95, 257),
        (6, 48, 300),
    ]);
    for &(ta, tb) in &TRANS {
        for &(m, n, k) in &shapes {
            Case::new(ta, tb, m, n, k, 23).check_all();
        }
    }
}

/// Large enough to cross MC/KC/NC block edges and take the multi-threaded path.
#[test]
fn large_blocked_shapes() {
    for &(ta, tb) in &TRANS {
        // n > NC (3072): two column panels; k > KC: several depth blocks.
        Case::new(ta, tb, 7, 3100, 300, 5).check_all();
        // m > MC: several row blocks, with a ragged last one.
        Case::new(ta, tb, 401, 45, 520, 6).check_all();
        // Small m, wide n: the split over n is what feeds the threads.
        Case::new(ta, tb, 64, 1000, 40, 7).check_all();
    }
}

/// The default entry point picks a level and agrees with the explicit one.
#[test]
fn gemm_uses_the_process_level() {
    let (m, n, k) = (37, 45, 53);
    let mut rng = Rng::new(99);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let mut c1 = vec![0.0; m * n];
    let mut c2 = vec![1.0; m * n];
    gemm(
        shape(Trans::N, Trans::T, m, n, k),
        &a,
        &b,
        &mut c1,
        Epilogue::default(),
    );
    gemm_at(
        simd::level(),
        shape(Trans::N, Trans::T, m, n, k),
        &a,
        &b,
        &mut c2,
        Epilogue::default(),
    );
    assert_eq!(c1, c2);
}

/// Results do not depend on the SIMD path beyond rounding, nor on threads at all: two runs of
/// the same multi-threaded call are bitwise equal.
#[test]
fn deterministic_across_runs() {
    let (m, n, k) = (300, 500, 700);
    let mut rng = Rng::new(3);
    let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
    let run = || {
        let mut c = vec![0.0; m * n];
        gemm(
            shape(Trans::N, Trans::N, m, n, k),
            &a,
            &b,
            &mut c,
            Epilogue::default(),
        );
        c
    };
    let first = run();
    for _ in 0..3 {
        assert_eq!(first, run());
    }
}

/// An element of C does not depend on how many rows and columns lie past it: a problem whose
/// last tiles are cut short by the edges (AVX-512 runs them on kernels of just their rows and
/// vectors) gives the same bits there as a bigger problem on the same leading rows of A and
/// columns of B, at every level, for every row count left in the last sliver of either tile
/// (14 and 6 rows) and every column count left in the last sliver of 32 columns.
#[test]
fn tiles_cut_by_the_edges_match_a_bigger_problem() {
    let (big_m, big_n, k) = (140, 96, 300);
    let mut rng = Rng::new(5);
    let (a, b_full, rb, c_full) = (
        rng.vec(big_m * k, 1.0),
        rng.vec(k * big_n, 1.0),
        rng.vec(big_m, 1.0),
        rng.vec(big_m * big_n, 1.0),
    );
    // The leading m×n corner of a row-major matrix with `cols` columns.
    let corner = |x: &[f32], cols: usize, m: usize, n: usize| -> Vec<f32> {
        x.chunks_exact(cols)
            .take(m)
            .flat_map(|r| r[..n].to_vec())
            .collect()
    };
    for level in simd::available() {
        let run = |m: usize, n: usize| {
            let mut c = corner(&c_full, big_n, m, n);
            let ep = Epilogue {
                accumulate: true,
                bias: Bias::PerRow(&rb[..m]),
                relu: true,
            };
            let b = corner(&b_full, big_n, k, n);
            gemm_at(
                level,
                shape(Trans::N, Trans::N, m, n, k),
                &a,
                &b,
                &mut c,
                ep,
            );
            c
        };
        let full = run(big_m, big_n);
        let sizes = (127..big_m)
            .map(|m| (m, big_n))
            .chain((65..big_n).map(|n| (big_m, n)));
        for (m, n) in sizes {
            let got = run(m, n);
            assert!(
                got.iter()
                    .zip(&corner(&full, big_n, m, n))
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "[{level}] {m}×{n} differs from the same corner of {big_m}×{big_n}"
            );
        }
    }
}

/// B written row by row (in runs that cross sliver boundaries) into the packed layout gives the
/// same bits as the dense GEMM, at every level, for either op(A), an epilogue with a bias,
/// n off the sliver width, k over several KC blocks, and m over one MC block (the deep KC).
#[test]
fn packed_b_matches_the_dense_gemm() {
    let mut rng = Rng::new(21);
    for level in simd::available() {
        for (ta, m, n, k) in [
            (Trans::N, 128, 3136, 576),
            (Trans::T, 37, 45, 19),
            (Trans::N, 1, 33, 700),
            (Trans::T, 1100, 70, 600),
        ] {
            let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
            let bias = rng.vec(m, 1.0);
            let ep = Epilogue {
                accumulate: false,
                bias: Bias::PerRow(&bias),
                relu: true,
            };
            let sh = shape(ta, Trans::N, m, n, k);
            let mut dense = vec![0.0; m * n];
            gemm_serial_at(level, sh, &a, &b, &mut dense, ep);

            let layout = PackedB::new(level, m, n, k).expect("one panel");
            let mut packed = vec![f32::NAN; layout.len()];
            layout.zero_padding(&mut packed);
            for kk in 0..k {
                // Runs of 7 columns: most of them straddle a sliver boundary.
                for j in (0..n).step_by(7) {
                    let end = (j + 7).min(n);
                    layout.write_row(&mut packed, kk, j, &b[kk * n + j..kk * n + end]);
                }
            }
            assert!(
                packed.iter().all(|v| v.is_finite()),
                "{level} {m}×{n}×{k}: a hole"
            );
            let mut c = vec![f32::NAN; m * n];
            gemm_serial_packed_b_at(level, sh, &a, &layout, &packed, &mut c, ep);
            assert!(
                c.iter()
                    .zip(&dense)
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{level} {ta:?} {m}×{n}×{k}: packed B differs from the dense GEMM"
            );
        }
    }
}

/// Every C element is summed in the same order whatever the tiling, so the result is bitwise
/// the same on 1, 2 or 3 threads — for the shared-B path (tall m) and the per-tile-B path
/// (short m, deep k) alike.
#[test]
fn independent_of_thread_count() {
    let mut rng = Rng::new(8);
    for (m, n, k) in [(400, 300, 600), (64, 700, 900)] {
        let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
        let bias = rng.vec(n, 1.0);
        let run = |level: SimdLevel, threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut c = vec![0.0; m * n];
            let ep = Epilogue {
                accumulate: false,
                bias: Bias::PerCol(&bias),
                relu: true,
            };
            let sh = shape(Trans::T, Trans::T, m, n, k);
            pool.install(|| gemm_at(level, sh, &a, &b, &mut c, ep));
            c
        };
        for level in simd::available() {
            let one = run(level, 1);
            assert_eq!(
                one,
                run(level, 2),
                "{level:?} m={m} n={n} k={k}: 1 vs 2 threads"
            );
            assert_eq!(
                one,
                run(level, 3),
                "{level:?} m={m} n={n} k={k}: 1 vs 3 threads"
            );
        }
        let one = run(simd::level(), 1);
        let mut c = vec![0.0; m * n];
        let ep = Epilogue {
            accumulate: false,
            bias: Bias::PerCol(&bias),
            relu: true,
        };
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| gemm(shape(Trans::T, Trans::T, m, n, k), &a, &b, &mut c, ep));
        assert_eq!(one, c, "m={m} n={n} k={k}: gemm vs gemm_at(level())");
        // The single-threaded entry point (conv2d's chunks in parallel) gives the same bits
        // on a pool of 3, and accumulates like the pooled one.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let (mut serial, mut pooled) = (one.clone(), one.clone());
        let ep = Epilogue {
            accumulate: true,
            bias: Bias::PerCol(&bias),
            relu: false,
        };
        let level = simd::level();
        pool.install(|| {
            gemm_serial_at(
                level,
                shape(Trans::T, Trans::T, m, n, k),
                &a,
                &b,
                &mut serial,
                ep,
            );
            gemm_at(
                level,
                shape(Trans::T, Trans::T, m, n, k),
                &a,
                &b,
                &mut pooled,
                ep,
            );
        });
        assert_eq!(serial, pooled, "m={m} n={n} k={k}: serial vs pooled");
        let mut fresh = vec![0.0; m * n];
        let ep = Epilogue {
            accumulate: false,
            bias: Bias::PerCol(&bias),
            relu: true,
        };
        gemm_serial_at(
            level,
            shape(Trans::T, Trans::T, m, n, k),
            &a,
            &b,
            &mut fresh,
            ep,
        );
        assert_eq!(fresh, one, "m={m} n={n} k={k}: serial vs 1 thread");
    }
}

#[test]
fn degenerate_sizes() {
    for level in simd::available() {
        // m or n = 0: nothing to do, nothing touched.
        let mut c = vec![5.0f32; 4];
        gemm_at(
            level,
            shape(Trans::N, Trans::N, 0, 4, 3),
            &[0.0; 0],
            &[0.0; 12],
            &mut c[..0],
            Epilogue::default(),
        );
        gemm_at(
            level,
            shape(Trans::N, Trans::N, 4, 0, 3),
            &[0.0; 12],
            &[],
            &mut c[..0],
            Epilogue::default(),
        );
        assert_eq!(c, [5.0; 4]);

        // k = 0: the product is zero, so C = relu(C? + bias).
        let rb = [1.0f32, -2.0];
        let cb = [0.5f32, -3.0, 2.0];
        let mut c = vec![1.0f32; 6];
        gemm_at(
            level,
            shape(Trans::N, Trans::N, 2, 3, 0),
            &[],
            &[],
            &mut c,
            Epilogue::default(),
        );
        assert_eq!(c, [0.0; 6]);

        let mut c = vec![1.0f32; 6];
        let ep = Epilogue {
            accumulate: true,
            bias: Bias::PerRow(&rb),
            relu: false,
        };
        gemm_at(
            level,
            shape(Trans::T, Trans::T, 2, 3, 0),
            &[],
            &[],
            &mut c,
            ep,
        );
        assert_eq!(c, [2.0, 2.0, 2.0, -1.0, -1.0, -1.0]);

        let mut c = vec![1.0f32; 6];
        let ep = Epilogue {
            accumulate: false,
            bias: Bias::PerCol(&cb),
            relu: true,
        };
        gemm_at(
            level,
            shape(Trans::N, Trans::T, 2, 3, 0),
            &[],
            &[],
            &mut c,
            ep,
        );
        assert_eq!(c, [0.5, 0.0, 2.0, 0.5, 0.0, 2.0]);
    }
}

/// C is overwritten, not accumulated, unless asked: stale values (even NaN) must not leak in.
#[test]
fn overwrite_ignores_stale_c() {
    for level in simd::available() {
        let (m, n, k) = (13, 37, 300);
        let mut rng = Rng::new(11);
        let (a, b) = (rng.vec(m * k, 1.0), rng.vec(k * n, 1.0));
        let mut c = vec![f32::NAN; m * n];
        gemm_at(
            level,
            shape(Trans::N, Trans::N, m, n, k),
            &a,
            &b,
            &mut c,
            Epilogue::default(),
        );
        assert!(c.iter().all(|v| v.is_finite()));
    }
}

/// Operand slices longer than needed are fine; C past m·n is left alone.
#[test]
fn longer_slices_are_ok_and_tail_untouched() {
    let (m, n, k) = (5, 9, 11);
    let mut rng = Rng::new(21);
    let (a, b) = (rng.vec(m * k + 7, 1.0), rng.vec(k * n + 3, 1.0));
    let mut c = vec![42.0f32; m * n + 5];
    gemm(
        shape(Trans::N, Trans::N, m, n, k),
        &a,
        &b,
        &mut c,
        Epilogue::default(),
    );
    assert_eq!(&c[m * n..], &[42.0; 5]);
}

#[test]
#[should_panic(expected = "operand too short")]
fn short_operand_panics() {
    let mut c = vec![0.0f32; 4];
    gemm(
        shape(Trans::N, Trans::N, 2, 2, 2),
        &[1.0; 3],
        &[1.0; 4],
        &mut c,
        Epilogue::default(),
    );
}

/// The blocking follows the level's tile and the caches; where the caches cannot be read the
/// AVX2 blocking is the long-measured 256 / 192 / 3072.
#[test]
fn blocking_follows_tile_and_caches() {
    let b = Blocking::derive(SimdLevel::Avx2Fma, 6, 16, CacheSizes::FALLBACK);
    assert_eq!((b.kc, b.mc, b.nc), (256, 192, 3072), "{b}");
    let b = Blocking::derive(SimdLevel::Avx512, 14, 32, CacheSizes::FALLBACK);
    assert_eq!((b.kc, b.mc, b.nc), (128, 378, 6144), "{b}");
    // A Zen 5 core as the hardware describes it: 48 KiB L1d, 1 MiB L2.
    let zen5 = CacheSizes {
        l1d: 48 << 10,
        l2: 1 << 20,
        l3: 32 << 20,
        source: "test",
    };
    let b = Blocking::derive(SimdLevel::Avx512, 14, 32, zen5);
    assert_eq!((b.kc, b.mc, b.nc), (192, 504, 4096), "{b}");
    for level in simd::available() {
        let b = blocking(level);
        assert_eq!(b.level, level);
        assert!(
            b.kc >= 64 && b.mc >= b.mr && b.mc.is_multiple_of(b.mr),
            "{b}"
        );
        assert!(b.nc.is_multiple_of(b.nr), "{b}");
        // One B sliver and one A sliver fit in L1d where the caches are roomy enough.
        if b.kc > 64 {
            assert!((b.mr + b.nr) * b.kc * 4 <= b.caches.l1d, "{b}");
        }
        let shown = b.to_string();
        assert!(
            shown.contains(level.name()) && shown.contains("KC"),
            "{shown}"
        );
        if level == SimdLevel::Avx512 {
            assert_eq!((b.mr, b.nr), (14, 32));
        }
    }
}
