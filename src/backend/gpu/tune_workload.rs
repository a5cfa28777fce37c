//! What the autotune times: the teacher and student presets' layers, through the backend's own kernels built
//! with the candidate tile, so the choice is made on the shapes training runs.
//!
//! - matmul: the teacher's and the student's first linear layer (6272→1000, 3136→500):
//!   forward (x·Wᵀ), input gradient (dy·W) and weight gradient (dyᵀ·x);
//! - conv: both models' convolutions (1→64, 64→128 at 28² and 14²; 1→32, 32→64): forward,
//!   input gradient (not for the first layer: images need none) and weight gradient.
//!
//! At full size that is the training batch of 128. A slow adapter (a software one such as
//! lavapipe, or a small integrated GPU) would spend minutes there, so [`workload_for`] first
//! times the default tile on the smallest [`Workload`] (batch 8, every width ÷ 8) and takes the
//! largest of [`LEVELS`] whose pass it predicts under [`PASS_MS`]; every candidate is then
//! timed on that one. A GPU reaches full size.
//!
//! A candidate is built (its pipelines compiled on one-element problems, untimed), then timed
//! as the best of up to three passes, each submitted and waited for. A candidate whose first
//! pass is already 1.5× the best so far stops there: it cannot win.

use std::sync::Arc;
use std::time::Instant;

use super::autotune::{Family, TileChoice, TileSource, Workload};
use super::context::Context;
use super::pool::Pool;
use super::tiles::{Tile, Tiles};
use super::GpuBackend;
use crate::backend::{Backend, Conv2dShape, GemmBias, GemmShape, Trans};
use crate::Result;

/// About how long one timed pass may take, in milliseconds.
const PASS_MS: f64 = 250.0;

/// The workloads, smallest first: widths grow to full size, then the batch to 128.
const LEVELS: [Workload; 8] = [
    Workload {
        batch: 8,
        width_divisor: 8,
    },
    Workload {
        batch: 8,
        width_divisor: 4,
    },
    Workload {
        batch: 8,
        width_divisor: 2,
    },
    Workload {
        batch: 8,
        width_divisor: 1,
    },
    Workload {
        batch: 16,
        width_divisor: 1,
    },
    Workload {
        batch: 32,
        width_divisor: 1,
    },
    Workload {
        batch: 64,
        width_divisor: 1,
    },
    Workload {
        batch: 128,
        width_divisor: 1,
    },
];

/// One-element problems: compiles every pipeline of the workload at no cost.
const PRIME: Workload = Workload {
    batch: 1,
    width_divisor: 1 << 20,
};

/// (in features, out features) of the layers timed for matmul.
const LINEAR: [(usize, usize); 2] = [(6272, 1000), (3136, 500)];

/// (in channels, out channels, side, the input gradient is needed) of the 3×3, padding-1
/// convolutions timed for conv. A one-channel input stays one channel at every divisor.
const CONV: [(usize, usize, usize, bool); 4] = [
    (1, 64, 28, false),
    (64, 128, 14, true),
    (1, 32, 28, false),
    (32, 64, 14, true),
];

fn div(width: usize, w: Workload) -> usize {
    (width / w.width_divisor).max(1)
}

fn conv_shape(w: Workload, cin: usize, cout: usize, side: usize) -> Conv2dShape {
    let side = if w.width_divisor > side { 1 } else { side };
    Conv2dShape::same_3x3(w.batch, div(cin, w), div(cout, w), side)
}

/// The GEMMs of one linear layer's training step: forward, input and weight gradients.
fn linear_gemms(w: Workload, inp: usize, out: usize) -> [GemmShape; 3] {
    let (b, inp, out) = (w.batch, div(inp, w), div(out, w));
    let g = |ta, tb, m, n, k| GemmShape { ta, tb, m, n, k };
    [
        g(Trans::N, Trans::T, b, out, inp),
        g(Trans::N, Trans::N, b, inp, out),
        g(Trans::T, Trans::N, out, inp, b),
    ]
}

/// Multiply-adds of `family`'s workload `w` (to predict how its time grows).
fn macs(family: Family, w: Workload) -> f64 {
    match family {
        Family::Matmul => LINEAR
            .iter()
            .flat_map(|&(i, o)| linear_gemms(w, i, o))
            .map(|s| (s.m * s.n * s.k) as f64)
            .sum(),
        Family::Conv => CONV
            .iter()
            .map(|&(cin, cout, side, dx)| {
                let s = conv_shape(w, cin, cout, side);
                let one = (s.batch * s.out_channels * s.in_channels * 9 * s.in_h * s.in_w) as f64;
                one * if dx { 3.0 } else { 2.0 }
            })
            .sum(),
    }
}

