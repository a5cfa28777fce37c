//! conv2d kernels against a naive f64 reference (direct loops), on random inputs over odd
//! shapes, plus adjoint identities and bit-for-bit determinism across thread counts.

use distill_kernels::conv::{
    conv2d_backward_bias, conv2d_backward_input, conv2d_backward_input_at, conv2d_backward_weight,
    conv2d_backward_weight_at, conv2d_forward, conv2d_forward_at, conv2d_pool_backward_params_at,
    conv2d_pool_forward_at, conv2d_pool_fuses, pool_after, uses_thin_kernels, THIN_MAX_K,
};
use distill_kernels::elementwise::{relu_at, relu_backward_at};
use distill_kernels::pool::{max_pool2d_backward_at, max_pool2d_forward_at};
use distill_kernels::{simd, Conv2dShape};

mod common;
use common::{Rng, TestRng};

#[allow(clippy::too_many_arguments)]
fn shape(
    batch: usize,
    in_channels: usize,
    (in_h, in_w): (usize, usize),
    out_channels: usize,
    (kernel_h, kernel_w): (usize, usize),
    (stride_h, stride_w): (usize, usize),
    (pad_h, pad_w): (usize, usize),
) -> Conv2dShape {
    let s = Conv2dShape {
        batch,
        in_channels,
        in_h,
        in_w,
        out_channels,
        kernel_h,
        kernel_w,
        stride_h,
        stride_w,
        pad_h,
        pad_w,
    };
    s.validate().expect("test shape must be valid");
    s
}

/// The shapes every test runs: odd sizes, kernels 1/2/3/5, strides 1–3, paddings 0–2,
/// rectangular kernels/strides/paddings, batch 1 and > 1 (17 > the partial count, so the
/// weight-gradient chunks are uneven), kernels that only fit thanks to the padding, and
/// paddings wider than the kernel (whole unfold rows of zeros).
fn shapes() -> Vec<Conv2dShape> {
    vec![
        shape(1, 1, (7, 7), 3, (3, 3), (1, 1), (1, 1)),
        shape(2, 1, (13, 13), 7, (3, 3), (1, 1), (1, 1)),
        shape(3, 3, (13, 7), 7, (5, 5), (2, 2), (2, 2)),
        shape(2, 7, (13, 13), 13, (2, 2), (3, 3), (0, 0)),
        shape(2, 13, (3, 3), 1, (1, 1), (1, 1), (0, 0)),
        shape(1, 3, (7, 7), 7, (1, 1), (2, 2), (1, 1)),
        shape(2, 3, (7, 13), 3, (3, 1), (1, 2), (2, 0)),
        shape(2, 3, (7, 13), 5, (2, 5), (3, 1), (0, 2)),
        shape(1, 3, (1, 3), 2, (5, 3), (1, 1), (2, 0)),
        shape(2, 2, (2, 2), 3, (5, 5), (1, 1), (2, 2)),
        shape(1, 2, (3, 3), 3, (1, 1), (1, 1), (2, 2)),
        shape(17, 2, (5, 6), 3, (3, 2), (2, 1), (1, 0)),
        shape(4, 16, (14, 14), 32, (3, 3), (1, 1), (1, 1)),
        shape(3, 1, (28, 28), 32, (3, 3), (1, 1), (1, 1)),
        // Per-image GEMMs ≥ 1 MFLOP: the images-one-after-another path with a parallel unfold.
        shape(2, 13, (13, 13), 37, (3, 3), (1, 1), (1, 1)),
        shape(2, 7, (13, 13), 64, (5, 5), (2, 1), (2, 1)),
        // The same path over chunks of several images (one unfold and one GEMM per chunk):
        // batch 1, 5 and 17 (one partial chunk, a chunk of 16 plus one image), odd channel
        // counts, stride 2 and padding 2, a pointwise kernel.
        shape(1, 13, (13, 13), 37, (3, 3), (1, 1), (1, 1)),
        shape(5, 13, (13, 13), 37, (3, 3), (1, 1), (1, 1)),
        shape(17, 13, (13, 13), 37, (3, 3), (1, 1), (1, 1)),
        shape(5, 7, (15, 13), 40, (5, 5), (2, 1), (2, 1)),
        shape(3, 64, (14, 14), 48, (1, 1), (1, 1), (0, 0)),
        // Stride 1 with rows of ≥ 8 outputs (the unfold's zero-padded-plane path): no
        // padding, padding on one axis only, rectangular kernels, a padding wider than 1;
        // and a plane too large for that path's stack buffer (the generic unfold).
        shape(2, 3, (9, 11), 5, (3, 5), (1, 1), (0, 2)),
        shape(2, 2, (12, 10), 4, (5, 3), (1, 1), (2, 0)),
        shape(3, 3, (10, 9), 6, (2, 3), (1, 1), (2, 2)),
        shape(1, 2, (70, 70), 3, (3, 3), (1, 1), (1, 1)),
    ]
}

