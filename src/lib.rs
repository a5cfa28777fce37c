//! distill: train a teacher network and distill it into a small, fast student, on
//! hand-written kernels (CPU: rayon + SIMD in `distill-kernels`; GPU: WGSL through wgpu).
//!
//! Data flows one way: [`data`] → batches → [`nn`] models built from [`ops`] → [`autograd`]
//! → [`backend`] kernels; [`train`] trains one model, [`pipeline`] runs teacher → baseline
//! student → KD student and reports. See ARCHITECTURE.md.
//!
//! One training step of the student preset on a batch, on the CPU backend
//! (`Device::from_spec("gpu")` runs the same code through the WGSL kernels):
//!
//! ```
//! use distill::nn::ArchSpec;
//! use distill::optim::{OptimConfig, Optimizer};
//! use distill::{ops, Device, Tensor};
//!
//! # fn main() -> distill::Result<()> {
//! let device = Device::cpu();
//! let student = ArchSpec::preset("student", 1, 28, 28, 10)?.build(&device, 0)?;
//! let mut adam = Optimizer::new(OptimConfig::adam(1e-3, 0.0), student.parameters())?;
//!
//! let images = Tensor::from_f32(&vec![0.5; 4 * 28 * 28], &[4, 1, 28, 28], &device)?;
//! let labels = Tensor::from_u32(&[0, 3, 7, 9], &[4], &device)?;
//! let loss = ops::cross_entropy(&student.forward(&images)?, &labels)?;
//! loss.backward()?;
//! adam.step()?;
//! assert!(loss.item()? > 0.0);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/distill_a_student.rs` trains a teacher and distils a student from code;
//! [`train::train`] is the loop, [`train::TrainJob`] its settings.
//! `examples/distill_from_pytorch.rs` distils from a teacher saved by PyTorch
//! ([`pipeline::train_model`]); `examples/run_the_bench.rs` measures the machine
//! ([`bench::run`]).

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod calendar;
pub mod checkpoint;
pub mod data;
pub mod epoch;
pub mod error;
pub mod fs;
pub mod ladder;
pub mod measure;
pub mod model_file;
pub mod nn;
pub mod ops;
pub mod optim;
#[cfg(not(target_arch = "wasm32"))]
pub mod pipeline;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
pub mod rng;
pub mod runtime;
pub mod tensor;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use autograd::no_grad;
pub use backend::gpu::{Tile, TilePolicy, Tiles};
#[cfg(not(target_arch = "wasm32"))]
pub use backend::inventory::{check_simd_request, devices, CpuReport, Inventory};
pub use backend::{Device, DeviceOptions, DeviceSpec};
pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
