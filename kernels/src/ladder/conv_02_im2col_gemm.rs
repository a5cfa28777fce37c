//! conv2d rung 2 — im2col + GEMM: turn the convolution into a matrix product.
//!
//! Change against rung 1: each image is first unfolded into a column matrix
//! `col[K×P]` (K = in·kh·kw reduction rows, P = out_h·out_w pixels; padding becomes zeros),
//! after which the forward pass is one GEMM per image, `y_n[co×P] = W[co×K]·col[K×P]`, and
//! the weight gradient a sum of GEMMs, `dW[co×K] += dy_n[co×P]·col[K×P]ᵀ`. All the work
//! moves into the production GEMM (packed, vectorised, threaded: the top of the GEMM ladder),
//! at the price of writing and re-reading `col`, K/(stride²) times the size of the input.
//! Bound by the GEMM for wide layers (K in the hundreds); for K ≈ 9 (one input channel) the
//! GEMM's tile is mostly padding and the unfold dominates, which is what the production
//! conv's direct thin kernels fix.

use crate::gemm::{gemm, GemmShape};
use crate::{Conv2dShape, Epilogue, Trans};

/// Unfolds image `n` of x into `col[K×P]`.
fn im2col(s: &Conv2dShape, x: &[f32], n: usize, col: &mut [f32]) {
    let (oh, ow) = (s.out_h(), s.out_w());
    let p = oh * ow;
    for ci in 0..s.in_channels {
        let plane = &x[(n * s.in_channels + ci) * s.in_h * s.in_w..][..s.in_h * s.in_w];
        for r in 0..s.kernel_h {
            for c in 0..s.kernel_w {
                let row = &mut col[((ci * s.kernel_h + r) * s.kernel_w + c) * p..][..p];
                for i in 0..oh {
                    let ih = (i * s.stride_h + r).checked_sub(s.pad_h);
                    for j in 0..ow {
                        let iw = (j * s.stride_w + c).checked_sub(s.pad_w);
                        row[i * ow + j] = match (ih, iw) {
                            (Some(ih), Some(iw)) if ih < s.in_h && iw < s.in_w => {
                                plane[ih * s.in_w + iw]
                            }
                            _ => 0.0,
                        };
                    }
                }
            }
        }
    }
}

fn dims(s: &Conv2dShape) -> (usize, usize) {
    (
        s.in_channels * s.kernel_h * s.kernel_w,
        s.out_h() * s.out_w(),
    )
}

/// Forward pass, no bias; y overwritten.
pub fn forward(s: &Conv2dShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    super::check_conv_lens(s, x, w, y);
    let (k, p) = dims(s);
    let mut col = vec![0.0; k * p];
    let shape = GemmShape {
        ta: Trans::N,
        tb: Trans::N,
        m: s.out_channels,
        n: p,
        k,
    };
    for (n, y_n) in y.chunks_exact_mut(s.out_channels * p).enumerate() {
        im2col(s, x, n, &mut col);
        gemm(shape, w, &col, y_n, Epilogue::default());
    }
}

/// Weight gradient summed over the batch; dw overwritten.
pub fn weight_grad(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    super::check_conv_lens(s, x, dw, dy);
    let (k, p) = dims(s);
    let mut col = vec![0.0; k * p];
    let shape = GemmShape {
        ta: Trans::N,
        tb: Trans::T,
        m: s.out_channels,
        n: k,
        k: p,
    };
    dw.fill(0.0);
    for (n, dy_n) in dy.chunks_exact(s.out_channels * p).enumerate() {
        im2col(s, x, n, &mut col);
        let ep = Epilogue {
            accumulate: true,
            ..Epilogue::default()
        };
        gemm(shape, dy_n, &col, dw, ep);
    }
}
