//! distill: train a teacher network and distill it into a small, fast student, on
//! hand-written kernels (CPU: rayon + SIMD in `distill-kernels`; GPU: WGSL through wgpu).
//!
//! Data flows one way: [`data`] → batches → [`nn`] models built from [`ops`] → [`autograd`]
//! → [`backend`] kernels; [`distill`](mod@distill) drives it. See ARCHITECTURE.md.

pub mod backend;
pub mod checkpoint;
pub mod data;
pub mod distill;
pub mod error;
pub mod rng;

pub use backend::Device;
pub use error::{Error, Result};
