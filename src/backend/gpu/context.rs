//! Instance, adapters and device: enumeration, the adapter report of `distill devices`,
//! opening a device with the adapter's real limits, and error capture.
//!
//! wgpu reports validation errors, out-of-memory and device loss through callbacks (and by
//! default panics on them). [`ErrorSink`] collects them instead; every backend call first
//! takes what was collected and returns it as an [`Error`], so a failure surfaces at the next
//! call as a clear error rather than a panic.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::autotune::TilePolicy;
use super::table::OPTIONAL_FEATURES;
use crate::backend::DeviceKind;
use crate::{Error, Result};

/// Backends we drive: native compute APIs only (GL has no usable compute for this).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const BACKENDS: wgpu::Backends = wgpu::Backends::VULKAN
    .union(wgpu::Backends::METAL)
    .union(wgpu::Backends::DX12);
/// In a browser: its WebGPU (the same WGSL, compiled by the browser).
#[cfg(target_arch = "wasm32")]
pub(crate) const BACKENDS: wgpu::Backends = wgpu::Backends::BROWSER_WEBGPU;

/// Kernel timing (profiler.rs) writes timestamps at the start and end of compute passes,
/// which needs TIMESTAMP_QUERY only.
pub(crate) const PROFILING_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY;

/// The optional features a device is opened with: those the adapter offers among the ones we
/// use, profiling and whatever a kernel of the table needs ([`OPTIONAL_FEATURES`], none yet).
/// Nothing is required: the kernels run on every adapter with the base WebGPU features; a
/// kernel that uses an optional feature declares it in the table and has a fallback.
/// The adapter report lists what the adapter offers either way.
pub(crate) fn requested_features(adapter: &wgpu::Adapter) -> wgpu::Features {
    adapter.features() & (PROFILING_FEATURES | OPTIONAL_FEATURES)
}

/// One adapter as `distill devices` lists it: identity, limits and the optional features it
/// offers (whether or not a kernel uses them yet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdapterReport {
    /// Position in the list; `gpu:N` opens this one.
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_size_x: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    /// The GEMM tile shapes of matmul and conv2d: the autotuned choice cached for this
    /// adapter and driver, or what happens on first use (autotune.rs).
    pub tiles: String,
}

impl AdapterReport {
    /// What `adapter` is, and what `policy` would give it as GEMM tiles.
    pub(crate) fn new(index: usize, adapter: &wgpu::Adapter, policy: &TilePolicy) -> Self {
        let info = adapter.get_info();
        let l = adapter.limits();
        let f = adapter.features();
        AdapterReport {
            index,
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: type_name(info.device_type).to_string(),
            driver: info.driver,
            driver_info: info.driver_info,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroup_size_x: l.max_compute_workgroup_size_x,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroup: f.contains(wgpu::Features::SUBGROUP),
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            tiles: describe_tiles(adapter, policy),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn describe_tiles(adapter: &wgpu::Adapter, policy: &TilePolicy) -> String {
    super::autotune::describe(adapter, policy)
}

/// A page has no cache directory and cannot block to time candidates: the default tiles.
#[cfg(target_arch = "wasm32")]
fn describe_tiles(_: &wgpu::Adapter, _: &TilePolicy) -> String {
    "the defaults (no autotune in a browser)".into()
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

impl fmt::Display for AdapterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes = |b: bool| if b { "yes" } else { "no" };
        writeln!(
            f,
            "gpu:{}  {} ({}, {})",
            self.index, self.name, self.backend, self.device_type
        )?;
        let driver = match (self.driver.is_empty(), self.driver_info.is_empty()) {
            (true, true) => "unknown".to_string(),
            (false, true) => self.driver.clone(),
            (true, false) => self.driver_info.clone(),
            (false, false) => format!("{} ({})", self.driver, self.driver_info),
        };
        writeln!(f, "    driver: {driver}")?;
        writeln!(
            f,
            "    max storage binding {}, max buffer {}",
            mib(self.max_storage_buffer_binding_size),
            mib(self.max_buffer_size)
        )?;
        writeln!(
            f,
            "    workgroup: size x ≤ {}, ≤ {} invocations, {} KiB shared",
            self.max_compute_workgroup_size_x,
            self.max_compute_invocations_per_workgroup,
            self.max_compute_workgroup_storage_size / 1024
        )?;
        writeln!(
            f,
            "    shader-f16: {}, subgroups: {}, timestamp queries: {}",
            yes(self.shader_f16),
            yes(self.subgroup),
            yes(self.timestamp_query)
        )?;
        write!(f, "    GEMM tiles: {}", self.tiles)
    }
}

/// The device type as `distill devices` words it.
pub(crate) fn type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete GPU",
        wgpu::DeviceType::IntegratedGpu => "integrated GPU",
        wgpu::DeviceType::VirtualGpu => "virtual GPU",
        wgpu::DeviceType::Cpu => "software",
        wgpu::DeviceType::Other => "other",
    }
}

pub(crate) fn kind_of(t: wgpu::DeviceType) -> DeviceKind {
    match t {
        wgpu::DeviceType::DiscreteGpu => DeviceKind::DiscreteGpu,
        wgpu::DeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
        wgpu::DeviceType::Cpu => DeviceKind::SoftwareGpu,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => DeviceKind::OtherGpu,
    }
}

/// Preference of `open_best`: lower is better.
#[cfg(not(target_arch = "wasm32"))]
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
        wgpu::DeviceType::Cpu => 3,
    }
}

pub(crate) fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = BACKENDS;
    wgpu::Instance::new(desc)
}

/// Every adapter, in a stable order (the order of `distill devices`).
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn adapters() -> Vec<wgpu::Adapter> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(BACKENDS))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn reports(policy: &TilePolicy) -> Vec<AdapterReport> {
    adapters()
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterReport::new(i, a, policy))
        .collect()
}

