//! The CPU conv2d ladder (`kernels/src/ladder/conv_*.rs`, then the production conv): the
//! forward pass and the weight gradient, and the shapes they are checked and timed at.

use distill_kernels::ladder::{conv_rungs, conv_weight_grad_rungs, ConvFn, Rung};
use distill_kernels::simd::{self, SimdLevel};
use distill_kernels::{conv, Conv2dShape};

use super::measure::{seconds, LadderRung, Pass, Rig};
use super::reference::{conv_forward_f64, conv_weight_grad_f64, Problem, Reference};
use crate::Result;

#[allow(clippy::too_many_arguments)]
const fn shape(
    batch: usize,
    in_channels: usize,
    in_h: usize,
    in_w: usize,
    out_channels: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    pad: (usize, usize),
) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_channels,
        in_h,
        in_w,
        out_channels,
        kernel_h: kernel.0,
        kernel_w: kernel.1,
        stride_h: stride.0,
        stride_w: stride.1,
        pad_h: pad.0,
        pad_w: pad.1,
    }
}

/// Odd geometries: a kernel as large as the padded input, unequal strides and kernel sides,
/// channel counts that are no tile multiple (66 output channels, K = 153), and one input
/// channel (K = 9: the production conv's direct thin kernels on AVX2).
pub(crate) const CHECK_SHAPES: [Conv2dShape; 5] = [
    shape(1, 1, 5, 5, 1, (5, 5), (1, 1), (2, 2)),
    shape(2, 1, 10, 13, 33, (3, 3), (1, 1), (1, 1)),
    shape(2, 3, 9, 7, 5, (3, 3), (1, 1), (1, 1)),
    shape(3, 4, 11, 10, 7, (3, 2), (2, 1), (0, 1)),
    shape(2, 17, 8, 9, 66, (3, 3), (1, 1), (1, 1)),
];

/// The teacher and student presets' conv layers at batch 128 on 28×28 inputs (3×3, pad 1):
/// student conv1, teacher conv1, student conv2, teacher conv2.
pub(crate) const PRESET_SHAPES: [Conv2dShape; 4] = [
    shape(128, 1, 28, 28, 32, (3, 3), (1, 1), (1, 1)),
    shape(128, 1, 28, 28, 64, (3, 3), (1, 1), (1, 1)),
    shape(128, 32, 14, 14, 64, (3, 3), (1, 1), (1, 1)),
    shape(128, 64, 14, 14, 128, (3, 3), (1, 1), (1, 1)),
];

pub(crate) fn check_problems() -> Vec<Problem> {
    CHECK_SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| Problem::conv(*s, 300 + 3 * i as u64))
        .collect()
}

/// The presets' layers (`quick`: the student's two, at batch 32).
pub(crate) fn time_problems(quick: bool) -> Vec<Problem> {
    let shapes: Vec<Conv2dShape> = if quick {
        [PRESET_SHAPES[0], PRESET_SHAPES[2]]
            .map(|s| Conv2dShape { batch: 32, ..s })
            .to_vec()
    } else {
        PRESET_SHAPES.to_vec()
    };
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, s)| Problem::conv(s, 400 + 3 * i as u64))
        .collect()
}

pub(crate) fn conv_reference(p: &Problem, pass: Pass) -> Reference {
    let Problem::Conv { shape, x, w, dy } = p else {
        unreachable!("the conv ladder has conv problems only")
    };
    match pass {
        Pass::Forward => conv_forward_f64(shape, x, w),
        Pass::WeightGrad => conv_weight_grad_f64(shape, x, dy),
    }
}

/// A rung of the kernels crate's conv registries.
struct CpuConv {
    rung: Rung<ConvFn>,
    pass: Pass,
}

impl CpuConv {
    /// The rung's operands and output length.
    fn operands<'p>(&self, p: &'p Problem) -> (&'p Conv2dShape, &'p [f32], &'p [f32], usize) {
        let Problem::Conv { shape, x, w, dy } = p else {
            unreachable!("the conv ladder has conv problems only")
        };
        match self.pass {
            Pass::Forward => (shape, x, w, shape.output_len()),
            Pass::WeightGrad => (shape, x, dy, shape.weight_len()),
        }
    }
}

