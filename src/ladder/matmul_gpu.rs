//! The WGSL matmul ladder (`shaders/ladder/matmul_*.wgsl`, then the production
//! `shaders/matmul.wgsl` through the engine's backend) on one adapter.
//!
//! Rung shaders are compiled only when this ladder runs ([`Standalone`]), never at device
//! start-up. Every rung binds the same things: a `Params { m, n, k }` uniform, then A, B, C.

use std::sync::Arc;

use super::matmul_cpu::{check_problems, matmul_reference, time_problems, PRESET_SHAPES};
use super::measure::{LadderRung, Rig, Step};
use super::reference::MatmulProblem;
use crate::backend::gpu::standalone::Standalone;
use crate::backend::gpu::GpuBackend;
use crate::backend::{Backend, GemmBias, GemmShape, Trans};
use crate::Result;
use web_time::Instant;

/// How a rung reads its operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// `array<f32>` at the problem's own sizes.
    F32,
    /// `array<vec4<f32>>`: k and n padded with zeros to multiples of 4.
    Vec4,
    /// Like `Vec4`, with A and B stored as f16.
    Vec4F16,
}

/// How the output is cut among workgroups.
#[derive(Clone, Copy, Debug)]
enum Grid {
    /// 16×16 invocations per workgroup, rows along x (rung 1).
    RowsOnX16,
    /// `bm` rows × `bn` columns of C per workgroup, columns along x.
    Tile { bm: u32, bn: u32 },
}

/// One shader of `shaders/ladder/`.
#[derive(Clone, Copy, Debug)]
struct WgslRung {
    name: &'static str,
    source: &'static str,
    layout: Layout,
    grid: Grid,
    needs: wgpu::Features,
    naive: bool,
}

macro_rules! rung {
    ($name:literal, $layout:ident, $grid:expr, $needs:expr, $naive:literal) => {
        WgslRung {
            name: $name,
            source: include_str!(concat!("../../shaders/ladder/", $name, ".wgsl")),
            layout: Layout::$layout,
            grid: $grid,
            needs: $needs,
            naive: $naive,
        }
    };
}

const NONE: wgpu::Features = wgpu::Features::empty();
const T16: Grid = Grid::Tile { bm: 16, bn: 16 };
const T64: Grid = Grid::Tile { bm: 64, bn: 64 };

const RUNGS: [WgslRung; 11] = [
    rung!("matmul_01_naive", F32, Grid::RowsOnX16, NONE, true),
    rung!("matmul_02_coalesced", F32, T16, NONE, true),
    rung!("matmul_03_workgroup_tiles", F32, T16, NONE, false),
    rung!("matmul_04_register_tile_1d", F32, T64, NONE, false),
    rung!("matmul_05_register_tile_2d", F32, T64, NONE, false),
    rung!("matmul_06_vec4", Vec4, T64, NONE, false),
    rung!("matmul_07_conflict_free", Vec4, T64, NONE, false),
    rung!("matmul_08_double_buffer", Vec4, T64, NONE, false),
    rung!(
        "matmul_09_subgroup",
        F32,
        Grid::Tile { bm: 8, bn: 64 },
        wgpu::Features::SUBGROUP,
        false
    ),
    rung!(
        "matmul_10_f16",
        Vec4F16,
        T64,
        wgpu::Features::SHADER_F16,
        false
    ),
    rung!("matmul_11_registers", Vec4, T64, NONE, false),
];

/// `rows×cols` row-major `src` widened to `rows×width` with zeros.
fn pad_cols(src: &[f32], rows: usize, cols: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * width];
    for r in 0..rows {
        out[r * width..r * width + cols].copy_from_slice(&src[r * cols..(r + 1) * cols]);
    }
    out
}

/// A problem uploaded for one rung: its buffers, parameters and grid.
struct Staged {
    a: wgpu::Buffer,
    b: wgpu::Buffer,
    c: wgpu::Buffer,
    params: [u32; 4],
    groups: (u32, u32, u32),
    /// C's stored row length (n, or n padded to 4).
    ldc: usize,
}

struct GpuMatmul {
    def: WgslRung,
    dev: Arc<Standalone>,
}

