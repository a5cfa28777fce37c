//! The kernels at each SIMD level the CPU runs, against f64 references: the thin conv
//! kernels, GEMV and the softmax rows, which have AVX-512 and NEON paths of their own. Where a
//! level hands a short row to a narrower path (softmax rows of 8 to 15 at AVX-512), the result
//! is checked bitwise against that path.

use distill_kernels::conv::{
    conv2d_backward_input_at, conv2d_backward_weight_at, conv2d_forward_at, uses_thin_kernels,
};
use distill_kernels::gemm::gemm_at;
use distill_kernels::simd::SimdLevel;
use distill_kernels::softmax::{log_softmax_at, softmax_at};
use distill_kernels::{Conv2dShape, Epilogue, GemmShape, Trans};

mod common;
use common::{Rng, TestRng};

fn both_levels() -> bool {
    SimdLevel::Avx512.is_supported()
}

/// Softmax and log-softmax at the AVX-512 level: rows of 16 or more take its own path, checked
/// against an f64 reference; rows of 8 to 15 take the AVX2 path, bitwise.
#[test]
fn softmax_at_avx512_matches_the_reference() {
    if !both_levels() {
        return;
    }
    let mut rng = Rng::new(1);
    for (rows, cols) in [(3, 7), (5, 8), (3, 15), (4, 16), (4, 37), (2, 1000)] {
        let x = rng.vec(rows * cols, 4.0);
        for (log, f) in [(false, softmax_at as Softmax), (true, log_softmax_at)] {
            let run = |level| {
                let mut y = vec![0.0; rows * cols];
                f(level, rows, cols, &x, 2.0, &mut y);
                y
            };
            let got = run(SimdLevel::Avx512);
            if cols < 16 {
                assert_eq!(got, run(SimdLevel::Avx2Fma), "{rows}×{cols}");
                continue;
            }
            for (r, (x, y)) in x.chunks(cols).zip(got.chunks(cols)).enumerate() {
                let m = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
                let lse = x
                    .iter()
                    .map(|&v| ((v as f64 - m) / 2.0).exp())
                    .sum::<f64>()
                    .ln();
                for (j, (&x, &y)) in x.iter().zip(y).enumerate() {
                    let log_p = (x as f64 - m) / 2.0 - lse;
                    let (want, tol) = if log {
                        (log_p, 1e-5)
                    } else {
                        (log_p.exp(), 1e-6)
                    };
                    assert!(
                        (y as f64 - want).abs() <= tol * want.abs().max(1e-3),
                        "{rows}×{cols} log={log} [{r}, {j}]: {y} against {want}"
                    );
                }
            }
        }
    }
}

type Softmax = fn(SimdLevel, usize, usize, &[f32], f32, &mut [f32]);

/// `Σ terms` in f64 and `Σ |terms|` (the error scale of an f32 sum of them).
fn sum_and_scale(terms: impl Iterator<Item = f64>) -> (f64, f64) {
    terms.fold((0.0, 0.0), |(s, m), t| (s + t, m + t.abs()))
}

fn assert_close(got: f32, (want, scale): (f64, f64), what: &str) {
    let tol = 1e-5 * scale + 1e-6;
    assert!(
        (got as f64 - want).abs() <= tol,
        "{what}: got {got}, want {want} (tol {tol})"
    );
}

