//! The kernel-study ladder: the CPU GEMM and conv2d rebuilt one idea at a time, from the
//! definition to the production kernels, one small file per rung.
//!
//! Each file opens with what it changes against the previous rung and why that should help.
//! Every GEMM rung has the same signature ([`GemmFn`]: `C = A·B`, row-major f32, m×k · k×n,
//! C overwritten), so a driver can check each against a reference and time it
//! (`distill::ladder`). The top rung calls the production kernel; it is not copied here.
//!
//! | rung | file | idea |
//! |------|------|------|
//! | 1 | `gemm_01_naive` | the definition: one dot product per output |
//! | 2 | `gemm_02_loop_order` | i-p-j order: unit-stride, vectorisable inner loop |
//! | 3 | `gemm_03_cache_blocking` | blocks of B and C that fit L2 / L1 |
//! | 4 | `gemm_04_packed_scalar` | packed panels, a 6×16 register tile in portable Rust |
//! | 5 | `gemm_05_avx2` | the tile as 12 ymm accumulators with FMA |
//! | 6 | `gemm_06_avx512` | a 14×32 tile in zmm registers (AVX-512 CPUs only) |
//! | 7 | `gemm_07_threads` | rayon over row blocks |
//! | top | `crate::gemm` | production: 2-D parallel tiles, masked edges, fused epilogue |
//!
//! The conv2d ladder (forward and weight gradient, [`ConvFn`]) has three rungs:
//! `conv_01_direct` (the definition), `conv_02_im2col_gemm` (unfold, then the GEMM above),
//! and the production `crate::conv` (im2col + GEMM over chunks of images in parallel, and
//! direct kernels for thin layers).

pub mod conv_01_direct;
pub mod conv_02_im2col_gemm;
pub mod gemm_01_naive;
pub mod gemm_02_loop_order;
pub mod gemm_03_cache_blocking;
pub mod gemm_04_packed_scalar;
pub mod gemm_05_avx2;
pub mod gemm_06_avx512;
pub mod gemm_07_threads;

use crate::gemm::GemmShape;
use crate::simd::SimdLevel;
use crate::{Conv2dShape, Epilogue, Trans};

/// `f(shape, x, w_or_dy, out)`: a conv2d forward pass (`x`, `w` → `y`) or weight gradient
/// (`x`, `dy` → `dw`), NCHW, no bias, output overwritten.
pub type ConvFn = fn(&Conv2dShape, &[f32], &[f32], &mut [f32]);

/// `f(m, k, n, a, b, c)`: `C[m×n] = A[m×k]·B[k×n]`, row-major f32, C overwritten.
pub type GemmFn = fn(usize, usize, usize, &[f32], &[f32], &mut [f32]);

/// One rung of a ladder.
#[derive(Clone, Copy, Debug)]
pub struct Rung<F> {
    /// Short name, e.g. `gemm_05_avx2`.
    pub name: &'static str,
    /// What this rung teaches, in one line.
    pub teaches: &'static str,
    pub run: F,
    /// The SIMD level the CPU must support to run it (`Scalar`: any CPU).
    pub needs: SimdLevel,
    /// Whether it is slow enough that a driver should cap the sizes it times.
    pub naive: bool,
}

impl<F> Rung<F> {
    /// Whether this CPU can run the rung.
    pub fn is_supported(&self) -> bool {
        self.needs.is_supported()
    }
}

/// The production GEMM (the top rung) at the default SIMD level.
pub fn gemm_production(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    check_lens(m, k, n, a, b, c);
    crate::gemm::gemm(nn(m, k, n), a, b, c, Epilogue::default());
}

/// The production GEMM at an explicit level (a level the CPU cannot run falls back to scalar).
pub fn gemm_production_at(
    level: SimdLevel,
    m: usize,
    k: usize,
    n: usize,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
) {
    check_lens(m, k, n, a, b, c);
    crate::gemm::gemm_at(level, nn(m, k, n), a, b, c, Epilogue::default());
}

fn nn(m: usize, k: usize, n: usize) -> GemmShape {
    GemmShape {
        ta: Trans::N,
        tb: Trans::N,
        m,
        n,
        k,
    }
}