/// The best adapter: discrete, then integrated, then other, then software (unless
/// `software` is false); first on ties. `None` if there is none of those.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn best_adapter(software: bool) -> Option<wgpu::Adapter> {
    let list = adapters();
    let best = list
        .iter()
        .enumerate()
        .filter(|(_, a)| software || a.get_info().device_type != wgpu::DeviceType::Cpu)
        .min_by_key(|(i, a)| (rank(a.get_info().device_type), *i))
        .map(|(i, _)| i)?;
    list.into_iter().nth(best)
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn adapter_at(index: usize) -> Result<wgpu::Adapter> {
    let list = adapters();
    let n = list.len();
    list.into_iter().nth(index).ok_or_else(|| {
        if n == 0 {
            no_adapter_error()
        } else {
            Error::Device(format!(
                "no GPU adapter gpu:{index}: there {} {n} (gpu:0..gpu:{}); see `distill devices`",
                if n == 1 { "is" } else { "are" },
                n - 1
            ))
        }
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn no_adapter_error() -> Error {
    Error::Device(
        "no GPU adapter found (Vulkan, Metal or DX12). On Linux without a GPU, install a \
         software Vulkan driver (Debian/Ubuntu: apt-get install mesa-vulkan-drivers libvulkan1) \
         or run on the CPU backend (device `cpu`)"
            .into(),
    )
}

/// Errors reported asynchronously by wgpu, kept until the next backend call returns them.
#[derive(Clone, Default)]
pub(crate) struct ErrorSink {
    inner: Arc<Mutex<Vec<Error>>>,
}

impl ErrorSink {
    pub fn push(&self, e: Error) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }
    /// The first recorded error, if any (the rest are usually consequences of it).
    pub fn take(&self) -> Option<Error> {
        let mut v = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if v.is_empty() {
            None
        } else {
            let first = v.remove(0);
            v.clear();
            Some(first)
        }
    }
}

/// An open device and what we know about it.
pub(crate) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub errors: ErrorSink,
    /// `name (Backend)`, used in every error message.
    pub label: String,
}

impl Context {
    /// Opens `adapter` with the optional features we use and `extra` features too, where the
    /// adapter has them (the ladder's subgroup and f16 rungs).
    pub async fn open_async(adapter: &wgpu::Adapter, extra: wgpu::Features) -> Result<Context> {
        let info = adapter.get_info();
        // A browser may hide the adapter's name.
        let name = if info.name.is_empty() {
            "GPU adapter"
        } else {
            &info.name
        };
        let label = format!("{name} ({:?})", info.backend);
        // The adapter's real limits: wgpu's defaults cap storage bindings at 128 MiB.
        let limits = adapter.limits();
        let features = requested_features(adapter) | (adapter.features() & extra);
        let desc = wgpu::DeviceDescriptor {
            label: Some("distill"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) = adapter
            .request_device(&desc)
            .await
            .map_err(|e| Error::Device(format!("could not open {label}: {e}")))?;
        let errors = ErrorSink::default();
        {
            let sink = errors.clone();
            let label = label.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                sink.push(convert(&label, e));
            }));
        }
        {
            let sink = errors.clone();
            let label = label.clone();
            device.set_device_lost_callback(move |reason, msg| {
                if reason != wgpu::DeviceLostReason::Destroyed {
                    sink.push(Error::Device(format!(
                        "{label}: device lost ({reason:?}): {msg}"
                    )));
                }
            });
        }
        Ok(Context {
            device,
            queue,
            info,
            limits,
            features,
            errors,
            label,
        })
    }

    pub fn check(&self) -> Result<()> {
        match self.errors.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Runs `f` (which creates something on `device`) and returns what wgpu said of it under
/// `filter`. Natively the error scope is waited for here. A browser resolves a scope only
/// after the page yields, so there no scope is pushed: the error reaches the device's
/// uncaptured-error handler ([`ErrorSink`]) and comes back from the next backend call.
pub(crate) fn scoped<T>(
    device: &wgpu::Device,
    filter: wgpu::ErrorFilter,
    f: impl FnOnce() -> T,
) -> (T, Option<wgpu::Error>) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let scope = device.push_error_scope(filter);
        let out = f();
        (out, pollster::block_on(scope.pop()))
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (device, filter);
        (f(), None)
    }
}

/// Optional device features in the words WebGPU uses for them (`subgroups, shader-f16`).
pub(crate) fn feature_words(features: wgpu::Features) -> String {
    let named = [
        (wgpu::Features::SUBGROUP, "subgroups"),
        (wgpu::Features::SHADER_F16, "shader-f16"),
        (wgpu::Features::SHADER_F64, "shader-f64"),
        (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
    ];
    let mut words: Vec<String> = named
        .iter()
        .filter(|(f, _)| features.contains(*f))
        .map(|(_, w)| w.to_string())
        .collect();
    let rest = named.iter().fold(features, |left, (f, _)| left - *f);
    if !rest.is_empty() {
        words.push(format!("{rest:?}"));
    }
    words.join(", ")
}

/// A wgpu error as ours, naming the device.
pub(crate) fn convert(label: &str, e: wgpu::Error) -> Error {
    match e {
        wgpu::Error::OutOfMemory { .. } => Error::OutOfMemory {
            device: label.to_string(),
            detail: "the device ran out of memory".into(),
        },
        wgpu::Error::Validation { description, .. } => {
            Error::Device(format!("{label}: validation error: {description}"))
        }
        wgpu::Error::Internal { description, .. } => {
            Error::Device(format!("{label}: internal error: {description}"))
        }
    }
}
