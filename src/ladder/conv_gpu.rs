//! The WGSL conv2d ladder (`shaders/ladder/conv2d_*.wgsl`, then the production
//! `shaders/conv2d.wgsl` through the engine's backend): forward pass and weight gradient.
//!
//! Every rung shader declares the same `Params` and the same binding numbers: 1 x, 2 w,
//! 3 dy, 4 scratch (the column matrix, or the split-K partials), 5 y, 6 dw; each entry point
//! binds only those it uses.

use std::sync::Arc;

use distill_kernels::Conv2dShape;

use super::conv_cpu::{check_problems, conv_reference, time_problems};
use super::measure::{LadderRung, Pass, Rig, Step};
use super::reference::ConvProblem;
use crate::backend::gpu::standalone::Standalone;
use crate::backend::gpu::GpuBackend;
use crate::backend::Backend;
use crate::Result;
use web_time::Instant;

const DIRECT: (&str, &str) = (
    "conv2d_01_direct",
    include_str!("../../shaders/ladder/conv2d_01_direct.wgsl"),
);
const IM2COL: (&str, &str) = (
    "conv2d_02_im2col_gemm",
    include_str!("../../shaders/ladder/conv2d_02_im2col_gemm.wgsl"),
);
const SPLIT_K: (&str, &str) = (
    "conv2d_03_wgrad_split_k",
    include_str!("../../shaders/ladder/conv2d_03_wgrad_split_k.wgsl"),
);

/// Most image chunks of the split-K weight gradient.
const MAX_CHUNKS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Direct,
    Im2colGemm,
    /// Weight gradient only.
    SplitK,
}

/// A problem uploaded for the conv rungs.
struct Staged {
    s: Conv2dShape,
    x: wgpu::Buffer,
    w: wgpu::Buffer,
    dy: wgpu::Buffer,
    /// The column matrix of every image.
    col: wgpu::Buffer,
    /// The output: y (forward) or dw (weight gradient).
    out: wgpu::Buffer,
    partials: wgpu::Buffer,
    chunks: usize,
}

impl Staged {
    fn params(&self, chunks: usize) -> [u32; 16] {
        let s = &self.s;
        let k = s.in_channels * s.kernel_h * s.kernel_w;
        [
            s.batch,
            s.in_channels,
            s.in_h,
            s.in_w,
            s.out_channels,
            s.kernel_h,
            s.kernel_w,
            s.stride_h,
            s.stride_w,
            s.pad_h,
            s.pad_w,
            s.out_h(),
            s.out_w(),
            k,
            s.out_h() * s.out_w(),
            chunks,
        ]
        .map(|v| v as u32)
    }
}

/// 256-wide workgroups for `items` invocations, over x then y.
fn flat_groups(items: usize, max: u32) -> (u32, u32, u32) {
    let total = items.div_ceil(256).max(1);
    let x = total.min(max as usize);
    (x as u32, total.div_ceil(x) as u32, 1)
}

struct GpuConv {
    kind: Kind,
    pass: Pass,
    dev: Arc<Standalone>,
}

impl GpuConv {
    async fn stage(&self, p: &ConvProblem) -> Result<Staged> {
        let ConvProblem { shape: s, x, w, dy } = p;
        let k = s.in_channels * s.kernel_h * s.kernel_w;
        let pix = s.out_h() * s.out_w();
        let dev = &self.dev;
        let needs_col = self.kind != Kind::Direct;
        let chunks = if self.kind == Kind::SplitK {
            s.batch.min(MAX_CHUNKS)
        } else {
            1
        };
        let out_len = match self.pass {
            Pass::Forward => s.output_len(),
            Pass::WeightGrad => s.weight_len(),
        };
        Ok(Staged {
            s: *s,
            x: dev.upload(bytemuck::cast_slice(x)).await?,
            w: dev.upload(bytemuck::cast_slice(w)).await?,
            dy: dev.upload(bytemuck::cast_slice(dy)).await?,
            col: dev
                .zeroed(if needs_col { s.batch * k * pix * 4 } else { 4 } as u64)
                .await?,
            out: dev.zeroed((out_len * 4) as u64).await?,
            partials: dev.zeroed((chunks * s.weight_len() * 4) as u64).await?,
            chunks,
        })
    }

