//! The CPU conv2d ladder (`kernels/src/ladder/conv_*.rs`, then the production conv): the
//! forward pass and the weight gradient, and the shapes they are checked and timed at.

use distill_kernels::ladder::{conv_rungs, conv_weight_grad_rungs, ConvFn, Rung};
use distill_kernels::simd::{self, SimdLevel};
use distill_kernels::{conv, Conv2dShape};

use super::measure::{seconds, LadderRung, Pass, Rig, Step};
use super::reference::{conv_forward_f64, conv_weight_grad_f64, ConvProblem, Reference};

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

pub(crate) fn check_problems() -> Vec<ConvProblem> {
    CHECK_SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| ConvProblem::new(*s, 300 + 3 * i as u64))
        .collect()
}

/// The presets' layers (`quick`: the student's two, at batch 32).
pub(crate) fn time_problems(quick: bool) -> Vec<ConvProblem> {
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
        .map(|(i, s)| ConvProblem::new(s, 400 + 3 * i as u64))
        .collect()
}

pub(crate) fn conv_reference(p: &ConvProblem, pass: Pass) -> Reference {
    match pass {
        Pass::Forward => conv_forward_f64(&p.shape, &p.x, &p.w),
        Pass::WeightGrad => conv_weight_grad_f64(&p.shape, &p.x, &p.dy),
    }
}

/// The length of a pass's output: y (forward) or dW (weight gradient).
fn output_len(p: &ConvProblem, pass: Pass) -> usize {
    match pass {
        Pass::Forward => p.shape.output_len(),
        Pass::WeightGrad => p.shape.weight_len(),
    }
}

/// A rung of the kernels crate's conv registries.
struct CpuConv {
    rung: Rung<ConvFn>,
    pass: Pass,
}

impl CpuConv {
    /// The forward pass reads x and w; the weight gradient x and dy.
    fn run(&self, p: &ConvProblem, out: &mut [f32]) {
        let second = match self.pass {
            Pass::Forward => &p.w,
            Pass::WeightGrad => &p.dy,
        };
        (self.rung.run)(&p.shape, &p.x, second, out);
    }
}

impl LadderRung<ConvProblem> for CpuConv {
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
    fn compute<'a>(&'a mut self, p: &'a ConvProblem) -> Step<'a, Vec<f32>> {
        let mut out = vec![f32::NAN; output_len(p, self.pass)];
        self.run(p, &mut out);
        Box::pin(std::future::ready(Ok(out)))
    }
    fn time<'a>(&'a mut self, p: &'a ConvProblem, reps: usize) -> Step<'a, f64> {
        let mut out = vec![0.0; output_len(p, self.pass)];
        let secs = seconds(reps, || self.run(p, &mut out));
        Box::pin(std::future::ready(Ok(secs)))
    }
}

/// The production conv at one more SIMD level (checked only).
struct ProductionAt(SimdLevel, Pass);

impl ProductionAt {
    fn run(&self, p: &ConvProblem, out: &mut [f32]) {
        match self.1 {
            Pass::Forward => conv::conv2d_forward_at(self.0, &p.shape, &p.x, &p.w, None, out),
            Pass::WeightGrad => conv::conv2d_backward_weight_at(self.0, &p.shape, &p.x, &p.dy, out),
        }
    }
}

impl LadderRung<ConvProblem> for ProductionAt {
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
    fn compute<'a>(&'a mut self, p: &'a ConvProblem) -> Step<'a, Vec<f32>> {
        let mut out = vec![f32::NAN; output_len(p, self.1)];
        self.run(p, &mut out);
        Box::pin(std::future::ready(Ok(out)))
    }
    fn time<'a>(&'a mut self, p: &'a ConvProblem, reps: usize) -> Step<'a, f64> {
        let mut out = vec![0.0; output_len(p, self.1)];
        let secs = seconds(reps, || self.run(p, &mut out));
        Box::pin(std::future::ready(Ok(secs)))
    }
}

pub(crate) fn rig(quick: bool) -> Rig<ConvProblem> {
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
            Box::new(ProductionAt(l, Pass::Forward)) as Box<dyn LadderRung<ConvProblem>>,
            Box::new(ProductionAt(l, Pass::WeightGrad)),
        ]
    });
    Rig {
        device: super::cpu_device_label(),
        rungs: forward
            .chain(wgrad)
            .map(|r| Box::new(r) as Box<dyn LadderRung<ConvProblem>>)
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
