//! Training and inference throughput of the teacher and student presets on one device, through the
//! engine (models, autograd, optimiser), not single kernels.
//!
//! The rows (named as the PyTorch yardstick names its own, so they line up):
//! - `teacher train b128`, `student train b128`: a full step at batch 128 (software adapters: 2): forward,
//!   cross-entropy, backward, Adam step, zero_grad;
//! - `student kd b128`: the same with Hinton's KD loss (T = 4, α = 0.9) against teacher logits
//!   computed once beforehand (distill's offline KD);
//! - `teacher infer b256`, `student infer b256`: forward under `no_grad` at batch 256;
//! - `teacher latency b1`, `student latency b1`: one image in, its logits back on the host.
//!
//! Inputs are random and uploaded once (two batches, alternated), so the figures are the
//! engine's and not the data pipeline's. Each row goes through the bench's one timing loop;
//! the batches close by reading the last loss (or logits) back.

#[cfg(not(target_arch = "wasm32"))]
use std::cell::RefCell;

#[cfg(not(target_arch = "wasm32"))]
use super::report::{Row, Unit};
#[cfg(not(target_arch = "wasm32"))]
use super::timing::{time_on, Budget};
use crate::nn::{ArchSpec, Sequential};
use crate::optim::{OptimConfig, Optimizer};
use crate::rng::Rng;
use crate::{no_grad, ops, Device, Result, Tensor};

const CHANNELS: usize = 1;
const SIDE: usize = 28;
const CLASSES: usize = 10;
/// Batch sizes of the training and inference rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batches {
    pub train: usize,
    pub infer: usize,
}

impl Batches {
    /// The presets' usual batches (and the yardstick's): 128 to train, 256 to infer.
    pub const STANDARD: Batches = Batches {
        train: 128,
        infer: 256,
    };
    /// Software adapters: a few images, so a step takes seconds, not minutes.
    pub const SOFTWARE: Batches = Batches { train: 2, infer: 4 };
}
const KD_TEMPERATURE: f32 = 4.0;
const KD_ALPHA: f32 = 0.9;

/// What one training row measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Train(&'static str),
    /// The student distilled from the teacher's logits.
    Kd,
    Infer(&'static str),
    Latency(&'static str),
}

/// Every row, in order.
pub const STEPS: [Step; 7] = [
    Step::Train("teacher"),
    Step::Train("student"),
    Step::Kd,
    Step::Infer("teacher"),
    Step::Infer("student"),
    Step::Latency("teacher"),
    Step::Latency("student"),
];

impl Step {
    /// The row's name (at [`Batches::STANDARD`], the yardstick's names for the first five).
    pub fn name(self, b: Batches) -> String {
        match self {
            Step::Train(a) => format!("{a} train b{}", b.train),
            Step::Kd => format!("student kd b{}", b.train),
            Step::Infer(a) => format!("{a} infer b{}", b.infer),
            Step::Latency(a) => format!("{a} latency b1"),
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Step::Train(_) | Step::Kd => "train",
            Step::Infer(_) => "infer",
            Step::Latency(_) => "latency",
        }
    }

    pub fn shape(self) -> String {
        let input = format!("{CHANNELS}x{SIDE}x{SIDE}, {CLASSES} classes");
        match self {
            Step::Train(_) => format!("{input}, CE + Adam"),
            Step::Kd => format!("{input}, KD T{KD_TEMPERATURE} a{KD_ALPHA} + Adam"),
            Step::Infer(_) | Step::Latency(_) => input,
        }
    }

    pub fn batch(self, b: Batches) -> usize {
        match self {
            Step::Train(_) | Step::Kd => b.train,
            Step::Infer(_) => b.infer,
            Step::Latency(_) => 1,
        }
    }
}

/// Measures one row on `dev` (device `id`).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn measure(id: &str, dev: &Device, step: Step, b: Batches, budget: Budget) -> Row {
    let unit = if matches!(step, Step::Latency(_)) {
        Unit::Ms
    } else {
        Unit::ImagesPerSec
    };
    let mut row = Row::new(id, step.group(), &step.name(b), &step.shape(), unit);
    if dev.is_cpu() {
        row.threads = Some(rayon::current_num_threads());
    }
    match time_step(dev, step, step.batch(b), budget) {
        Ok((secs, calls, timing)) => {
            row.value = Some(match unit {
                Unit::Ms => secs * 1e3,
                _ => step.batch(b) as f64 / secs,
            });
            row.calls = Some(calls as u64);
            row.timing = timing;
        }
        Err(e) => {
            row.error = Some(e.to_string());
            if !dev.is_cpu() {
                row.timing = super::timing::Timing::WallReadback;
            }
        }
    }
    row
}