/// Thin reductions (K = in·kh·kw ≤ THIN_MAX_K: the direct AVX2 kernels): odd widths 1, 3, 7,
/// 13, 29 (pixel counts that are not multiples of 8, and fewer than 8), batch 1 and 17,
/// strides and paddings other than 1, several input channels, K = 1 and K = THIN_MAX_K; plus
/// K just above the limit (the GEMM path).
fn thin_shapes() -> Vec<Conv2dShape> {
    vec![
        shape(1, 1, (1, 1), 5, (3, 3), (1, 1), (1, 1)),
        shape(17, 1, (3, 3), 4, (3, 3), (1, 1), (1, 1)),
        shape(17, 1, (7, 7), 9, (3, 3), (1, 1), (1, 1)),
        shape(1, 1, (13, 13), 64, (3, 3), (1, 1), (1, 1)),
        shape(3, 1, (29, 29), 33, (3, 3), (1, 1), (1, 1)),
        shape(2, 1, (5, 29), 3, (3, 3), (1, 1), (1, 1)),
        shape(17, 1, (13, 7), 6, (3, 3), (2, 2), (1, 1)),
        shape(2, 1, (29, 13), 5, (3, 3), (3, 2), (0, 2)),
        shape(17, 3, (7, 13), 7, (1, 1), (1, 1), (0, 0)),
        shape(3, 3, (13, 13), 8, (2, 2), (2, 2), (1, 0)),
        shape(2, 1, (7, 7), 3, (1, 1), (1, 1), (0, 0)),
        shape(5, 4, (13, 3), 9, (3, 1), (1, 1), (1, 0)),
        shape(2, 3, (7, 7), 4, (2, 2), (1, 1), (0, 0)),
        shape(2, 1, (13, 29), 4, (2, 7), (1, 1), (1, 3)),
        shape(2, 13, (7, 7), 4, (1, 1), (1, 1), (0, 0)),
        shape(2, 1, (28, 28), 64, (3, 3), (1, 1), (1, 1)),
        // The weight grad splits the taps of a channel pair in two passes (⌈K/2⌉, ⌊K/2⌋):
        // the K not covered above, each with an odd channel count (a lone last channel).
        shape(2, 4, (9, 11), 5, (1, 1), (1, 1), (0, 0)),
        shape(2, 1, (9, 11), 7, (1, 5), (1, 1), (0, 2)),
        shape(2, 1, (11, 9), 5, (7, 1), (1, 1), (3, 0)),
        shape(2, 2, (11, 9), 3, (5, 1), (1, 1), (2, 0)),
        shape(2, 1, (9, 13), 9, (1, 11), (1, 1), (0, 5)),
        // Stride 1, rows ≥ 8 wide, K = 8 and a padding of 2 (the padded-plane unfold).
        shape(2, 1, (9, 17), 8, (2, 4), (1, 1), (1, 2)),
        shape(3, 1, (8, 8), 5, (3, 3), (1, 1), (2, 2)),
        // Shifted unfold rows over several channels with kh = 1 and kh = 2 (K = 6, 12); the
        // first is a "same" convolution (the margin fold) with p % 8 ≠ 0 and one-axis padding.
        shape(2, 2, (9, 11), 5, (1, 3), (1, 1), (0, 1)),
        shape(3, 3, (9, 10), 4, (2, 2), (1, 1), (1, 0)),
        // Rows of 17 to 32 outputs (AVX-512 computes them in pairs of rows padded to 32):
        // a single row, an odd row count with K = 12, a row of exactly 32.
        shape(2, 1, (1, 32), 3, (1, 1), (1, 1), (0, 0)),
        shape(3, 4, (7, 19), 5, (1, 3), (1, 1), (0, 0)),
        shape(2, 1, (5, 32), 6, (3, 3), (1, 1), (1, 1)),
        // Rows narrower than their padding: lanes masked off on both sides of the input row.
        shape(2, 1, (3, 4), 2, (3, 1), (1, 1), (1, 8)),
    ]
}