/// The GEMM ladder, first rung first, the production kernel last.
pub fn gemm_rungs() -> Vec<Rung<GemmFn>> {
    let r = |name, teaches, run: GemmFn, needs, naive| Rung {
        name,
        teaches,
        run,
        needs,
        naive,
    };
    use SimdLevel::*;
    vec![
        r(
            "gemm_01_naive",
            "one dot product per output",
            gemm_01_naive::gemm,
            Scalar,
            true,
        ),
        r(
            "gemm_02_loop_order",
            "i-p-j: unit stride, auto-vectorised",
            gemm_02_loop_order::gemm,
            Scalar,
            true,
        ),
        r(
            "gemm_03_cache_blocking",
            "blocks that fit L2 and L1",
            gemm_03_cache_blocking::gemm,
            Scalar,
            false,
        ),
        r(
            "gemm_04_packed_scalar",
            "packed panels, 6x16 register tile",
            gemm_04_packed_scalar::gemm,
            Scalar,
            false,
        ),
        r(
            "gemm_05_avx2",
            "the tile in 12 ymm registers with FMA",
            gemm_05_avx2::gemm,
            Avx2Fma,
            false,
        ),
        r(
            "gemm_06_avx512",
            "a 14x32 tile in zmm registers",
            gemm_06_avx512::gemm,
            Avx512,
            false,
        ),
        r(
            "gemm_07_threads",
            "rayon over row blocks",
            gemm_07_threads::gemm,
            Avx2Fma,
            false,
        ),
        r(
            "gemm_production",
            "2-D parallel tiles, masked edges, epilogue",
            gemm_production,
            Scalar,
            false,
        ),
    ]
}

fn conv_production(s: &Conv2dShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    check_conv_lens(s, x, w, y);
    crate::conv::conv2d_forward(s, x, w, None, y);
}

fn conv_weight_grad_production(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    check_conv_lens(s, x, dw, dy);
    crate::conv::conv2d_backward_weight(s, x, dy, dw);
}

/// The conv2d forward ladder, the production kernel last.
pub fn conv_rungs() -> Vec<Rung<ConvFn>> {
    let r = |name, teaches, run: ConvFn, naive| Rung {
        name,
        teaches,
        run,
        needs: SimdLevel::Scalar,
        naive,
    };
    vec![
        r(
            "conv_01_direct",
            "the definition, seven loops",
            conv_01_direct::forward,
            true,
        ),
        r(
            "conv_02_im2col_gemm",
            "unfold, then one GEMM per image",
            conv_02_im2col_gemm::forward,
            false,
        ),
        r(
            "conv_production",
            "parallel chunks, thin direct kernels",
            conv_production,
            false,
        ),
    ]
}

/// The conv2d weight-gradient ladder, the production kernel last.
pub fn conv_weight_grad_rungs() -> Vec<Rung<ConvFn>> {
    let r = |name, teaches, run: ConvFn, naive| Rung {
        name,
        teaches,
        run,
        needs: SimdLevel::Scalar,
        naive,
    };
    vec![
        r(
            "conv_wgrad_01_direct",
            "the definition, seven loops",
            conv_01_direct::weight_grad,
            true,
        ),
        r(
            "conv_wgrad_02_im2col_gemm",
            "unfold, then dy·colᵀ summed over images",
            conv_02_im2col_gemm::weight_grad,
            false,
        ),
        r(
            "conv_wgrad_production",
            "fixed batch chunks in parallel",
            conv_weight_grad_production,
            false,
        ),
    ]
}

/// The operand lengths every conv rung requires (`k` is w for the forward pass, dw for the
/// weight gradient; `out` is y or dy).
pub(crate) fn check_conv_lens(s: &Conv2dShape, x: &[f32], k: &[f32], out: &[f32]) {
    assert_eq!(x.len(), s.input_len(), "x must be batch×in×h×w");
    assert_eq!(k.len(), s.weight_len(), "weights must be out×in×kh×kw");
    assert_eq!(out.len(), s.output_len(), "y must be batch×out×oh×ow");
}

