//! max_pool2d against a naive reference: overlapping windows, ties, NaN/−∞, rectangular
//! windows and strides, and the backward routing (including gradient summed on overlaps).
//! Every forward and backward runs at every SIMD level the CPU has (the 2×2/stride-2 window
//! has a path per level), and all levels must give the same bits.

use distill_kernels::pool::{
    max_pool2d_backward, max_pool2d_backward_at, max_pool2d_forward, max_pool2d_forward_at,
};
use distill_kernels::{simd, Pool2dShape};

mod common;
use common::{Rng, TestRng};

#[allow(clippy::too_many_arguments)]
fn shape(
    batch: usize,
    channels: usize,
    (in_h, in_w): (usize, usize),
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
) -> Pool2dShape {
    let s = Pool2dShape {
        batch,
        channels,
        in_h,
        in_w,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
    };
    s.validate().expect("test shape must be valid");
    s
}

fn shapes() -> Vec<Pool2dShape> {
    vec![
        shape(2, 3, (28, 28), (2, 2), (2, 2)),
        // 2x2 stride 2 on odd sizes: the last row and column are dropped (floor mode).
        shape(2, 3, (7, 9), (2, 2), (2, 2)),
        shape(3, 7, (13, 13), (3, 3), (2, 2)),
        shape(1, 1, (7, 7), (3, 3), (1, 1)),
        shape(2, 3, (7, 13), (2, 3), (1, 2)),
        shape(1, 13, (7, 3), (3, 1), (3, 1)),
        shape(2, 2, (5, 5), (5, 5), (1, 1)),
        shape(2, 2, (1, 1), (1, 1), (1, 1)),
        shape(4, 3, (9, 8), (1, 1), (2, 3)),
        shape(64, 5, (14, 14), (2, 2), (2, 2)),
        // 2×2/2 rows of 35 and 1 outputs: two full AVX-512 vectors and a ragged end of 3
        // (eight NEON vectors and 3), and a row shorter than every vector.
        shape(3, 2, (6, 71), (2, 2), (2, 2)),
        shape(2, 3, (3, 2), (2, 2), (2, 2)),
    ]
}

/// The reference: scan each window in row-major order, first strict maximum wins
/// (no NaNs in these inputs).
fn reference_forward(s: &Pool2dShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let mut y = Vec::new();
    let mut a = Vec::new();
    for p in 0..s.batch * s.channels {
        let plane = &x[p * s.in_h * s.in_w..(p + 1) * s.in_h * s.in_w];
        for r in 0..oh {
            for c in 0..ow {
                let mut best = None::<(f32, usize)>;
                for i in 0..s.kernel_h {
                    for j in 0..s.kernel_w {
                        let idx = (r * s.stride_h + i) * s.in_w + c * s.stride_w + j;
                        if best.is_none_or(|(b, _)| plane[idx] > b) {
                            best = Some((plane[idx], idx));
                        }
                    }
                }
                let (v, i) = best.unwrap();
                y.push(v);
                a.push(i as u32);
            }
        }
    }
    (y, a)
}

/// The forward at every SIMD level this CPU runs, checked to agree bit for bit (and with the
/// default entry point); returns the scalar level's result.
fn run_forward(s: &Pool2dShape, x: &[f32]) -> (Vec<f32>, Vec<u32>) {
    let run = |level: Option<simd::SimdLevel>| {
        let mut y = vec![f32::NAN; s.output_len()];
        let mut a = vec![u32::MAX; s.output_len()];
        match level {
            Some(level) => max_pool2d_forward_at(level, s, x, &mut y, &mut a),
            None => max_pool2d_forward(s, x, &mut y, &mut a),
        }
        (y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y, a)
    };
    let (scalar_bits, y, a) = run(Some(simd::SimdLevel::Scalar));
    for level in simd::available().into_iter().map(Some).chain([None]) {
        let (bits, _, args) = run(level);
        assert_eq!(args, a, "argmax at {level:?} differs from scalar for {s:?}");
        assert_eq!(
            bits, scalar_bits,
            "y at {level:?} differs from scalar for {s:?}"
        );
    }
    (y, a)
}

