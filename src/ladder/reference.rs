//! Operands, the f64 reference results and the error bound every rung is checked against.

use distill_kernels::rng::Rng;
use distill_kernels::Conv2dShape;

/// What every ladder's problems have in common: a label, a cost and an f16-rounded copy.
/// Each ladder has its own problem type ([`MatmulProblem`], [`ConvProblem`]), so a rung can
/// only ever be handed a problem of its own ladder.
pub(crate) trait Problem: Clone {
    /// How the problem is named in the report.
    fn label(&self) -> String;
    /// Floating-point operations of one call (2 per multiply-add).
    fn flops(&self) -> f64;
    /// The same problem with every operand rounded to f16 (for rungs that store f16).
    fn rounded_to_f16(&self) -> Self;
}

/// `C[m×n] = A[m×k]·B[k×n]`, row-major.
#[derive(Clone, Debug)]
pub(crate) struct MatmulProblem {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

/// A conv2d pass over input `x` and weights `w` (NCHW, `[out, in, kh, kw]`). `dy` is the
/// output gradient, used by the weight-gradient rungs.
#[derive(Clone, Debug)]
pub(crate) struct ConvProblem {
    pub shape: Conv2dShape,
    pub x: Vec<f32>,
    pub w: Vec<f32>,
    pub dy: Vec<f32>,
}

/// Uniform values in [-1, 1) from a seed.
pub(crate) fn random(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

fn rounded_to_f16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

impl MatmulProblem {
    pub fn new(m: usize, k: usize, n: usize, seed: u64) -> MatmulProblem {
        MatmulProblem {
            m,
            k,
            n,
            a: random(m * k, seed),
            b: random(k * n, seed + 1),
        }
    }
}

impl Problem for MatmulProblem {
    /// `m×k·k×n`.
    fn label(&self) -> String {
        let MatmulProblem { m, k, n, .. } = self;
        format!("{m}×{k}·{k}×{n}")
    }
    fn flops(&self) -> f64 {
        2.0 * (self.m as f64) * (self.k as f64) * (self.n as f64)
    }
    fn rounded_to_f16(&self) -> MatmulProblem {
        MatmulProblem {
            a: rounded_to_f16(&self.a),
            b: rounded_to_f16(&self.b),
            ..*self
        }
    }
}

impl ConvProblem {
    pub fn new(shape: Conv2dShape, seed: u64) -> ConvProblem {
        ConvProblem {
            shape,
            x: random(shape.input_len(), seed),
            w: random(shape.weight_len(), seed + 1),
            dy: random(shape.output_len(), seed + 2),
        }
    }
}

impl Problem for ConvProblem {
    /// The conv's geometry.
    fn label(&self) -> String {
        let s = &self.shape;
        format!(
            "{}×{}×{}×{} → {}, {}×{} s{} p{}",
            s.batch,
            s.in_channels,
            s.in_h,
            s.in_w,
            s.out_channels,
            s.kernel_h,
            s.kernel_w,
            s.stride_h,
            s.pad_h
        )
    }
    fn flops(&self) -> f64 {
        self.shape.flops()
    }
    fn rounded_to_f16(&self) -> ConvProblem {
        ConvProblem {
            shape: self.shape,
            x: rounded_to_f16(&self.x),
            w: rounded_to_f16(&self.w),
            dy: rounded_to_f16(&self.dy),
        }
    }
}

/// The exact result of a problem and, per element, the sum of the absolute values of its
/// terms and their count (the scale of the rounding error an f32 kernel may make).
pub(crate) struct Reference {
    pub exact: Vec<f64>,
    pub abs_sum: Vec<f64>,
    pub terms: usize,
}

/// `C = A·B` in f64.
pub(crate) fn matmul_f64(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Reference {
    let mut exact = vec![0.0f64; m * n];
    let mut abs_sum = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for j in 0..n {
                let t = av * b[p * n + j] as f64;
                exact[i * n + j] += t;
                abs_sum[i * n + j] += t.abs();
            }
        }
    }
    Reference {
        exact,
        abs_sum,
        terms: k,
    }
}

impl Reference {
    /// Checks `got` element by element: `|got − exact| ≤ 2·terms·ε·Σ|terms| + 1e-6`, the
    /// worst-case bound of an f32 sum in any order (with a factor 2 of headroom). Returns the
    /// largest error as a fraction of its bound, or where the first element breaks it.
    pub fn compare(&self, got: &[f32]) -> std::result::Result<f64, String> {
        if got.len() != self.exact.len() {
            return Err(format!(
                "{} outputs, expected {}",
                got.len(),
                self.exact.len()
            ));
        }
        let eps = f32::EPSILON as f64;
        let mut worst = 0.0f64;
        for (idx, ((&g, &e), &s)) in got.iter().zip(&self.exact).zip(&self.abs_sum).enumerate() {
            let bound = 2.0 * self.terms.max(1) as f64 * eps * s + 1e-6;
            let err = (g as f64 - e).abs();
            if err.is_nan() || err > bound {
                return Err(format!(
                    "output {idx}: {g} instead of {e:.6} (error {err:.3e}, bound {bound:.3e})"
                ));
            }
            worst = worst.max(err / bound);
        }
        Ok(worst)
    }
}

/// The input pixel tap `r` reads at output position `o`, or None in the padding.
fn tap(o: usize, stride: usize, pad: usize, r: usize, size: usize) -> Option<usize> {
    (o * stride + r).checked_sub(pad).filter(|&i| i < size)
}

/// Calls `f(out_index, weight_index, x_index)` for every product of the convolution.
fn conv_products(s: &Conv2dShape, mut f: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (s.out_h(), s.out_w());
    for n in 0..s.batch {
        for co in 0..s.out_channels {
            for i in 0..oh {
                for j in 0..ow {
                    let o = ((n * s.out_channels + co) * oh + i) * ow + j;
                    for ci in 0..s.in_channels {
                        for r in 0..s.kernel_h {
                            let Some(ih) = tap(i, s.stride_h, s.pad_h, r, s.in_h) else {
                                continue;
                            };
                            for c in 0..s.kernel_w {
                                let Some(iw) = tap(j, s.stride_w, s.pad_w, c, s.in_w) else {
                                    continue;
                                };
                                let wi =
                                    ((co * s.in_channels + ci) * s.kernel_h + r) * s.kernel_w + c;
                                let xi = ((n * s.in_channels + ci) * s.in_h + ih) * s.in_w + iw;
                                f(o, wi, xi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// conv2d forward (no bias) in f64.
pub(crate) fn conv_forward_f64(s: &Conv2dShape, x: &[f32], w: &[f32]) -> Reference {
    let mut exact = vec![0.0f64; s.output_len()];
    let mut abs_sum = vec![0.0f64; s.output_len()];
    conv_products(s, |o, wi, xi| {
        let t = w[wi] as f64 * x[xi] as f64;
        exact[o] += t;
        abs_sum[o] += t.abs();
    });
    Reference {
        exact,
        abs_sum,
        terms: s.in_channels * s.kernel_h * s.kernel_w,
    }
}

/// conv2d weight gradient (summed over the batch) in f64.
pub(crate) fn conv_weight_grad_f64(s: &Conv2dShape, x: &[f32], dy: &[f32]) -> Reference {
    let mut exact = vec![0.0f64; s.weight_len()];
    let mut abs_sum = vec![0.0f64; s.weight_len()];
    conv_products(s, |o, wi, xi| {
        let t = dy[o] as f64 * x[xi] as f64;
        exact[wi] += t;
        abs_sum[wi] += t.abs();
    });
    Reference {
        exact,
        abs_sum,
        terms: s.batch * s.out_h() * s.out_w(),
    }
}
