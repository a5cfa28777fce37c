//! The CPU GEMM ladder (`kernels/src/ladder/gemm_*.rs`, then the production GEMM) and the
//! shapes it is checked and timed at.

use distill_kernels::ladder::{gemm_production_at, gemm_rungs, GemmFn, Rung};
use distill_kernels::simd::{self, SimdLevel};

use super::measure::{seconds, LadderRung, Pass, Rig, Step};
use super::reference::{matmul_f64, MatmulProblem, Reference};

/// Sizes that are not multiples of any tile (MR 6/14, NR 16/32, blocks 64…), plus the
/// degenerate 1×1×1; m×k·k×n.
pub(crate) const CHECK_SHAPES: [(usize, usize, usize); 4] =
    [(1, 1, 1), (17, 33, 9), (65, 127, 70), (130, 66, 257)];

/// The GEMMs of the teacher and student presets at batch 128 (Fashion-MNIST 28×28): m×k·k×n.
pub(crate) const PRESET_SHAPES: [(usize, usize, usize); 4] = [
    (128, 1000, 10),   // teacher fc2: hidden → classes
    (128, 576, 196),   // teacher conv2 as im2col GEMM, one image: 64·3·3 → 14·14 pixels
    (128, 3136, 500),  // student fc1
    (128, 6272, 1000), // teacher fc1
];

pub(crate) fn check_problems() -> Vec<MatmulProblem> {
    CHECK_SHAPES
        .iter()
        .enumerate()
        .map(|(i, &(m, k, n))| MatmulProblem::new(m, k, n, 100 + 2 * i as u64))
        .collect()
}

/// The presets' shapes and squares; `quick`: the presets' two small shapes and squares to 512.
pub(crate) fn time_problems(quick: bool, squares: &[usize]) -> Vec<MatmulProblem> {
    let seeds = if quick {
        &PRESET_SHAPES[..2]
    } else {
        &PRESET_SHAPES[..]
    };
    let squares = if quick {
        &squares[..squares.len().min(2)]
    } else {
        squares
    };
    seeds
        .iter()
        .copied()
        .chain(squares.iter().map(|&s| (s, s, s)))
        .enumerate()
        .map(|(i, (m, k, n))| MatmulProblem::new(m, k, n, 200 + 2 * i as u64))
        .collect()
}

pub(crate) fn matmul_reference(p: &MatmulProblem, _pass: Pass) -> Reference {
    matmul_f64(p.m, p.k, p.n, &p.a, &p.b)
}

/// A rung of the kernels crate's registry.
struct CpuGemm {
    rung: Rung<GemmFn>,
}

impl CpuGemm {
    fn product(&self, p: &MatmulProblem, c: &mut [f32]) {
        (self.rung.run)(p.m, p.k, p.n, &p.a, &p.b, c);
    }
}

/// The production GEMM at one more SIMD level (checked only: the registry's top rung is
/// timed at the default level).
struct ProductionAt(SimdLevel);

impl ProductionAt {
    fn product(&self, p: &MatmulProblem, c: &mut [f32]) {
        gemm_production_at(self.0, p.m, p.k, p.n, &p.a, &p.b, c);
    }
}

impl LadderRung<MatmulProblem> for CpuGemm {
    fn name(&self) -> String {
        self.rung.name.to_string()
    }
    fn naive(&self) -> bool {
        self.rung.naive
    }
    fn unsupported(&self) -> Option<String> {
        (!self.rung.is_supported()).then(|| format!("this CPU lacks {}", self.rung.needs))
    }
    fn compute<'a>(&'a mut self, p: &'a MatmulProblem) -> Step<'a, Vec<f32>> {
        let mut c = vec![f32::NAN; p.m * p.n];
        self.product(p, &mut c);
        Box::pin(std::future::ready(Ok(c)))
    }
    fn time<'a>(&'a mut self, p: &'a MatmulProblem, reps: usize) -> Step<'a, f64> {
        let mut c = vec![0.0; p.m * p.n];
        let secs = seconds(reps, || self.product(p, &mut c));
        Box::pin(std::future::ready(Ok(secs)))
    }
}

impl LadderRung<MatmulProblem> for ProductionAt {
    fn name(&self) -> String {
        format!("gemm_production@{}", self.0)
    }
    fn check_only(&self) -> bool {
        true
    }
    fn compute<'a>(&'a mut self, p: &'a MatmulProblem) -> Step<'a, Vec<f32>> {
        let mut c = vec![f32::NAN; p.m * p.n];
        self.product(p, &mut c);
        Box::pin(std::future::ready(Ok(c)))
    }
    fn time<'a>(&'a mut self, p: &'a MatmulProblem, reps: usize) -> Step<'a, f64> {
        let mut c = vec![0.0; p.m * p.n];
        let secs = seconds(reps, || self.product(p, &mut c));
        Box::pin(std::future::ready(Ok(secs)))
    }
}

pub(crate) fn rig(quick: bool) -> Rig<MatmulProblem> {
    let mut rungs: Vec<Box<dyn LadderRung<MatmulProblem>>> = gemm_rungs()
        .into_iter()
        .map(|rung| Box::new(CpuGemm { rung }) as Box<dyn LadderRung<MatmulProblem>>)
        .collect();
    for level in simd::available() {
        rungs.push(Box::new(ProductionAt(level)));
    }
    Rig {
        device: super::cpu_device_label(),
        rungs,
        check_shapes: check_problems(),
        time_shapes: time_problems(quick, &[256, 512, 1024, 2048, 4096]),
        call_budget_s: 30.0,
        reference: matmul_reference,
    }
}
