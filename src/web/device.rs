//! Opening a device in a page: the browser's WebGPU adapter, or the CPU backend when the
//! browser has no WebGPU, gives no adapter, or only a software one (which runs these kernels
//! slower than the CPU path does), always with the reason in words.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::js_error;
use crate::backend::gpu::{
    request_browser_adapter, AdapterReport, GpuBackend, Tile, TilePolicy, Tiles,
};
use crate::Device;

/// An open device and what the page shows of it.
#[wasm_bindgen]
pub struct Engine {
    pub(crate) device: AssertUnwindSafe<Device>,
    /// The power preference a WebGPU device was asked for with (a browser's adapter makes
    /// one device, so the shader check asks for a fresh one); `None` on the CPU.
    pub(crate) power: Option<wgpu::PowerPreference>,
    info: String,
}

#[derive(Serialize)]
struct EngineInfo<'a> {
    /// `webgpu` or `cpu`.
    backend: &'a str,
    /// The engine's name for the device.
    name: String,
    /// Why this device: what was asked for and what the browser offered.
    why: String,
    /// What the browser reveals of the adapter (`null` on the CPU).
    adapter: Option<AdapterJson>,
    /// The CPU kernels' SIMD level.
    cpu_simd: &'static str,
    /// The GEMM tiles the WebGPU kernels were built with (`null` on the CPU).
    tiles: Option<String>,
}

#[derive(Serialize)]
struct AdapterJson {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    driver_info: String,
    max_storage_buffer_binding_size: u64,
    max_buffer_size: u64,
    max_compute_workgroup_storage_size: u32,
    max_compute_invocations_per_workgroup: u32,
    shader_f16: bool,
    subgroup: bool,
    timestamp_query: bool,
}

impl From<&AdapterReport> for AdapterJson {
    fn from(a: &AdapterReport) -> Self {
        AdapterJson {
            name: a.name.clone(),
            backend: a.backend.clone(),
            device_type: a.device_type.clone(),
            driver: a.driver.clone(),
            driver_info: a.driver_info.clone(),
            max_storage_buffer_binding_size: a.max_storage_buffer_binding_size,
            max_buffer_size: a.max_buffer_size,
            max_compute_workgroup_storage_size: a.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: a.max_compute_invocations_per_workgroup,
            shader_f16: a.shader_f16,
            subgroup: a.subgroup,
            timestamp_query: a.timestamp_query,
        }
    }
}

#[wasm_bindgen]
impl Engine {
    /// The device as JSON: backend, name, why, adapter, CPU SIMD level.
    pub fn info(&self) -> String {
        self.info.clone()
    }
    /// `webgpu` or `cpu`.
    pub fn backend(&self) -> String {
        if self.power.is_some() {
            "webgpu"
        } else {
            "cpu"
        }
        .into()
    }
}

/// Opens a device. `choice`: `webgpu` (fail if there is none), `cpu`, or `auto` (a hardware
/// WebGPU adapter, else the CPU). `power`: `high-performance`, `low-power` or `default`.
/// `tiles`: the GEMM tile per invocation of matmul and conv (`4x4`, `2x2`, …; see
/// `backend/gpu/tiles.rs`), or empty for the default.
#[wasm_bindgen]
pub async fn open_engine(choice: String, power: String, tiles: String) -> Result<Engine, JsError> {
    let policy = tile_policy(&tiles)?;
    let power = match power.as_str() {
        "high-performance" => wgpu::PowerPreference::HighPerformance,
        "low-power" => wgpu::PowerPreference::LowPower,
        "default" | "" => wgpu::PowerPreference::None,
        other => {
            return Err(JsError::new(&format!(
            "unknown power preference '{other}': expected high-performance, low-power or default"
        )))
        }
    };
    let no_webgpu = "this browser offers no WebGPU adapter (navigator.gpu is missing, or \
                     requestAdapter() gave none)";
    match choice.as_str() {
        "cpu" => Ok(cpu_engine("the CPU was asked for".into())),
        "webgpu" => match request_browser_adapter(power).await {
            Some((adapter, report)) => {
                gpu_engine(
                    adapter,
                    report,
                    power,
                    &policy,
                    "WebGPU was asked for".into(),
                )
                .await
            }
            None => Err(JsError::new(no_webgpu)),
        },
        "auto" => match request_browser_adapter(power).await {
            None => Ok(cpu_engine(format!("{no_webgpu}; using the CPU"))),
            Some((_, report)) if report.device_type == "software" => Ok(cpu_engine(format!(
                "the WebGPU adapter ({}) is a software one, slower than the CPU path; using \
                 the CPU",
                report.name
            ))),
            Some((adapter, report)) => {
                let why = "a hardware WebGPU adapter".into();
                gpu_engine(adapter, report, power, &policy, why).await
            }
        },
        other => Err(JsError::new(&format!(
            "unknown device '{other}': expected auto, webgpu or cpu"
        ))),
    }
}

/// `4x4` (TM×TN outputs per invocation through workgroup memory) or `registers` for both
/// kernels, as a fixed policy; empty: chosen by the kind of adapter
/// ([`TileChoice::by_adapter_kind`](crate::backend::gpu::TileChoice::by_adapter_kind));
/// `default`: the default tile.
fn tile_policy(text: &str) -> Result<TilePolicy, JsError> {
    let text = text.trim();
    match text {
        "" => return Ok(TilePolicy::Autotune),
        "default" => return Ok(TilePolicy::Defaults),
        _ => {}
    }
    let tile = Tile::CANDIDATES
        .into_iter()
        .find(|t| t.name() == text)
        .ok_or_else(|| {
            let names: Vec<String> = Tile::CANDIDATES.iter().map(|t| t.name()).collect();
            JsError::new(&format!(
                "unknown tile '{text}': expected one of {}, or default",
                names.join(", ")
            ))
        })?;
    Ok(TilePolicy::Fixed(Tiles {
        matmul: tile,
        conv: tile,
    }))
}

async fn gpu_engine(
    adapter: wgpu::Adapter,
    report: AdapterReport,
    power: wgpu::PowerPreference,
    policy: &TilePolicy,
    why: String,
) -> Result<Engine, JsError> {
    let backend: Arc<GpuBackend> = GpuBackend::open_async(adapter, policy)
        .await
        .map_err(js_error)?;
    let device = backend.device();
    let info = EngineInfo {
        backend: "webgpu",
        name: device.name(),
        why,
        adapter: Some(AdapterJson::from(&report)),
        cpu_simd: distill_kernels::simd::level().name(),
        tiles: Some(backend.tiles().tiles.to_string()),
    };
    Ok(Engine {
        device: AssertUnwindSafe(device),
        power: Some(power),
        info: serde_json::to_string(&info).unwrap_or_default(),
    })
}

fn cpu_engine(why: String) -> Engine {
    let device = Device::cpu();
    let info = EngineInfo {
        backend: "cpu",
        name: device.name(),
        why,
        adapter: None,
        cpu_simd: distill_kernels::simd::level().name(),
        tiles: None,
    };
    Engine {
        device: AssertUnwindSafe(device),
        power: None,
        info: serde_json::to_string(&info).unwrap_or_default(),
    }
}