/// `n` random images and labels on `dev`.
fn batch(dev: &Device, rng: &mut Rng, n: usize) -> Result<(Tensor, Tensor)> {
    let x: Vec<f32> = (0..n * CHANNELS * SIDE * SIDE)
        .map(|_| rng.normal())
        .collect();
    let y: Vec<u32> = (0..n).map(|_| rng.below(CLASSES) as u32).collect();
    Ok((
        Tensor::from_f32(&x, &[n, CHANNELS, SIDE, SIDE], dev)?,
        Tensor::from_u32(&y, &[n], dev)?,
    ))
}

fn model(dev: &Device, arch: &str) -> Result<Sequential> {
    ArchSpec::preset(arch, CHANNELS, SIDE, SIDE, CLASSES)?.build(dev, 0)
}

/// Two batches of `step`'s size and, for KD, the teacher's logits of each.
fn inputs(
    dev: &Device,
    step: Step,
    batch_size: usize,
) -> Result<Vec<(Tensor, Tensor, Option<Tensor>)>> {
    let mut rng = Rng::new(1);
    let teacher = (step == Step::Kd)
        .then(|| model(dev, "teacher"))
        .transpose()?;
    (0..2)
        .map(|_| {
            let (x, y) = batch(dev, &mut rng, batch_size)?;
            let logits = match &teacher {
                Some(t) => Some(no_grad(|| t.forward(&x))?),
                None => None,
            };
            Ok((x, y, logits))
        })
        .collect()
}

/// One row's model, optimiser and inputs, ready to run its step again and again (the native
/// timing loop and the page's drive the same calls).
pub struct StepRig {
    step: Step,
    net: Sequential,
    opt: Optimizer,
    data: Vec<(Tensor, Tensor, Option<Tensor>)>,
    calls: usize,
}

impl StepRig {
    pub fn new(dev: &Device, step: Step, batch_size: usize) -> Result<StepRig> {
        let arch = match step {
            Step::Train(a) | Step::Infer(a) | Step::Latency(a) => a,
            Step::Kd => "student",
        };
        let net = model(dev, arch)?;
        let opt = Optimizer::new(OptimConfig::adam(1e-3, 0.0), net.parameters())?;
        let data = inputs(dev, step, batch_size)?;
        Ok(StepRig {
            step,
            net,
            opt,
            data,
            calls: 0,
        })
    }

    /// Records one step (the two batches alternate) and returns the tensor whose read-back
    /// closes it: the loss, or the logits. Latency rows read their logits back here.
    pub fn call(&mut self) -> Result<Tensor> {
        let (x, y, teacher) = &self.data[self.calls % 2];
        self.calls += 1;
        match self.step {
            Step::Train(_) | Step::Kd => {
                let logits = self.net.forward(x)?;
                let loss = match teacher {
                    Some(t) => ops::kd_loss(&logits, t, y, KD_TEMPERATURE, KD_ALPHA)?,
                    None => ops::cross_entropy(&logits, y)?,
                };
                loss.backward()?;
                self.opt.step()?;
                self.opt.zero_grad();
                Ok(loss)
            }
            Step::Infer(_) | Step::Latency(_) => no_grad(|| self.net.forward(x)),
        }
    }
}

/// Seconds per call, calls timed and the timing method of `step`.
#[cfg(not(target_arch = "wasm32"))]
fn time_step(
    dev: &Device,
    step: Step,
    batch_size: usize,
    budget: Budget,
) -> Result<(f64, usize, super::timing::Timing)> {
    let rig = RefCell::new(StepRig::new(dev, step, batch_size)?);
    let last: RefCell<Option<Tensor>> = RefCell::new(None);
    let mut run = || -> Result<()> {
        let out = rig.borrow_mut().call()?;
        if matches!(step, Step::Latency(_)) {
            out.to_vec()?;
        }
        *last.borrow_mut() = Some(out);
        Ok(())
    };
    let sync = || -> Result<()> {
        if let Some(t) = last.borrow().as_ref() {
            t.to_vec()?;
        }
        Ok(())
    };
    // Timestamps time kernels, not a step's host work: the step rows are wall time.
    let (t, timing) = time_on(dev.backend(), &mut run, &sync, budget, false)?;
    Ok((t.secs_per_call, t.calls, timing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_five_rows_carry_the_yardstick_names() {
        let names: Vec<String> = STEPS.iter().map(|s| s.name(Batches::STANDARD)).collect();
        assert_eq!(
            names[..5],
            [
                "teacher train b128",
                "student train b128",
                "student kd b128",
                "teacher infer b256",
                "student infer b256"
            ]
        );
    }
}
