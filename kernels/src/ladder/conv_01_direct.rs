//! conv2d rung 1 — direct: the definition, loop by loop (forward and weight gradient).
//!
//! `y[n,co,oh,ow] = Σ_{ci,r,s} w[co,ci,r,s] · x[n,ci,oh·sh−ph+r, ow·sw−pw+s]` (zero outside x)
//! and `dw[co,ci,r,s] = Σ_{n,oh,ow} dy[n,co,oh,ow] · x[n,ci,oh·sh−ph+r, ow·sw−pw+s]`.
//! Seven nested loops with a bounds test in the innermost; each weight is reloaded for every
//! output pixel and each input pixel read kh·kw times per output channel. Single-threaded,
//! scalar, bound by the loop overhead and the scattered loads: the correctness baseline.

use crate::Conv2dShape;

/// The input pixel a kernel tap reads for output position `o`, or None in the padding.
#[inline]
fn tap(o: usize, stride: usize, pad: usize, r: usize, size: usize) -> Option<usize> {
    (o * stride + r).checked_sub(pad).filter(|&i| i < size)
}

/// Forward pass, no bias; y overwritten.
pub fn forward(s: &Conv2dShape, x: &[f32], w: &[f32], y: &mut [f32]) {
    super::check_conv_lens(s, x, w, y);
    let (oh, ow) = (s.out_h(), s.out_w());
    for n in 0..s.batch {
        for co in 0..s.out_channels {
            for i in 0..oh {
                for j in 0..ow {
                    let mut sum = 0.0f32;
                    for ci in 0..s.in_channels {
                        let plane = &x[(n * s.in_channels + ci) * s.in_h * s.in_w..];
                        let wk = &w[(co * s.in_channels + ci) * s.kernel_h * s.kernel_w..];
                        for r in 0..s.kernel_h {
                            let Some(ih) = tap(i, s.stride_h, s.pad_h, r, s.in_h) else {
                                continue;
                            };
                            for c in 0..s.kernel_w {
                                if let Some(iw) = tap(j, s.stride_w, s.pad_w, c, s.in_w) {
                                    sum += wk[r * s.kernel_w + c] * plane[ih * s.in_w + iw];
                                }
                            }
                        }
                    }
                    y[((n * s.out_channels + co) * oh + i) * ow + j] = sum;
                }
            }
        }
    }
}

/// Weight gradient summed over the batch; dw overwritten.
pub fn weight_grad(s: &Conv2dShape, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    super::check_conv_lens(s, x, dw, dy);
    let (oh, ow) = (s.out_h(), s.out_w());
    for co in 0..s.out_channels {
        for ci in 0..s.in_channels {
            for r in 0..s.kernel_h {
                for c in 0..s.kernel_w {
                    let mut sum = 0.0f32;
                    for n in 0..s.batch {
                        let plane = &x[(n * s.in_channels + ci) * s.in_h * s.in_w..];
                        let g = &dy[(n * s.out_channels + co) * oh * ow..];
                        for i in 0..oh {
                            let Some(ih) = tap(i, s.stride_h, s.pad_h, r, s.in_h) else {
                                continue;
                            };
                            for j in 0..ow {
                                if let Some(iw) = tap(j, s.stride_w, s.pad_w, c, s.in_w) {
                                    sum += g[i * ow + j] * plane[ih * s.in_w + iw];
                                }
                            }
                        }
                    }
                    dw[((co * s.in_channels + ci) * s.kernel_h + r) * s.kernel_w + c] = sum;
                }
            }
        }
    }
}