#[test]
fn thin_kernels_are_selected_by_shape_and_level() {
    let k = |s: &Conv2dShape| s.in_channels * s.kernel_h * s.kernel_w;
    let thin = thin_shapes();
    assert!(thin.iter().any(|s| k(s) == 1) && thin.iter().any(|s| k(s) == THIN_MAX_K));
    assert!(thin.iter().any(|s| k(s) > THIN_MAX_K));
    for s in &thin {
        assert!(!uses_thin_kernels(simd::SimdLevel::Scalar, s));
        assert!(!uses_thin_kernels(simd::SimdLevel::Simd128, s));
        // AVX2+FMA and AVX-512 on x86-64, NEON on aarch64, where the CPU runs them.
        for level in [
            simd::SimdLevel::Avx2Fma,
            simd::SimdLevel::Avx512,
            simd::SimdLevel::Neon,
        ] {
            assert_eq!(
                uses_thin_kernels(level, s),
                level.is_supported() && k(s) <= THIN_MAX_K,
                "{level:?} {s:?}"
            );
        }
    }
    if cfg!(target_arch = "aarch64") {
        assert!(thin
            .iter()
            .any(|s| uses_thin_kernels(simd::SimdLevel::Neon, s)));
    }
}

/// Every kernel on every thin shape and every SIMD level against the f64 reference.
#[test]
fn thin_reductions_match_reference_on_every_simd_level() {
    for (t, s) in thin_shapes().iter().enumerate() {
        let d = data(s, 800 + t as u64);
        let fwd = ref_forward(s, &d.x, &d.w, Some(&d.b));
        let fwd_nb = ref_forward(s, &d.x, &d.w, None);
        let dxr = ref_backward_input(s, &d.w, &d.dy);
        let dwr = ref_backward_weight(s, &d.x, &d.dy);
        for level in simd::available() {
            let name = level.name();
            let mut y = vec![f32::NAN; s.output_len()];
            conv2d_forward_at(level, s, &d.x, &d.w, Some(&d.b), &mut y);
            fwd.check(&y, &format!("thin forward+bias [{name}]"), s);
            let mut y = vec![f32::NAN; s.output_len()];
            conv2d_forward_at(level, s, &d.x, &d.w, None, &mut y);
            fwd_nb.check(&y, &format!("thin forward [{name}]"), s);
            let mut dx = vec![f32::NAN; s.input_len()];
            conv2d_backward_input_at(level, s, &d.w, &d.dy, &mut dx);
            dxr.check(&dx, &format!("thin backward_input [{name}]"), s);
            let mut dw = vec![f32::NAN; s.weight_len()];
            conv2d_backward_weight_at(level, s, &d.x, &d.dy, &mut dw);
            dwr.check(&dw, &format!("thin backward_weight [{name}]"), s);
        }
    }
}