impl LadderRung for CpuConv {
    fn name(&self) -> String {
        self.rung.name.to_string()
    }
    fn pass(&self) -> Pass {
        self.pass
    }
    fn naive(&self) -> bool {
        self.rung.naive
    }
    fn unsupported(&self) -> Option<String> {
        (!self.rung.is_supported()).then(|| format!("this CPU lacks {}", self.rung.needs))
    }
    fn compute(&mut self, p: &Problem) -> Result<Vec<f32>> {
        let (s, x, k, len) = self.operands(p);
        let mut out = vec![f32::NAN; len];
        (self.rung.run)(s, x, k, &mut out);
        Ok(out)
    }
    fn time(&mut self, p: &Problem, reps: usize) -> Result<f64> {
        let (s, x, k, len) = self.operands(p);
        let mut out = vec![0.0; len];
        Ok(seconds(reps, || (self.rung.run)(s, x, k, &mut out)))
    }
}

/// The production conv at one more SIMD level (checked only).
struct ProductionAt(SimdLevel, Pass);

impl LadderRung for ProductionAt {
    fn name(&self) -> String {
        match self.1 {
            Pass::Forward => format!("conv_production@{}", self.0),
            Pass::WeightGrad => format!("conv_wgrad_production@{}", self.0),
        }
    }
    fn pass(&self) -> Pass {
        self.1
    }
    fn check_only(&self) -> bool {
        true
    }
    fn compute(&mut self, p: &Problem) -> Result<Vec<f32>> {
        let Problem::Conv { shape, x, w, dy } = p else {
            unreachable!("the conv ladder has conv problems only")
        };
        Ok(match self.1 {
            Pass::Forward => {
                let mut y = vec![f32::NAN; shape.output_len()];
                conv::conv2d_forward_at(self.0, shape, x, w, None, &mut y);
                y
            }
            Pass::WeightGrad => {
                let mut dw = vec![f32::NAN; shape.weight_len()];
                conv::conv2d_backward_weight_at(self.0, shape, x, dy, &mut dw);
                dw
            }
        })
    }
    fn time(&mut self, p: &Problem, reps: usize) -> Result<f64> {
        Ok(seconds(reps, || {
            let _ = self.compute(p);
        }))
    }
}

pub(crate) fn rig(quick: bool) -> Rig {
    let forward = conv_rungs().into_iter().map(|rung| CpuConv {
        rung,
        pass: Pass::Forward,
    });
    let wgrad = conv_weight_grad_rungs().into_iter().map(|rung| CpuConv {
        rung,
        pass: Pass::WeightGrad,
    });
    let at_levels = simd::available().into_iter().flat_map(|l| {
        [
            Box::new(ProductionAt(l, Pass::Forward)) as Box<dyn LadderRung>,
            Box::new(ProductionAt(l, Pass::WeightGrad)),
        ]
    });
    Rig {
        device: format!(
            "CPU ({}, {} threads)",
            simd::level(),
            rayon::current_num_threads()
        ),
        rungs: forward
            .chain(wgrad)
            .map(|r| Box::new(r) as Box<dyn LadderRung>)
            .chain(at_levels)
            .collect(),
        check_shapes: check_problems(),
        time_shapes: time_problems(quick),
        call_budget_s: 30.0,
        reference: conv_reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_shapes_reach_both_production_paths() {
        let thin = |s: &Conv2dShape| conv::uses_thin_kernels(SimdLevel::Avx2Fma, s);
        if SimdLevel::Avx2Fma.is_supported() {
            assert!(CHECK_SHAPES.iter().any(thin));
        }
        assert!(!CHECK_SHAPES.iter().all(thin));
        for s in CHECK_SHAPES.iter().chain(&PRESET_SHAPES) {
            s.validate().unwrap();
        }
    }
}
