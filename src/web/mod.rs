//! The browser's entry points (wasm32 only, through `wasm-bindgen`): the same engine, the
//! same WGSL through the browser's WebGPU, or the CPU kernels at the SIMD128 level. The page
//! in `web/` calls these; everything here is a thin wrapper over the library.
//!
//! - [`device`]: open WebGPU (or the CPU, saying why) and describe the adapter;
//! - [`data`]: the data set from the bytes the page fetched;
//! - [`train`]: train a model from labels or distil it from a teacher, with progress;
//!   its metrics and its checkpoint as the safetensors file the native build writes;
//! - [`shaders`]: every shipped WGSL module through the browser's compiler;
//! - [`bench`]: `distill bench`'s training rows on the page's device, as its JSON report;
//! - [`ladder`]: the kernel-study ladder, checked then timed on the page's device.

pub mod bench;
pub mod data;
pub mod device;
pub mod ladder;
pub mod shaders;
pub mod train;

use wasm_bindgen::JsError;

/// A library error as a JavaScript `Error` carrying its message.
pub(crate) fn js_error(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}
