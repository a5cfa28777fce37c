//! Kernels without an AVX-512 path run their AVX2 path at the AVX-512 level: their results
//! there are bitwise those of the AVX2+FMA level (checked where the CPU runs AVX-512).

use distill_kernels::conv::{conv2d_forward_at, uses_thin_kernels};
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

#[test]
fn thin_conv_and_gemv_are_the_avx2_path() {
    if !both_levels() {
        return;
    }
    let mut rng = Rng::new(2);
    let s = Conv2dShape {
        batch: 2,
        in_channels: 1,
        in_h: 13,
        in_w: 11,
        out_channels: 8,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    };
    assert!(uses_thin_kernels(SimdLevel::Avx512, &s));
    let (x, w, b) = (
        rng.vec(s.input_len(), 1.0),
        rng.vec(s.weight_len(), 1.0),
        rng.vec(8, 1.0),
    );
    let conv = |level| {
        let mut y = vec![0.0; s.output_len()];
        conv2d_forward_at(level, &s, &x, &w, Some(&b), &mut y);
        y
    };
    assert_eq!(conv(SimdLevel::Avx512), conv(SimdLevel::Avx2Fma));

    // One row against a transposed B: the dot-product path, which has no AVX-512 code.
    let (n, k) = (300, 257);
    let (a, bt) = (rng.vec(k, 1.0), rng.vec(n * k, 1.0));
    let gemv = |level| {
        let mut c = vec![0.0; n];
        let shape = GemmShape {
            ta: Trans::N,
            tb: Trans::T,
            m: 1,
            n,
            k,
        };
        gemm_at(level, shape, &a, &bt, &mut c, Epilogue::default());
        c
    };
    assert_eq!(gemv(SimdLevel::Avx512), gemv(SimdLevel::Avx2Fma));
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
