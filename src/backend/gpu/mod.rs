//! The GPU backend (wgpu + WGSL). PLACEHOLDER until the GPU backend lands: every entry point
//! reports that no GPU backend is available.

use super::Device;
use crate::{Error, Result};

/// A device buffer on the GPU.
pub struct GpuStorage {
    len: usize,
}

impl GpuStorage {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Opens the best adapter: discrete, then integrated, then software (lavapipe).
pub fn open_best() -> Result<Device> {
    Err(Error::Device("the GPU backend is not built yet".into()))
}

/// Opens the adapter at `index` in the order `distill devices` lists them.
pub fn open_index(index: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "no GPU adapter {index}: the GPU backend is not built yet"
    )))
}
