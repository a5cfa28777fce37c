//! distill: train a teacher network and distill it into a small, fast student, on
//! hand-written kernels (CPU: rayon + SIMD in `distill-kernels`; GPU: WGSL through wgpu).
//!
//! Data flows one way: [`data`] → batches → [`nn`] models built from [`ops`] → [`autograd`]
//! → [`backend`] kernels; [`train`] trains one model, [`pipeline`] runs teacher → baseline
//! student → KD student and reports. See ARCHITECTURE.md.

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod calendar;
pub mod checkpoint;
pub mod data;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod ladder;
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
pub use backend::Device;
pub use error::{Error, Result};
pub use tensor::{DType, Tensor};