/// Records `family`'s workload `w` on `b` and waits for it.
fn record(b: &GpuBackend, family: Family, w: Workload) -> Result<()> {
    match family {
        Family::Matmul => {
            for (inp, out) in LINEAR {
                for sh in linear_gemms(w, inp, out) {
                    let a = b.zeros(sh.m * sh.k)?;
                    let bb = b.zeros(sh.k * sh.n)?;
                    let c = b.zeros(sh.m * sh.n)?;
                    b.gemm(sh, &a, &bb, &c, GemmBias::None, false, false)?;
                }
            }
        }
        Family::Conv => {
            for (cin, cout, side, dx) in CONV {
                let s = conv_shape(w, cin, cout, side);
                let x = b.zeros(s.input_len())?;
                let wt = b.zeros(s.weight_len())?;
                let y = b.zeros(s.output_len())?;
                b.conv2d_forward(&s, &x, &wt, None, &y)?;
                if dx {
                    b.conv2d_backward_input(&s, &wt, &y, &x)?;
                }
                b.conv2d_backward_weight(&s, &x, &y, &wt)?;
            }
        }
    }
    b.finish()
}

/// A backend with only `family`'s modules, built with `tile`, its pipelines compiled.
fn candidate(
    ctx: &Arc<Context>,
    pool: &Arc<Pool>,
    family: Family,
    tile: Tile,
) -> Result<Arc<GpuBackend>> {
    let choice = TileChoice {
        tiles: Tiles {
            matmul: tile,
            conv: tile,
        },
        source: TileSource::Fixed,
        timings: Vec::new(),
    };
    let b = GpuBackend::assemble(ctx.clone(), pool.clone(), choice, family.modules())?;
    record(&b, family, PRIME)?;
    Ok(b)
}

fn ms_of(b: &GpuBackend, family: Family, w: Workload) -> Result<f64> {
    let start = Instant::now();
    record(b, family, w)?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// The workload `family` is timed on: the largest of [`LEVELS`] that the default tile's time
/// on the smallest predicts under [`PASS_MS`].
pub(crate) fn workload_for(
    ctx: &Arc<Context>,
    pool: &Arc<Pool>,
    family: Family,
) -> Result<Workload> {
    let b = candidate(ctx, pool, family, Tile::DEFAULT)?;
    let ms = ms_of(&b, family, LEVELS[0])?;
    let per_mac = ms / macs(family, LEVELS[0]);
    Ok(LEVELS
        .into_iter()
        .take_while(|&w| per_mac * macs(family, w) <= PASS_MS)
        .last()
        .unwrap_or(LEVELS[0]))
}

/// Times `tile` for `family` on workload `w`: milliseconds per pass (the best of up to three),
/// stopping early past 1.5× `best_so_far`.
pub(crate) fn time(
    ctx: &Arc<Context>,
    pool: &Arc<Pool>,
    family: Family,
    tile: Tile,
    w: Workload,
    best_so_far: Option<f64>,
) -> Result<f64> {
    let b = candidate(ctx, pool, family, tile)?;
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        best = best.min(ms_of(&b, family, w)?);
        if best_so_far.is_some_and(|b| best > 1.5 * b) {
            break;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_grow_to_the_training_shapes() {
        for f in Family::ALL {
            let work: Vec<f64> = LEVELS.iter().map(|&w| macs(f, w)).collect();
            assert!(work.windows(2).all(|p| p[1] > p[0]), "{f:?}: {work:?}");
        }
        let full = LEVELS[LEVELS.len() - 1];
        assert_eq!((full.batch, full.width_divisor), (128, 1));
        // Teacher fc1 forward at batch 128 is 128 × 1000 × 6272 multiply-adds.
        assert_eq!(
            linear_gemms(full, 6272, 1000)[0],
            GemmShape {
                ta: Trans::N,
                tb: Trans::T,
                m: 128,
                n: 1000,
                k: 6272
            }
        );
        assert_eq!(conv_shape(PRIME, 64, 128, 14).input_len(), 1);
    }
}