/// The streaming-store forward (outputs ≥ 8 MB) on a batch large enough to take it, with an
/// output slice that starts off a 16-byte boundary in one call (plain stores) and on one in
/// the other, at every level: both match the reference on a sample of images.
#[test]
fn thin_forward_with_large_output_matches_reference() {
    let s = shape(43, 1, (28, 28), 64, (3, 3), (1, 1), (1, 1));
    assert!(s.output_len() * 4 >= 8 << 20);
    let d = data(&s, 900);
    let one = shape(1, 1, (28, 28), 64, (3, 3), (1, 1), (1, 1));
    let want: Vec<_> = [0, 21, 42]
        .into_iter()
        .map(|n| {
            let xn = &d.x[n * one.input_len()..(n + 1) * one.input_len()];
            (n, ref_forward(&one, xn, &d.w, Some(&d.b)))
        })
        .collect();
    for level in simd::available() {
        for offset in [0, 1] {
            let mut buf = vec![f32::NAN; s.output_len() + offset];
            conv2d_forward_at(level, &s, &d.x, &d.w, Some(&d.b), &mut buf[offset..]);
            let y = &buf[offset..];
            for (n, want) in &want {
                want.check(
                    &y[n * one.output_len()..(n + 1) * one.output_len()],
                    &format!("thin forward (large) [{level}]"),
                    &one,
                );
            }
        }
    }
}