/// The thin conv kernels at each level with a path of its own (AVX2+FMA and AVX-512 on
/// x86-64, NEON on aarch64), against direct f64 sums, on a shape whose pixel count (143) is
/// no multiple of 4, 8 or 16 and with an odd channel count: forward, input and weight
/// gradients.
#[test]
fn thin_conv_matches_reference_at_each_level() {
    let mut rng = Rng::new(2);
    let s = Conv2dShape {
        batch: 2,
        in_channels: 1,
        in_h: 13,
        in_w: 11,
        out_channels: 7,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    };
    let (x, w, b, dy) = (
        rng.vec(s.input_len(), 1.0),
        rng.vec(s.weight_len(), 1.0),
        rng.vec(s.out_channels, 1.0),
        rng.vec(s.output_len(), 1.0),
    );
    let (h, wd, co) = (s.in_h as isize, s.in_w as isize, s.out_channels);
    let plane = s.in_h * s.in_w;
    // Input pixel of tap (i, j) at output (oy, ox), if inside (same padding, stride 1).
    let tap = |oy: usize, ox: usize, i: usize, j: usize| {
        let (iy, ix) = (oy as isize + i as isize - 1, ox as isize + j as isize - 1);
        (iy >= 0 && ix >= 0 && iy < h && ix < wd).then(|| iy as usize * s.in_w + ix as usize)
    };
    let taps = |oy, ox| (0..9).filter_map(move |t| tap(oy, ox, t / 3, t % 3).map(|q| (t, q)));
    for level in distill_kernels::simd::available() {
        if !uses_thin_kernels(level, &s) {
            continue;
        }
        let name = level.name();
        let mut y = vec![f32::NAN; s.output_len()];
        conv2d_forward_at(level, &s, &x, &w, Some(&b), &mut y);
        let mut dx = vec![f32::NAN; s.input_len()];
        conv2d_backward_input_at(level, &s, &w, &dy, &mut dx);
        let mut dw = vec![f32::NAN; s.weight_len()];
        conv2d_backward_weight_at(level, &s, &x, &dy, &mut dw);
        for n in 0..s.batch {
            for c in 0..co {
                for oy in 0..s.in_h {
                    for ox in 0..s.in_w {
                        let at = (n * co + c) * plane + oy * s.in_w + ox;
                        let terms = taps(oy, ox)
                            .map(|(t, q)| w[c * 9 + t] as f64 * x[n * plane + q] as f64);
                        let (v, m) = sum_and_scale(terms);
                        let bias = b[c] as f64;
                        assert_close(
                            y[at],
                            (v + bias, m + bias.abs()),
                            &format!("{name} y[{at}]"),
                        );
                    }
                }
            }
        }
        for n in 0..s.batch {
            for q in 0..plane {
                // dx[q] = Σ over outputs whose tap lands on q.
                let (iy, ix) = (q / s.in_w, q % s.in_w);
                let terms = (0..co).flat_map(|c| {
                    (0..9).filter_map(move |t| {
                        let (oy, ox) = (
                            iy as isize + 1 - (t / 3) as isize,
                            ix as isize + 1 - (t % 3) as isize,
                        );
                        (oy >= 0 && ox >= 0 && oy < h && ox < wd)
                            .then(|| (c, t, oy as usize * s.in_w + ox as usize))
                    })
                });
                let terms = terms
                    .map(|(c, t, o)| w[c * 9 + t] as f64 * dy[(n * co + c) * plane + o] as f64);
                assert_close(
                    dx[n * plane + q],
                    sum_and_scale(terms),
                    &format!("{name} dx[{n}, {q}]"),
                );
            }
        }
        for c in 0..co {
            for t in 0..9 {
                let terms = (0..s.batch).flat_map(|n| {
                    (0..plane).filter_map(move |o| {
                        tap(o / s.in_w, o % s.in_w, t / 3, t % 3).map(|q| (n, o, q))
                    })
                });
                let terms = terms
                    .map(|(n, o, q)| x[n * plane + q] as f64 * dy[(n * co + c) * plane + o] as f64);
                assert_close(
                    dw[c * 9 + t],
                    sum_and_scale(terms),
                    &format!("{name} dw[{c}, {t}]"),
                );
            }
        }
    }
}

/// One row against a transposed B (the dot-product path, with a path per level) at every
/// level the CPU runs, against f64 dot products: lengths with ragged ends for 4, 16 and 64
/// lanes, and shorter than one vector.
#[test]
fn gemv_matches_reference_at_each_level() {
    let mut rng = Rng::new(3);
    for (n, k) in [(300, 257), (5, 3), (7, 79)] {
        let (a, bt) = (rng.vec(k, 1.0), rng.vec(n * k, 1.0));
        for level in distill_kernels::simd::available() {
            let mut c = vec![f32::NAN; n];
            let shape = GemmShape {
                ta: Trans::N,
                tb: Trans::T,
                m: 1,
                n,
                k,
            };
            gemm_at(level, shape, &a, &bt, &mut c, Epilogue::default());
            for (j, &got) in c.iter().enumerate() {
                let terms = (0..k).map(|p| a[p] as f64 * bt[j * k + p] as f64);
                assert_close(got, sum_and_scale(terms), &format!("{level} k={k} c[{j}]"));
            }
        }
    }
}

/// The levels this target detects, printed (`--nocapture`) so a CI log says which paths its
/// tests ran: every test that loops over `simd::available()` runs each of them. On aarch64
/// (natively or under qemu-user, `.ci/platforms.sh`) NEON must be detected and be the
/// default, or the GEMM tests would only ever run the scalar microkernel there.
#[test]
fn the_levels_this_target_detects() {
    use distill_kernels::simd;
    let available = simd::available();
    eprintln!(
        "{}: SIMD levels detected: {}; default: {}",
        std::env::consts::ARCH,
        available
            .iter()
            .map(|l| l.name())
            .collect::<Vec<_>>()
            .join(", "),
        simd::default_level()
    );
    assert_eq!(available[0], SimdLevel::Scalar);
    if cfg!(target_arch = "aarch64") {
        assert_eq!(available, [SimdLevel::Scalar, SimdLevel::Neon]);
        assert_eq!(simd::default_level(), SimdLevel::Neon);
    }
}