#[test]
fn forward_matches_reference_on_random_inputs() {
    for (t, s) in shapes().iter().enumerate() {
        let mut rng = Rng::new(10 + t as u64);
        let x: Vec<f32> = (0..s.input_len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
        assert_eq!(run_forward(s, &x), reference_forward(s, &x), "{s:?}");
    }
}

#[test]
fn ties_pick_the_first_maximum() {
    for (t, s) in shapes().iter().enumerate() {
        let mut rng = Rng::new(20 + t as u64);
        let x: Vec<f32> = (0..s.input_len()).map(|_| rng.level(3)).collect();
        assert_eq!(run_forward(s, &x), reference_forward(s, &x), "{s:?}");
    }
    // All equal: every window reports its top-left corner.
    let s = shape(1, 1, (5, 5), (3, 3), (2, 2));
    let (y, a) = run_forward(&s, &[1.5; 25]);
    assert_eq!(y, vec![1.5; 4]);
    assert_eq!(a, vec![0, 2, 10, 12]);
}

#[test]
fn nan_propagates_and_negative_infinity_is_a_value() {
    let s = shape(1, 1, (2, 4), (2, 2), (2, 2));
    let nan = f32::NAN;
    let ninf = f32::NEG_INFINITY;
    // Window 0 = {0: 1, 1: NaN, 4: 5, 5: NaN}; window 1 = all −∞.
    let x = [1.0, nan, ninf, ninf, 5.0, nan, ninf, ninf];
    let (y, a) = run_forward(&s, &x);
    assert!(y[0].is_nan(), "a NaN in the window makes the output NaN");
    assert_eq!(a[0], 5, "PyTorch's rule: the last NaN of the window");
    assert_eq!(y[1], ninf);
    assert_eq!(a[1], 2, "all −∞: the first element");
}

/// The same rules on rows wide enough for the vectorised 2×2 path, against the reference.
#[test]
fn nan_and_ties_on_the_wide_2x2_path() {
    let s = shape(2, 3, (4, 37), (2, 2), (2, 2));
    let mut rng = Rng::new(77);
    let x: Vec<f32> = (0..s.input_len())
        .map(|_| match rng.level(6) as i32 {
            0 => f32::NAN,
            1 => f32::NEG_INFINITY,
            v => v as f32,
        })
        .collect();
    let (y, a) = run_forward(&s, &x);
    // PyTorch's rule, written out: start at −∞ on the first element; a later element wins if
    // it is greater or NaN (so NaN propagates and the last NaN is reported).
    let (mut y_ref, mut a_ref) = (Vec::new(), Vec::new());
    for p in 0..s.batch * s.channels {
        let plane = &x[p * s.in_h * s.in_w..(p + 1) * s.in_h * s.in_w];
        for r in 0..s.out_h() {
            for c in 0..s.out_w() {
                let (mut best, mut at) = (f32::NEG_INFINITY, 2 * r * s.in_w + 2 * c);
                for idx in [
                    2 * r * s.in_w + 2 * c,
                    2 * r * s.in_w + 2 * c + 1,
                    (2 * r + 1) * s.in_w + 2 * c,
                    (2 * r + 1) * s.in_w + 2 * c + 1,
                ] {
                    if plane[idx] > best || plane[idx].is_nan() {
                        (best, at) = (plane[idx], idx);
                    }
                }
                y_ref.push(best);
                a_ref.push(at as u32);
            }
        }
    }
    assert_eq!(a, a_ref);
    assert_eq!(
        y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        y_ref.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    assert!(y.iter().any(|v| v.is_nan()) && y.iter().any(|v| !v.is_nan()));
}

/// The backward at every SIMD level this CPU runs, into a dx of NaNs (every pixel must be
/// written), checked to agree bit for bit (and with the default entry point); returns the
/// scalar level's dx.
fn run_backward(s: &Pool2dShape, dy: &[f32], a: &[u32]) -> Vec<f32> {
    let run = |level: Option<simd::SimdLevel>| {
        let mut dx = vec![f32::NAN; s.input_len()];
        match level {
            Some(level) => max_pool2d_backward_at(level, s, dy, a, &mut dx),
            None => max_pool2d_backward(s, dy, a, &mut dx),
        }
        dx
    };
    let dx = run(Some(simd::SimdLevel::Scalar));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for level in simd::available().into_iter().map(Some).chain([None]) {
        assert_eq!(
            bits(&run(level)),
            bits(&dx),
            "dx at {level:?} differs from scalar for {s:?}"
        );
    }
    dx
}

/// Backward routes dy to the arg-max; overlapping windows (3/2, 3/1) sum into shared inputs.
#[test]
fn backward_routes_and_sums_gradients() {
    for (t, s) in shapes().iter().enumerate() {
        let mut rng = Rng::new(30 + t as u64);
        // Ties too, so several windows pick the same input.
        let x: Vec<f32> = (0..s.input_len()).map(|_| rng.level(4)).collect();
        let (_, a) = run_forward(s, &x);
        let dy: Vec<f32> = (0..s.output_len())
            .map(|_| rng.uniform(-1.0, 1.0))
            .collect();
        let mut want = vec![0.0f64; s.input_len()];
        let (in_plane, out_plane) = (s.in_h * s.in_w, s.out_h() * s.out_w());
        for (i, (&g, &idx)) in dy.iter().zip(&a).enumerate() {
            want[(i / out_plane) * in_plane + idx as usize] += g as f64;
        }
        let dx = run_backward(s, &dy, &a);
        for (i, (&g, &w)) in dx.iter().zip(&want).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "dx[{i}] = {g}, want {w} for {s:?}"
            );
        }
        // Gradient is conserved: Σ dx = Σ dy.
        let (sx, sy): (f64, f64) = (
            dx.iter().map(|&v| v as f64).sum(),
            dy.iter().map(|&v| v as f64).sum(),
        );
        assert!((sx - sy).abs() <= 1e-4 * (1.0 + sy.abs()));
    }
    // A hand-checked overlap: 1×5 row, window 1×3 stride 1, maximum in the middle.
    let s = shape(1, 1, (1, 5), (1, 3), (1, 1));
    let (y, a) = run_forward(&s, &[0.0, 1.0, 9.0, 1.0, 0.0]);
    assert_eq!(y, vec![9.0; 3]);
    assert_eq!(a, vec![2; 3]);
    let mut dx = vec![0.0; 5];
    max_pool2d_backward(&s, &[1.0, 2.0, 4.0], &a, &mut dx);
    assert_eq!(dx, vec![0.0, 0.0, 7.0, 0.0, 0.0]);
}