/// Iterates every (n, co, oy, ox, ci, i, j, input index) tap that lands inside the input.
fn for_each_tap(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let (oh, ow) = (s.out_h(), s.out_w());
    for n in 0..s.batch {
        for co in 0..s.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let y_idx = ((n * s.out_channels + co) * oh + oy) * ow + ox;
                    for ci in 0..s.in_channels {
                        for i in 0..s.kernel_h {
                            for j in 0..s.kernel_w {
                                let iy = (oy * s.stride_h + i) as isize - s.pad_h as isize;
                                let ix = (ox * s.stride_w + j) as isize - s.pad_w as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= s.in_h as isize
                                    || ix >= s.in_w as isize
                                {
                                    continue;
                                }
                                let x_idx = ((n * s.in_channels + ci) * s.in_h + iy as usize)
                                    * s.in_w
                                    + ix as usize;
                                let w_idx =
                                    ((co * s.in_channels + ci) * s.kernel_h + i) * s.kernel_w + j;
                                f(y_idx, x_idx, w_idx, n, co);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reference results in f64 plus, per element, the sum of |terms| (the error scale).
struct Reference {
    val: Vec<f64>,
    mag: Vec<f64>,
}

impl Reference {
    fn zeros(n: usize) -> Self {
        Reference {
            val: vec![0.0; n],
            mag: vec![0.0; n],
        }
    }
    fn add(&mut self, i: usize, a: f32, b: f32) {
        let t = a as f64 * b as f64;
        self.val[i] += t;
        self.mag[i] += t.abs();
    }
    /// Each element within `1e-5·Σ|terms| + 1e-6` of the reference, or NaN where the reference
    /// is NaN (a NaN input times a zero gradient).
    fn check(&self, got: &[f32], what: &str, s: &Conv2dShape) {
        assert_eq!(got.len(), self.val.len(), "{what}: length");
        for (i, ((&g, &v), &m)) in got.iter().zip(&self.val).zip(&self.mag).enumerate() {
            if v.is_nan() {
                assert!(g.is_nan(), "{what} at {i}: got {g}, want NaN for {s:?}");
                continue;
            }
            let tol = 1e-5 * m + 1e-6;
            assert!(
                (g as f64 - v).abs() <= tol,
                "{what} mismatch at {i}: got {g}, want {v} (tol {tol}) for {s:?}"
            );
        }
    }
}

fn ref_forward(s: &Conv2dShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Reference {
    let mut r = Reference::zeros(s.output_len());
    if let Some(b) = b {
        let p = s.out_h() * s.out_w();
        for (i, v) in r.val.iter_mut().enumerate() {
            let co = (i / p) % s.out_channels;
            *v = b[co] as f64;
        }
        for (i, m) in r.mag.iter_mut().enumerate() {
            *m = (b[(i / p) % s.out_channels] as f64).abs();
        }
    }
    for_each_tap(s, |yi, xi, wi, _, _| r.add(yi, w[wi], x[xi]));
    r
}

fn ref_backward_input(s: &Conv2dShape, w: &[f32], dy: &[f32]) -> Reference {
    let mut r = Reference::zeros(s.input_len());
    for_each_tap(s, |yi, xi, wi, _, _| r.add(xi, w[wi], dy[yi]));
    r
}

fn ref_backward_weight(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Reference {
    let mut r = Reference::zeros(s.weight_len());
    for_each_tap(s, |yi, xi, wi, _, _| r.add(wi, x[xi], dy[yi]));
    r
}

fn ref_backward_bias(s: &Conv2dShape, dy: &[f32]) -> Reference {
    let mut r = Reference::zeros(s.out_channels);
    let p = s.out_h() * s.out_w();
    for (i, &g) in dy.iter().enumerate() {
        r.add((i / p) % s.out_channels, g, 1.0);
    }
    r
}

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    dy: Vec<f32>,
}

fn data(s: &Conv2dShape, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    Data {
        x: rng.vec(s.input_len(), 1.0),
        w: rng.vec(s.weight_len(), 1.0),
        b: rng.vec(s.out_channels, 1.0),
        dy: rng.vec(s.output_len(), 1.0),
    }
}

#[test]
fn forward_matches_reference_on_every_simd_level() {
    for (t, s) in shapes().iter().enumerate() {
        let d = data(s, 100 + t as u64);
        let with_bias = ref_forward(s, &d.x, &d.w, Some(&d.b));
        let no_bias = ref_forward(s, &d.x, &d.w, None);
        for level in simd::available() {
            let mut y = vec![f32::NAN; s.output_len()];
            conv2d_forward_at(level, s, &d.x, &d.w, Some(&d.b), &mut y);
            with_bias.check(&y, &format!("forward+bias [{}]", level.name()), s);
            let mut y = vec![f32::NAN; s.output_len()];
            conv2d_forward_at(level, s, &d.x, &d.w, None, &mut y);
            no_bias.check(&y, &format!("forward [{}]", level.name()), s);
        }
        // The default entry point agrees with its explicit-level twin bit for bit.
        let mut y1 = vec![0.0; s.output_len()];
        let mut y2 = vec![0.0; s.output_len()];
        conv2d_forward(s, &d.x, &d.w, Some(&d.b), &mut y1);
        conv2d_forward_at(simd::level(), s, &d.x, &d.w, Some(&d.b), &mut y2);
        assert_eq!(bits(&y1), bits(&y2));
    }
}

#[test]
fn backward_input_matches_reference_on_every_simd_level() {
    for (t, s) in shapes().iter().enumerate() {
        let d = data(s, 200 + t as u64);
        let want = ref_backward_input(s, &d.w, &d.dy);
        for level in simd::available() {
            let mut dx = vec![f32::NAN; s.input_len()];
            conv2d_backward_input_at(level, s, &d.w, &d.dy, &mut dx);
            want.check(&dx, &format!("backward_input [{}]", level.name()), s);
        }
    }
}

#[test]
fn backward_weight_matches_reference_on_every_simd_level() {
    for (t, s) in shapes().iter().enumerate() {
        let d = data(s, 300 + t as u64);
        let want = ref_backward_weight(s, &d.x, &d.dy);
        for level in simd::available() {
            let mut dw = vec![f32::NAN; s.weight_len()];
            conv2d_backward_weight_at(level, s, &d.x, &d.dy, &mut dw);
            want.check(&dw, &format!("backward_weight [{}]", level.name()), s);
        }
    }
}

#[test]
fn backward_bias_matches_reference() {
    for (t, s) in shapes().iter().enumerate() {
        let d = data(s, 400 + t as u64);
        let mut db = vec![f32::NAN; s.out_channels];
        conv2d_backward_bias(s, &d.dy, &mut db);
        ref_backward_bias(s, &d.dy).check(&db, "backward_bias", s);
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&a, &b)| a as f64 * b as f64).sum()
}

fn abs_dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (a as f64 * b as f64).abs())
        .sum()
}

/// ⟨conv(x; w), dy⟩ = ⟨x, backward_input(dy)⟩ = ⟨w, backward_weight(x, dy)⟩: the two backward
/// kernels are the adjoints of the forward, checked without the reference.
#[test]
fn backward_kernels_are_adjoints_of_forward() {
    for (t, s) in shapes().iter().enumerate() {
        let d = data(s, 500 + t as u64);
        let mut y = vec![0.0; s.output_len()];
        conv2d_forward(s, &d.x, &d.w, None, &mut y);
        let mut dx = vec![0.0; s.input_len()];
        conv2d_backward_input(s, &d.w, &d.dy, &mut dx);
        let mut dw = vec![0.0; s.weight_len()];
        conv2d_backward_weight(s, &d.x, &d.dy, &mut dw);
        let lhs = dot(&y, &d.dy);
        let scale = abs_dot(&y, &d.dy) + abs_dot(&d.x, &dx) + 1.0;
        let via_x = dot(&d.x, &dx);
        let via_w = dot(&d.w, &dw);
        assert!(
            (lhs - via_x).abs() <= 1e-5 * scale,
            "<conv(x),dy> = {lhs} but <x,dx> = {via_x} for {s:?}"
        );
        assert!(
            (lhs - via_w).abs() <= 1e-5 * scale,
            "<conv(x),dy> = {lhs} but <w,dw> = {via_w} for {s:?}"
        );
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The fused conv + 2×2 max-pool (+ ReLU) gives the same bits as conv2d, max_pool2d (and
/// relu) one after the other forward (output and arg-max); backward, its weight and bias
/// gradients from the output's gradient (with and without the bias) match the f64 reference
/// over the composed path's full-size gradient, with the same bits on 1, 2 and 3 threads.
/// At every level that fuses: thin convs with odd and even output planes (an odd one drops
/// its last row and column), odd channel counts, stride 2, no padding, batch 1 and batches
/// that split unevenly into weight-gradient chunks.
#[test]
fn fused_conv_pool_matches_conv_then_pool() {
    let cases = [
        shape(1, 1, (7, 7), 3, (3, 3), (1, 1), (1, 1)),
        shape(17, 1, (28, 28), 8, (3, 3), (1, 1), (1, 1)),
        shape(5, 1, (13, 11), 7, (3, 3), (1, 1), (1, 1)),
        shape(3, 3, (15, 15), 5, (2, 2), (2, 2), (0, 0)),
        shape(37, 1, (9, 10), 2, (3, 3), (1, 1), (0, 0)),
        shape(2, 4, (12, 12), 6, (1, 3), (1, 1), (0, 1)),
        // Rows of 17 to 32 outputs (AVX-512 pools them in registers): odd widths and
        // heights, K = 12, no padding; a 1×1 conv of inputs 0, 1 and 2 (ties of every kind
        // inside a window: the first in the pool's order wins), and 28×28 with a NaN.
        shape(3, 1, (5, 17), 4, (3, 3), (1, 1), (1, 1)),
        shape(2, 4, (9, 30), 5, (1, 3), (1, 1), (0, 1)),
        shape(4, 1, (8, 32), 3, (3, 3), (1, 1), (1, 1)),
        shape(2, 1, (20, 20), 6, (3, 3), (1, 1), (0, 0)),
        shape(3, 1, (6, 24), 5, (1, 1), (1, 1), (0, 0)),
        // A pooled plane of 20×18 (wider than the backward's fixed row stride); one input
        // channel with a 2×3 and a 4×3 kernel (the backward's phase rows for other heights).
        shape(2, 1, (40, 36), 4, (3, 3), (1, 1), (1, 1)),
        shape(3, 1, (9, 12), 3, (2, 3), (1, 1), (0, 1)),
        shape(2, 1, (11, 10), 5, (4, 3), (1, 1), (2, 1)),
        shape(3, 1, (28, 28), 5, (3, 3), (1, 1), (1, 1)),
    ];
    let mut fused_levels = 0;
    for (t, s) in cases.iter().enumerate() {
        let mut d = data(s, 800 + t as u64);
        if t == cases.len() - 2 {
            for (i, v) in d.x.iter_mut().enumerate() {
                *v = ((i * i + i / 5) % 3) as f32;
            }
        }
        if t == cases.len() - 1 {
            for image in d.x.chunks_exact_mut(s.in_h * s.in_w) {
                image[20 * 28 + 9] = f32::NAN;
            }
        }
        let ps = pool_after(s);
        let dp = Rng::new(900 + t as u64).vec(ps.output_len(), 1.0);
        for level in simd::available() {
            if !conv2d_pool_fuses(level, s) {
                continue;
            }
            fused_levels += 1;
            for relu in [false, true] {
                let what = format!("[{level}] relu {relu}, {s:?}");
                let mut full = vec![0.0; s.output_len()];
                conv2d_forward_at(level, s, &d.x, &d.w, Some(&d.b), &mut full);
                let (mut y, mut arg) = (vec![0.0; ps.output_len()], vec![0u32; ps.output_len()]);
                max_pool2d_forward_at(level, &ps, &full, &mut y, &mut arg);
                let mut dpool = dp.clone();
                if relu {
                    let pooled = y.clone();
                    relu_at(level, &pooled, &mut y);
                    relu_backward_at(level, &y, &dp, &mut dpool);
                }
                let n = ps.output_len();
                let (mut fy, mut farg) = (vec![f32::NAN; n], vec![7u32; n]);
                conv2d_pool_forward_at(level, s, &d.x, &d.w, Some(&d.b), relu, &mut fy, &mut farg);
                assert_eq!(bits(&y), bits(&fy), "{what}: forward");
                assert_eq!(arg, farg, "{what}: arg-max");

                let mut dfull = vec![0.0; s.output_len()];
                max_pool2d_backward_at(level, &ps, &dpool, &arg, &mut dfull);
                let relu_y = relu.then_some(&fy[..]);
                let backward = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let (mut dw, mut db) = (
                        vec![f32::NAN; s.weight_len()],
                        vec![f32::NAN; s.out_channels],
                    );
                    pool.install(|| {
                        conv2d_pool_backward_params_at(
                            level,
                            s,
                            &d.x,
                            &dp,
                            &arg,
                            relu_y,
                            &mut dw,
                            Some(&mut db),
                        )
                    });
                    (dw, db)
                };
                let (fdw, fdb) = backward(1);
                ref_backward_weight(s, &d.x, &dfull).check(
                    &fdw,
                    &format!("{what}: weight grad"),
                    s,
                );
                ref_backward_bias(s, &dfull).check(&fdb, &format!("{what}: bias grad"), s);
                for threads in [2, 3] {
                    let (dw, db) = backward(threads);
                    assert_eq!(
                        bits(&fdw),
                        bits(&dw),
                        "{what}: weight grad on {threads} threads"
                    );
                    assert_eq!(
                        bits(&fdb),
                        bits(&db),
                        "{what}: bias grad on {threads} threads"
                    );
                }
                let mut fdw2 = vec![f32::NAN; fdw.len()];
                conv2d_pool_backward_params_at(level, s, &d.x, &dp, &arg, relu_y, &mut fdw2, None);
                assert_eq!(bits(&fdw), bits(&fdw2), "{what}: weight grad alone");
            }
        }
    }
    // Where the CPU has AVX-512 or NEON the fused path must have run.
    let fuses_here = simd::available()
        .into_iter()
        .any(|l| conv2d_pool_fuses(l, &cases[1]));
    assert_eq!(fused_levels > 0, fuses_here);
    if cfg!(target_arch = "x86_64") && simd::SimdLevel::Avx512.is_supported() {
        assert!(fuses_here, "AVX-512 runs the fused conv + pool");
    }
}

/// Same input, same bits, whatever the number of threads (both parallel strategies: images
/// in parallel with partial weight gradients, and images in sequence with parallel GEMMs),
/// at every SIMD level.
#[test]
fn results_do_not_depend_on_thread_count() {
    let cases = [
        shape(37, 5, (9, 11), 6, (3, 3), (1, 2), (1, 1)),
        shape(20, 1, (28, 28), 8, (3, 3), (1, 1), (1, 1)),
        shape(3, 13, (13, 13), 37, (3, 3), (1, 1), (1, 1)),
        // Large GEMMs over chunks of images: a full chunk plus a partial one.
        shape(17, 13, (13, 13), 37, (3, 3), (1, 1), (1, 1)),
        shape(5, 7, (15, 13), 40, (5, 5), (2, 1), (2, 1)),
        // Thin-K kernels: odd width, stride 2, uneven weight-gradient chunks.
        shape(37, 1, (13, 29), 7, (3, 3), (1, 1), (1, 1)),
        shape(17, 3, (13, 13), 5, (2, 2), (2, 2), (1, 0)),
    ];
    for (t, s) in cases.iter().enumerate() {
        let d = data(s, 600 + t as u64);
        for level in simd::available() {
            let run = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| {
                    let mut y = vec![0.0; s.output_len()];
                    conv2d_forward_at(level, s, &d.x, &d.w, Some(&d.b), &mut y);
                    let mut dx = vec![0.0; s.input_len()];
                    conv2d_backward_input_at(level, s, &d.w, &d.dy, &mut dx);
                    let mut dw = vec![0.0; s.weight_len()];
                    conv2d_backward_weight_at(level, s, &d.x, &d.dy, &mut dw);
                    let mut db = vec![0.0; s.out_channels];
                    conv2d_backward_bias(s, &d.dy, &mut db);
                    [bits(&y), bits(&dx), bits(&dw), bits(&db)]
                })
            };
            let one = run(1);
            for threads in [2, 3, 5] {
                assert_eq!(
                    one,
                    run(threads),
                    "[{level}] {threads} threads differ from 1 for {s:?}"
                );
            }
        }
    }
}

/// Buffers longer than the shape needs are accepted; only the prefix is written.
#[test]
fn longer_buffers_keep_their_tail() {
    let s = shape(2, 3, (5, 5), 4, (3, 3), (1, 1), (1, 1));
    let d = data(&s, 700);
    let mut y = vec![7.0; s.output_len() + 3];
    conv2d_forward(&s, &d.x, &d.w, None, &mut y);
    assert_eq!(&y[s.output_len()..], &[7.0; 3]);
    let mut dx = vec![7.0; s.input_len() + 3];
    conv2d_backward_input(&s, &d.w, &d.dy, &mut dx);
    assert_eq!(&dx[s.input_len()..], &[7.0; 3]);
    let mut dw = vec![7.0; s.weight_len() + 3];
    conv2d_backward_weight(&s, &d.x, &d.dy, &mut dw);
    assert_eq!(&dw[s.weight_len()..], &[7.0; 3]);
}