impl GpuMatmul {
    async fn stage(&self, p: &MatmulProblem) -> Result<Staged> {
        let MatmulProblem { m, k, n, a, b } = p;
        let (m, k, n) = (*m, *k, *n);
        let (kp, np) = match self.def.layout {
            Layout::F32 => (k, n),
            Layout::Vec4 | Layout::Vec4F16 => (k.next_multiple_of(4), n.next_multiple_of(4)),
        };
        let a = pad_cols(a, m, k, kp);
        let b = pad_cols(b, k, n, np);
        let b = [b, vec![0.0; (kp - k) * np]].concat();
        let bytes = |v: &[f32]| -> Vec<u8> {
            if self.def.layout == Layout::Vec4F16 {
                let h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
                bytemuck::cast_slice(&h).to_vec()
            } else {
                bytemuck::cast_slice(v).to_vec()
            }
        };
        let groups = match self.def.grid {
            Grid::RowsOnX16 => (m.div_ceil(16), n.div_ceil(16)),
            Grid::Tile { bm, bn } => (np.div_ceil(bn as usize), m.div_ceil(bm as usize)),
        };
        let dim = |g: usize| u32::try_from(g).unwrap_or(u32::MAX);
        Ok(Staged {
            a: self.dev.upload(&bytes(&a)).await?,
            b: self.dev.upload(&bytes(&b)).await?,
            c: self.dev.zeroed((m * np * 4) as u64).await?,
            params: [m as u32, np as u32, kp as u32, 0],
            groups: (dim(groups.0), dim(groups.1), 1),
            ldc: np,
        })
    }

    async fn dispatch(&self, s: &Staged, reps: u32) -> Result<()> {
        let pipe = self
            .dev
            .pipeline(self.def.name, self.def.source, "main", self.def.needs)
            .await?;
        self.dev
            .dispatch(
                &pipe,
                bytemuck::cast_slice(&s.params),
                &[(1, &s.a), (2, &s.b), (3, &s.c)],
                s.groups,
                reps,
            )
            .await
    }
}

impl LadderRung<MatmulProblem> for GpuMatmul {
    fn name(&self) -> String {
        self.def.name.to_string()
    }
    fn naive(&self) -> bool {
        self.def.naive
    }
    fn stores_f16(&self) -> bool {
        self.def.layout == Layout::Vec4F16
    }
    fn unsupported(&self) -> Option<String> {
        if !self.dev.has(self.def.needs) {
            return Some(format!(
                "the adapter lacks {}",
                crate::backend::gpu::context::feature_words(self.def.needs)
            ));
        }
        let sg = self.dev.subgroup_max_size();
        if self.def.needs.contains(wgpu::Features::SUBGROUP) && sg > 64 {
            return Some(format!(
                "subgroups of up to {sg} do not fit its 64 invocations"
            ));
        }
        None
    }
    fn compute<'a>(&'a mut self, p: &'a MatmulProblem) -> Step<'a, Vec<f32>> {
        Box::pin(async move {
            let (m, n) = (p.m, p.n);
            let s = self.stage(p).await?;
            self.dispatch(&s, 1).await?;
            let raw = self.dev.read(&s.c, (m * s.ldc * 4) as u64).await?;
            let c: &[f32] = bytemuck::cast_slice(&raw);
            Ok((0..m)
                .flat_map(|i| c[i * s.ldc..i * s.ldc + n].iter().copied())
                .collect())
        })
    }
    fn time<'a>(&'a mut self, p: &'a MatmulProblem, reps: usize) -> Step<'a, f64> {
        Box::pin(async move {
            let s = self.stage(p).await?;
            self.dispatch(&s, 1).await?; // compiles, and waits for the uploads below
            self.dev.finished().await?;
            let start = Instant::now();
            self.dispatch(&s, reps as u32).await?;
            self.dev.finished().await?;
            Ok(start.elapsed().as_secs_f64())
        })
    }
}

/// The production kernel (`shaders/matmul.wgsl`) through the engine's GPU backend.
struct GpuProduction {
    backend: Arc<GpuBackend>,
}

