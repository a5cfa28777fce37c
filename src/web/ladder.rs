//! The kernel-study ladder in a page: every rung checked against the f64 reference, then
//! timed, on the page's device ([`crate::ladder::run_async`]). On WebGPU the rung shaders
//! and the production kernels each get a fresh adapter of the same GPU (a browser's adapter
//! makes one device); a rung whose feature the adapter or the browser lacks (subgroups, f16)
//! is reported as unsupported, with the reason. On the CPU the CPU rungs run, each at the
//! SIMD level it is written for (those for x86 or ARM are named unsupported here).

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::device::Engine;
use super::js_error;
use crate::backend::gpu::{request_browser_adapter, TilePolicy};
use crate::ladder::{run_async, LadderGpu, LadderOp, LadderOptions, LadderReport, LadderTarget};

#[derive(Serialize)]
struct LadderJson<'a> {
    report: &'a LadderReport,
    markdown: String,
}

/// Runs the `op` ladder (`matmul` or `conv`) on the page's device. `quick`: fewer and smaller
/// timing shapes; `check_only`: time nothing. Each line of progress goes to `on_line` as it
/// happens. JSON: `{report, markdown}`.
#[wasm_bindgen]
pub async fn run_ladder(
    engine: &Engine,
    op: String,
    quick: bool,
    check_only: bool,
    on_line: js_sys::Function,
) -> Result<String, JsError> {
    let op = LadderOp::parse(&op).map_err(js_error)?;
    let gpu = match engine.power {
        None => None,
        Some(power) => {
            let mut fresh = Vec::new();
            for _ in 0..2 {
                let (adapter, _) = request_browser_adapter(power)
                    .await
                    .ok_or_else(|| JsError::new("the browser gave no further WebGPU adapter"))?;
                fresh.push(adapter);
            }
            let (engine_adapter, study) = (fresh.pop(), fresh.pop());
            Some(
                LadderGpu::open_async(
                    study.expect("two"),
                    engine_adapter.expect("two"),
                    0,
                    &TilePolicy::Defaults,
                )
                .await
                .map_err(js_error)?,
            )
        }
    };
    let opts = LadderOptions {
        op,
        target: if gpu.is_some() {
            LadderTarget::Gpu(Some(0))
        } else {
            LadderTarget::Cpu
        },
        quick,
        check_only,
        peak_gflops: None,
        tiles: TilePolicy::Defaults,
    };
    let mut log = |line: &str| {
        let _ = on_line.call1(&JsValue::NULL, &JsValue::from_str(line));
    };
    let report = run_async(&opts, gpu, &mut log).await.map_err(js_error)?;
    let json = LadderJson {
        markdown: report.to_markdown(),
        report: &report,
    };
    serde_json::to_string(&json).map_err(|e| JsError::new(&e.to_string()))
}
