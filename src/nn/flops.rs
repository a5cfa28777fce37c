//! Floating-point work of a model: what a forward pass and a training step cost per image.
//!
//! Counted as the GEMM-shaped work only (one multiply-add = 2 FLOPs): convolutions and linear
//! layers. ReLU, pooling, the loss and the optimiser are memory-bound and cost no FLOPs here;
//! they show up as the gap between a run's time and its floor (work ÷ the device's peak).

use super::{Layer, Sequential};
use crate::{Error, Result};

/// FLOPs per image of one model.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Flops {
    /// The forward pass.
    pub forward: f64,
    /// A training step: the forward pass, every weight gradient, and the input gradient of
    /// every layer but the first (nothing needs the gradient of the images).
    pub train_step: f64,
}

impl Sequential {
    /// The FLOPs per image of this model on inputs of `channels × height × width`; an error
    /// when the layers do not fit that input.
    pub fn flops_per_image(&self, channels: usize, height: usize, width: usize) -> Result<Flops> {
        let mut shape = vec![channels, height, width];
        let mut out = Flops::default();
        let mut first_weighted = true;
        for layer in &self.layers {
            let (layer_flops, next) = layer_flops(layer, &shape)?;
            out.forward += layer_flops;
            // Weight gradient: one more product of the same size; input gradient: another.
            out.train_step += layer_flops * if first_weighted { 2.0 } else { 3.0 };
            if layer_flops > 0.0 {
                first_weighted = false;
            }
            shape = next;
        }
        Ok(out)
    }
}

/// The forward FLOPs of `layer` on one image of `shape` (without the batch) and its output shape.
fn layer_flops(layer: &Layer, shape: &[usize]) -> Result<(f64, Vec<usize>)> {
    let mismatch = || {
        Error::Shape(format!(
            "{} does not take an input of shape {shape:?}",
            layer.describe()
        ))
    };
    match layer {
        Layer::Conv2d { weight, params, .. } => {
            let w = weight.shape();
            let &[c, h, wd] = shape else {
                return Err(mismatch());
            };
            if w.len() != 4 || w[1] != c {
                return Err(mismatch());
            }
            let (out_h, out_w) = (
                (h + 2 * params.padding.0)
                    .checked_sub(w[2])
                    .ok_or_else(mismatch)?
                    / params.stride.0
                    + 1,
                (wd + 2 * params.padding.1)
                    .checked_sub(w[3])
                    .ok_or_else(mismatch)?
                    / params.stride.1
                    + 1,
            );
            let macs = (w[0] * w[1] * w[2] * w[3] * out_h * out_w) as f64;
            Ok((2.0 * macs, vec![w[0], out_h, out_w]))
        }
        Layer::Linear { weight, .. } => {
            let w = weight.shape();
            if shape.iter().product::<usize>() != w[1] {
                return Err(mismatch());
            }
            Ok((2.0 * (w[0] * w[1]) as f64, vec![w[0]]))
        }
        Layer::MaxPool2d { kernel, stride } => {
            let &[c, h, w] = shape else {
                return Err(mismatch());
            };
            let out_h = h.checked_sub(kernel.0).ok_or_else(mismatch)? / stride.0 + 1;
            let out_w = w.checked_sub(kernel.1).ok_or_else(mismatch)? / stride.1 + 1;
            Ok((0.0, vec![c, out_h, out_w]))
        }
        Layer::Flatten => Ok((0.0, vec![shape.iter().product()])),
        Layer::Relu => Ok((0.0, shape.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use crate::nn::ArchSpec;
    use crate::Device;

    /// The teacher on 28×28: conv1 2·64·9·784, conv2 2·128·64·9·196, fc1 2·1000·6272,
    /// fc2 2·10·1000 FLOPs forward, counted by hand.
    #[test]
    fn teacher_flops_by_hand() {
        let dev = Device::cpu();
        let model = ArchSpec::preset("teacher", 1, 28, 28, 10)
            .unwrap()
            .build(&dev, 0)
            .unwrap();
        let conv1 = 2.0 * 64.0 * 9.0 * 784.0;
        let rest = 2.0 * 128.0 * 64.0 * 9.0 * 196.0 + 2.0 * 1000.0 * 6272.0 + 2.0 * 10.0 * 1000.0;
        let f = model.flops_per_image(1, 28, 28).unwrap();
        assert_eq!(f.forward, conv1 + rest);
        assert_eq!(f.train_step, 2.0 * conv1 + 3.0 * rest);
    }

    #[test]
    fn a_wrong_input_is_an_error() {
        let dev = Device::cpu();
        let model = ArchSpec::preset("student", 1, 28, 28, 10)
            .unwrap()
            .build(&dev, 0)
            .unwrap();
        assert!(model.flops_per_image(3, 28, 28).is_err());
        assert!(model.flops_per_image(1, 32, 32).is_err());
        assert!(model.flops_per_image(1, 1, 1).is_err());
    }
}