    /// Runs one entry point of a rung file.
    async fn pass_of(
        &self,
        file: (&str, &str),
        entry: &str,
        params: &[u32; 16],
        binds: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let name = format!("{}:{entry}", file.0);
        let pipe = self
            .dev
            .pipeline(&name, file.1, entry, wgpu::Features::empty())
            .await?;
        self.dev
            .dispatch(&pipe, bytemuck::cast_slice(params), binds, groups, 1)
            .await
    }

    /// One call of the rung: every pass it is made of.
    async fn call(&self, st: &Staged) -> Result<()> {
        let s = &st.s;
        let max = 65535;
        let k = s.in_channels * s.kernel_h * s.kernel_w;
        let pix = s.out_h() * s.out_w();
        let tiles = |rows: usize, cols: usize, z: usize| {
            (cols.div_ceil(64) as u32, rows.div_ceil(64) as u32, z as u32)
        };
        if self.kind == Kind::Direct {
            let prm = st.params(1);
            return match self.pass {
                Pass::Forward => {
                    self.pass_of(
                        DIRECT,
                        "forward",
                        &prm,
                        &[(1, &st.x), (2, &st.w), (5, &st.out)],
                        flat_groups(s.output_len(), max),
                    )
                    .await
                }
                Pass::WeightGrad => {
                    self.pass_of(
                        DIRECT,
                        "weight_grad",
                        &prm,
                        &[(1, &st.x), (3, &st.dy), (6, &st.out)],
                        flat_groups(s.weight_len(), max),
                    )
                    .await
                }
            };
        }
        let prm = st.params(st.chunks);
        let im2col_groups = flat_groups(s.batch * k * pix, max);
        self.pass_of(
            IM2COL,
            "im2col",
            &prm,
            &[(1, &st.x), (4, &st.col)],
            im2col_groups,
        )
        .await?;
        match (self.pass, self.kind) {
            (Pass::Forward, _) => {
                self.pass_of(
                    IM2COL,
                    "forward_gemm",
                    &prm,
                    &[(2, &st.w), (4, &st.col), (5, &st.out)],
                    tiles(s.out_channels, pix, s.batch),
                )
                .await
            }
            (Pass::WeightGrad, Kind::Im2colGemm) => {
                self.pass_of(
                    IM2COL,
                    "weight_grad_gemm",
                    &prm,
                    &[(3, &st.dy), (4, &st.col), (6, &st.out)],
                    tiles(s.out_channels, k, 1),
                )
                .await
            }
            (Pass::WeightGrad, _) => {
                self.pass_of(
                    IM2COL,
                    "weight_grad_gemm",
                    &prm,
                    &[(3, &st.dy), (4, &st.col), (6, &st.partials)],
                    tiles(s.out_channels, k, st.chunks),
                )
                .await?;
                self.pass_of(
                    SPLIT_K,
                    "reduce",
                    &prm,
                    &[(4, &st.partials), (6, &st.out)],
                    flat_groups(s.weight_len(), max),
                )
                .await
            }
        }
    }
}

impl LadderRung<ConvProblem> for GpuConv {
    fn name(&self) -> String {
        let file = match self.kind {
            Kind::Direct => DIRECT.0,
            Kind::Im2colGemm => IM2COL.0,
            Kind::SplitK => SPLIT_K.0,
        };
        match self.pass {
            Pass::Forward => file.to_string(),
            Pass::WeightGrad => format!("{file} (dW)"),
        }
    }
    fn pass(&self) -> Pass {
        self.pass
    }
    fn naive(&self) -> bool {
        self.kind == Kind::Direct
    }
    fn compute<'a>(&'a mut self, p: &'a ConvProblem) -> Step<'a, Vec<f32>> {
        Box::pin(async move {
            let st = self.stage(p).await?;
            self.call(&st).await?;
            let len = match self.pass {
                Pass::Forward => st.s.output_len(),
                Pass::WeightGrad => st.s.weight_len(),
            };
            let raw = self.dev.read(&st.out, (len * 4) as u64).await?;
            Ok(bytemuck::cast_slice(&raw).to_vec())
        })
    }
    fn time<'a>(&'a mut self, p: &'a ConvProblem, reps: usize) -> Step<'a, f64> {
        Box::pin(async move {
            let st = self.stage(p).await?;
            self.call(&st).await?; // compiles, and waits for the uploads below
            self.dev.finished().await?;
            let start = Instant::now();
            for _ in 0..reps {
                self.call(&st).await?;
            }
            self.dev.finished().await?;
            Ok(start.elapsed().as_secs_f64())
        })
    }
}