/// The operand lengths every rung requires.
pub(crate) fn check_lens(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &[f32]) {
    assert_eq!(a.len(), m * k, "A must be m×k");
    assert_eq!(b.len(), k * n, "B must be k×n");
    assert_eq!(c.len(), m * n, "C must be m×n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn every_supported_rung_matches_f64_on_odd_shapes() {
        let mut rng = Rng::new(15);
        for (m, k, n) in [
            (1, 1, 1),
            (17, 33, 9),
            (65, 127, 70),
            (7, 300, 20),
            (3, 0, 5),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| rng.uniform(-1.0, 1.0)).collect();
            let b: Vec<f32> = (0..k * n).map(|_| rng.uniform(-1.0, 1.0)).collect();
            for rung in gemm_rungs().iter().filter(|r| r.is_supported()) {
                let mut c = vec![f32::NAN; m * n];
                (rung.run)(m, k, n, &a, &b, &mut c);
                for i in 0..m {
                    for j in 0..n {
                        let exact: f64 = (0..k)
                            .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                            .sum();
                        let got = c[i * n + j] as f64;
                        assert!(
                            (got - exact).abs() <= 1e-5 * (k as f64).max(1.0),
                            "{} {m}x{k}x{n} at ({i},{j}): {got} vs {exact}",
                            rung.name
                        );
                    }
                }
            }
        }
    }

    /// Every conv rung, forward and weight gradient, against f64 sums on odd shapes: a
    /// one-channel 3×3 "same" layer (the thin kernels at the process level, e.g. AVX-512
    /// under `DISTILL_CPU=avx512`), a strided wide one (im2col + GEMM), batch 1 and 3.
    #[test]
    fn every_conv_rung_matches_f64_on_odd_shapes() {
        let mut rng = Rng::new(16);
        let shapes = [
            Conv2dShape::same_3x3(3, 1, 7, 13),
            Conv2dShape {
                batch: 1,
                in_channels: 5,
                in_h: 9,
                in_w: 11,
                out_channels: 6,
                kernel_h: 3,
                kernel_w: 2,
                stride_h: 2,
                stride_w: 1,
                pad_h: 1,
                pad_w: 0,
            },
        ];
        for s in shapes {
            let mut draw =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect() };
            let (x, w, dy) = (
                draw(s.input_len()),
                draw(s.weight_len()),
                draw(s.output_len()),
            );
            let (oh, ow) = (s.out_h(), s.out_w());
            let (mut y_ref, mut dw_ref) =
                (vec![0.0f64; s.output_len()], vec![0.0f64; s.weight_len()]);
            for n in 0..s.batch {
                for co in 0..s.out_channels {
                    for (oy, ox) in (0..oh).flat_map(|oy| (0..ow).map(move |ox| (oy, ox))) {
                        let yi = ((n * s.out_channels + co) * oh + oy) * ow + ox;
                        for ci in 0..s.in_channels {
                            for (i, j) in
                                (0..s.kernel_h).flat_map(|i| (0..s.kernel_w).map(move |j| (i, j)))
                            {
                                let iy = (oy * s.stride_h + i) as isize - s.pad_h as isize;
                                let ix = (ox * s.stride_w + j) as isize - s.pad_w as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= s.in_h as isize
                                    || ix >= s.in_w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * s.in_channels + ci) * s.in_h + iy as usize) * s.in_w
                                    + ix as usize;
                                let wi =
                                    ((co * s.in_channels + ci) * s.kernel_h + i) * s.kernel_w + j;
                                y_ref[yi] += w[wi] as f64 * x[xi] as f64;
                                dw_ref[wi] += x[xi] as f64 * dy[yi] as f64;
                            }
                        }
                    }
                }
            }
            // Terms per output element: K in the forward, batch·P in the weight gradient.
            let k = (s.in_channels * s.kernel_h * s.kernel_w) as f64;
            let bp = (s.batch * oh * ow) as f64;
            for (rungs, input, want, tol) in [
                (conv_rungs(), &w, &y_ref, 1e-5 * k),
                (conv_weight_grad_rungs(), &dy, &dw_ref, 1e-5 * bp),
            ] {
                for rung in rungs.iter().filter(|r| r.is_supported()) {
                    let mut out = vec![f32::NAN; want.len()];
                    (rung.run)(&s, &x, input, &mut out);
                    for (i, (&g, &r)) in out.iter().zip(want.iter()).enumerate() {
                        assert!(
                            (g as f64 - r).abs() <= tol,
                            "{} {s:?} [{i}]: {g} vs {r}",
                            rung.name
                        );
                    }
                }
            }
        }
    }
}