impl GpuProduction {
    /// Uploads the operands, runs `reps` GEMMs and returns C and the seconds they took.
    async fn run(&self, p: &MatmulProblem, reps: usize) -> Result<(Vec<f32>, f64)> {
        let MatmulProblem { m, k, n, a, b } = p;
        let be = &self.backend;
        let (a, b, c) = (be.upload_f32(a)?, be.upload_f32(b)?, be.zeros(m * n)?);
        let shape = GemmShape {
            ta: Trans::N,
            tb: Trans::N,
            m: *m,
            n: *n,
            k: *k,
        };
        be.finished().await?;
        let start = Instant::now();
        for _ in 0..reps {
            be.gemm(shape, &a, &b, &c, GemmBias::None, false, false)?;
        }
        be.finished().await?;
        let secs = start.elapsed().as_secs_f64();
        Ok((be.read_f32(&c).await?, secs))
    }
}

impl LadderRung<MatmulProblem> for GpuProduction {
    fn name(&self) -> String {
        "matmul_production".into()
    }
    fn compute<'a>(&'a mut self, p: &'a MatmulProblem) -> Step<'a, Vec<f32>> {
        Box::pin(async move { Ok(self.run(p, 1).await?.0) })
    }
    fn time<'a>(&'a mut self, p: &'a MatmulProblem, reps: usize) -> Step<'a, f64> {
        Box::pin(async move { Ok(self.run(p, reps).await?.1) })
    }
}

/// The ladder on `dev`, its top rung on `engine` (a backend on the same adapter).
pub(crate) fn rig(
    dev: Arc<Standalone>,
    engine: Arc<GpuBackend>,
    quick: bool,
) -> Rig<MatmulProblem> {
    let mut rungs: Vec<Box<dyn LadderRung<MatmulProblem>>> = RUNGS
        .iter()
        .map(|&def| {
            Box::new(GpuMatmul {
                def,
                dev: dev.clone(),
            }) as Box<dyn LadderRung<MatmulProblem>>
        })
        .collect();
    rungs.push(Box::new(GpuProduction { backend: engine }));
    // A software adapter runs these on the CPU through Vulkan emulation: time small shapes.
    let (time_shapes, budget) = if dev.is_software() {
        let mut p = time_problems(true, &[256, 512]);
        p.truncate(if quick { 2 } else { 4 });
        (p, 5.0)
    } else {
        (time_problems(quick, &[256, 512, 1024, 2048, 4096]), 30.0)
    };
    debug_assert!(PRESET_SHAPES.len() >= 2);
    Rig {
        device: format!("gpu:{} {}", dev.index(), dev.label()),
        rungs,
        check_shapes: check_problems(),
        time_shapes,
        call_budget_s: budget,
        reference: matmul_reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The browser's shader check compiles the same rung files with the same features.
    #[test]
    fn the_shader_check_lists_every_rung() {
        use crate::backend::gpu::shader_check::LADDER_WGSL;
        for r in RUNGS {
            let listed = LADDER_WGSL.iter().find(|(name, _, _)| *name == r.name);
            let (_, source, needs) = listed.unwrap_or_else(|| panic!("{} is not listed", r.name));
            assert_eq!((*source, *needs), (r.source, r.needs), "{}", r.name);
        }
    }

    /// The timing path of every rung (the checks cover `compute`): a small batch of calls
    /// runs and reports a positive time. No speed is asserted.
    #[test]
    fn every_rung_times_a_batch_of_calls() {
        crate::ladder::quiet_vulkan_in_tests();
        let (dev, engine) = match crate::ladder::open_gpu(None) {
            Ok(s) => s,
            Err(e) if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("DISTILL_REQUIRE_GPU=1 but no adapter opened: {e}")
            }
            Err(_) => return,
        };
        let mut s = rig(dev, engine, true);
        let p = MatmulProblem::new(17, 33, 9, 7);
        for rung in s.rungs.iter_mut().filter(|r| r.unsupported().is_none()) {
            let secs = pollster::block_on(rung.time(&p, 3)).unwrap();
            assert!(secs.is_finite() && secs > 0.0, "{}", rung.name());
        }
    }
}
