//! The page's shader check: every shipped WGSL module through the browser's own compiler
//! ([`crate::backend::gpu::shader_check`]).

use wasm_bindgen::prelude::*;

use super::device::Engine;
use super::js_error;
use crate::backend::gpu::request_browser_adapter;
use crate::backend::gpu::shader_check::check_shaders;

/// Compiles every module on the engine's adapter; JSON: `[{module, status, detail?}]`.
#[wasm_bindgen]
pub async fn check_all_shaders(engine: &Engine) -> Result<String, JsError> {
    let power = engine
        .power
        .ok_or_else(|| JsError::new("the shader check needs a WebGPU device, not the CPU"))?;
    let (adapter, _) = request_browser_adapter(power)
        .await
        .ok_or_else(|| JsError::new("the browser gave no second WebGPU adapter"))?;
    let checks = check_shaders(&adapter).await.map_err(js_error)?;
    Ok(serde_json::to_string(&checks).unwrap_or_default())
}