/// The production conv2d kernels through the engine's GPU backend.
struct GpuProduction {
    pass: Pass,
    backend: Arc<GpuBackend>,
}

impl GpuProduction {
    /// Uploads the operands, runs `reps` calls and returns the output and their seconds.
    async fn run(&self, p: &ConvProblem, reps: usize) -> Result<(Vec<f32>, f64)> {
        let ConvProblem { shape: s, x, w, dy } = p;
        let be = &self.backend;
        let (x, w, dy) = (be.upload_f32(x)?, be.upload_f32(w)?, be.upload_f32(dy)?);
        let out = be.zeros(match self.pass {
            Pass::Forward => s.output_len(),
            Pass::WeightGrad => s.weight_len(),
        })?;
        be.finished().await?;
        let start = Instant::now();
        for _ in 0..reps {
            match self.pass {
                Pass::Forward => be.conv2d_forward(s, &x, &w, None, &out)?,
                Pass::WeightGrad => be.conv2d_backward_weight(s, &x, &dy, &out)?,
            }
        }
        be.finished().await?;
        let secs = start.elapsed().as_secs_f64();
        Ok((be.read_f32(&out).await?, secs))
    }
}

impl LadderRung<ConvProblem> for GpuProduction {
    fn name(&self) -> String {
        match self.pass {
            Pass::Forward => "conv2d_production".into(),
            Pass::WeightGrad => "conv2d_production (dW)".into(),
        }
    }
    fn pass(&self) -> Pass {
        self.pass
    }
    fn compute<'a>(&'a mut self, p: &'a ConvProblem) -> Step<'a, Vec<f32>> {
        Box::pin(async move { Ok(self.run(p, 1).await?.0) })
    }
    fn time<'a>(&'a mut self, p: &'a ConvProblem, reps: usize) -> Step<'a, f64> {
        Box::pin(async move { Ok(self.run(p, reps).await?.1) })
    }
}

/// The ladder on `dev`, its production rungs on `engine` (a backend on the same adapter).
pub(crate) fn rig(dev: Arc<Standalone>, engine: Arc<GpuBackend>, quick: bool) -> Rig<ConvProblem> {
    let conv = |kind, pass| {
        Box::new(GpuConv {
            kind,
            pass,
            dev: dev.clone(),
        }) as Box<dyn LadderRung<ConvProblem>>
    };
    let production = |pass| {
        Box::new(GpuProduction {
            pass,
            backend: engine.clone(),
        }) as Box<dyn LadderRung<ConvProblem>>
    };
    let rungs = vec![
        conv(Kind::Direct, Pass::Forward),
        conv(Kind::Im2colGemm, Pass::Forward),
        production(Pass::Forward),
        conv(Kind::Direct, Pass::WeightGrad),
        conv(Kind::Im2colGemm, Pass::WeightGrad),
        conv(Kind::SplitK, Pass::WeightGrad),
        production(Pass::WeightGrad),
    ];
    // A software adapter emulates the GPU on the CPU: the student's layers at batch 32 only.
    let (time_shapes, budget) = if dev.is_software() {
        (time_problems(true), 10.0)
    } else {
        (time_problems(quick), 30.0)
    };
    Rig {
        device: format!("gpu:{} {}", dev.index(), dev.label()),
        rungs,
        check_shapes: check_problems(),
        time_shapes,
        call_budget_s: budget,
        reference: conv_reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ladder::conv_cpu::CHECK_SHAPES;

    /// The browser's shader check compiles the same rung files.
    #[test]
    fn the_shader_check_lists_every_rung() {
        use crate::backend::gpu::shader_check::LADDER_WGSL;
        for (name, source) in [DIRECT, IM2COL, SPLIT_K] {
            let listed = LADDER_WGSL.iter().find(|(n, _, _)| *n == name);
            let (_, text, needs) = listed.unwrap_or_else(|| panic!("{name} is not listed"));
            assert_eq!((*text, *needs), (source, wgpu::Features::empty()), "{name}");
        }
    }

    /// The timing path of every rung (the checks cover `compute`); no speed is asserted.
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
        let p = ConvProblem::new(CHECK_SHAPES[2], 9);
        for rung in s.rungs.iter_mut() {
            let secs = pollster::block_on(rung.time(&p, 3)).unwrap();
            assert!(secs.is_finite() && secs > 0.0, "{}", rung.name());
        }
    }
}
