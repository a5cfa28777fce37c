//! matmul and linear, and their gradient rules. Backward uses the GEMM's transposed variants,
//! so no transpose is ever materialised.

use super::elementwise::with_node;
use super::*;
use crate::autograd::record;
use crate::backend::{GemmBias, GemmShape, Trans};

/// `C[m×n] = A[m×k]·B[k×n]`. Gradients: `dA = dC·Bᵀ`, `dB = Aᵀ·dC`.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    check_f32("matmul", &[a, b])?;
    check_same_device("matmul", &[a, b])?;
    check_rank("matmul", "A", a, 2)?;
    check_rank("matmul", "B", b, 2)?;
    check_nonempty("matmul", a)?;
    check_nonempty("matmul", b)?;
    let (m, k) = (a.shape()[0], a.shape()[1]);
    let (k2, n) = (b.shape()[0], b.shape()[1]);
    if k != k2 {
        return Err(Error::Shape(format!(
            "matmul: inner dimensions differ: {:?} · {:?}",
            a.shape(),
            b.shape()
        )));
    }
    let be = a.device().backend();
    let c = Tensor::empty_like_shape(&[m, n], DType::F32, a.device())?;
    be.gemm(
        GemmShape {
            ta: Trans::N,
            tb: Trans::N,
            m,
            n,
            k,
        },
        a.storage(),
        b.storage(),
        c.storage(),
        GemmBias::None,
        false,
        false,
    )?;
    let (sa, sb) = (a.clone(), b.clone());
    let node = record("matmul", &[a, b], move |dc| {
        let be = dc.device().backend();
        let mut out = vec![None, None];
        if sa.requires_grad() {
            let da = Tensor::empty_like_shape(&[m, k], DType::F32, dc.device())?;
            be.gemm(
                GemmShape {
                    ta: Trans::N,
                    tb: Trans::T,
                    m,
                    n: k,
                    k: n,
                },
                dc.storage(),
                sb.storage(),
                da.storage(),
                GemmBias::None,
                false,
                false,
            )?;
            out[0] = Some(da);
        }
        if sb.requires_grad() {
            let db = Tensor::empty_like_shape(&[k, n], DType::F32, dc.device())?;
            be.gemm(
                GemmShape {
                    ta: Trans::T,
                    tb: Trans::N,
                    m: k,
                    n,
                    k: m,
                },
                sa.storage(),
                dc.storage(),
                db.storage(),
                GemmBias::None,
                false,
                false,
            )?;
            out[1] = Some(db);
        }
        Ok(out)
    });
    Ok(with_node(c, node))
}

/// A fully connected layer with PyTorch's layout: `y[B×out] = x[B×in]·Wᵀ + b`, W stored
/// `[out, in]`; with `relu`, `max(0, ·)` is fused into the GEMM's epilogue.
/// Gradients (with `dz = dy ⊙ [y > 0]` when fused): `dx = dz·W`, `dW = dzᵀ·x`, `db = Σ_rows dz`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    let mut all = vec![x, weight];
    all.extend(bias);
    check_f32("linear", &all)?;
    check_same_device("linear", &all)?;
    check_rank("linear", "input", x, 2)?;
    check_rank("linear", "weight", weight, 2)?;
    check_nonempty("linear", x)?;
    check_nonempty("linear", weight)?;
    let (batch, fan_in) = (x.shape()[0], x.shape()[1]);
    let (fan_out, w_in) = (weight.shape()[0], weight.shape()[1]);
    if fan_in != w_in {
        return Err(Error::Shape(format!(
            "linear: input has {fan_in} features but the weight {:?} expects {w_in}",
            weight.shape()
        )));
    }
    if let Some(b) = bias {
        if b.shape() != [fan_out] {
            return Err(Error::Shape(format!(
                "linear: bias shape {:?} != [{fan_out}]",
                b.shape()
            )));
        }
    }
    let be = x.device().backend();
    let y = Tensor::empty_like_shape(&[batch, fan_out], DType::F32, x.device())?;
    let gemm_bias = bias.map_or(GemmBias::None, |b| GemmBias::PerCol(b.storage()));
    be.gemm(
        GemmShape {
            ta: Trans::N,
            tb: Trans::T,
            m: batch,
            n: fan_out,
            k: fan_in,
        },
        x.storage(),
        weight.storage(),
        y.storage(),
        gemm_bias,
        false,
        relu,
    )?;

    let (sx, sw, sy) = (x.clone(), weight.clone(), y.clone());
    let has_bias = bias.is_some();
    let node = record("linear", &all, move |dy| {
        let be = dy.device().backend();
        let dz = if relu {
            // y > 0 exactly where the pre-activation was > 0.
            let dz = Tensor::empty_like_shape(dy.shape(), DType::F32, dy.device())?;
            be.relu_backward(sy.storage(), dy.storage(), dz.storage())?;
            dz
        } else {
            dy.clone()
        };
        let mut out = vec![None, None];
        if sx.requires_grad() {
            let dx = Tensor::empty_like_shape(&[batch, fan_in], DType::F32, dy.device())?;
            be.gemm(
                GemmShape {
                    ta: Trans::N,
                    tb: Trans::N,
                    m: batch,
                    n: fan_in,
                    k: fan_out,
                },
                dz.storage(),
                sw.storage(),
                dx.storage(),
                GemmBias::None,
                false,
                false,
            )?;
            out[0] = Some(dx);
        }
        if sw.requires_grad() {
            let dw = Tensor::empty_like_shape(&[fan_out, fan_in], DType::F32, dy.device())?;
            be.gemm(
                GemmShape {
                    ta: Trans::T,
                    tb: Trans::N,
                    m: fan_out,
                    n: fan_in,
                    k: batch,
                },
                dz.storage(),
                sx.storage(),
                dw.storage(),
                GemmBias::None,
                false,
                false,
            )?;
            out[1] = Some(dw);
        }
        if has_bias {
            let db = Tensor::empty_like_shape(&[fan_out], DType::F32, dy.device())?;
            be.column_sums(batch, fan_out, dz.storage(), db.storage())?;
            out.push(Some(db));
        }
        Ok(out)
    });
    Ok(with_node(y, node))
}
