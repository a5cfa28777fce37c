//! The GPU backend: wgpu (Vulkan, Metal, DX12) + the WGSL kernels in `shaders/`.
//!
//! - `context`: adapters, device, limits, the optional features requested, error capture;
//! - `table`: the WGSL modules and the kernel table (entry points, bindings, features);
//! - `params`: one Rust struct per WGSL `struct Params`, checked against the shaders;
//! - `pool`: storage buffers recycled by size class (a steady-state step allocates nothing);
//! - `exec`: cached pipelines and bind groups, the parameter arena, the pending command
//!   encoder, submission and read-back;
//! - `profiler`: per-kernel GPU time from timestamp queries;
//! - `launch`: operand checks, allocation and dispatch shared by all kernels;
//! - `families`: launchers shared by the kernels of one module (softmax family, conv, …);
//! - `kernels`: the [`Backend`](super::Backend) implementation, one method per kernel;
//! - `bench_kernels`: the peak kernels of `distill bench` (crate-internal, not in the trait);
//! - [`tiles`], [`autotune`], `tune_workload`: the GEMM tile shape of matmul and conv2d,
//!   chosen per adapter by timing the candidates once and cached on disk.
//!
//! Ops record dispatches into one pending encoder; [`Backend::flush`](super::Backend::flush)
//! submits it and `download_*` submits and waits. Errors wgpu reports asynchronously
//! (validation, out of memory, device lost) come back from the next backend call.

pub mod autotune;
#[cfg(not(target_arch = "wasm32"))]
mod bench_kernels;
pub(crate) mod context;
mod exec;
mod families;
mod kernels;
mod launch;
mod params;
mod pool;
mod profiler;
mod readback;
pub mod shader_check;
pub(crate) mod standalone;
mod table;
pub mod tiles;
#[cfg(not(target_arch = "wasm32"))]
mod tune_workload;

#[cfg(not(target_arch = "wasm32"))]
use std::collections::HashMap;
use std::sync::Arc;

pub use autotune::{TileChoice, TilePolicy, TileSource};
pub use context::AdapterReport;
pub use pool::PoolStats;
pub use tiles::{Tile, Tiles};

use super::{Device, DeviceKind};
use crate::Result;
#[cfg(not(target_arch = "wasm32"))]
use autotune::{AdapterKey, Family};
use context::Context;
use exec::Exec;
use pool::{Pool, PooledBuffer};
use table::Module;

/// A device buffer on the GPU (`len` 32-bit words), returned to its pool on drop.
pub struct GpuStorage {
    buf: Option<PooledBuffer>,
    len: usize,
    pool: Arc<Pool>,
}

impl GpuStorage {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn pooled(&self) -> &PooledBuffer {
        self.buf
            .as_ref()
            .expect("a GpuStorage owns its buffer until dropped")
    }
}

impl Drop for GpuStorage {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.release(b);
        }
    }
}

/// The wgpu backend of one device. Open it with [`open_best`] / [`open_index`] (as a
/// [`Device`]) or [`GpuBackend::open_best`] (keeping access to pool stats and profiling).
pub struct GpuBackend {
    exec: Exec,
    kind: DeviceKind,
    /// Small buffers bound where a kernel's binding is unused (one per binding slot, so a
    /// read-only and a writable use never alias).
    dummies: Vec<PooledBuffer>,
    /// The GEMM tile shapes the device was built with and where they came from.
    tiles: TileChoice,
}

impl GpuBackend {
    /// [`GpuBackend::open_async`] waited for on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    fn open(adapter: wgpu::Adapter, policy: &TilePolicy) -> Result<Arc<GpuBackend>> {
        pollster::block_on(GpuBackend::open_async(adapter, policy))
    }

    /// Opens `adapter` with its tile shapes chosen by `policy` (autotune.rs). The one way a
    /// device opens, natively and in a browser.
    pub async fn open_async(
        adapter: wgpu::Adapter,
        policy: &TilePolicy,
    ) -> Result<Arc<GpuBackend>> {
        let ctx = Arc::new(Context::open_async(&adapter, wgpu::Features::empty()).await?);
        let pool = Arc::new(Pool::new(
            ctx.device.clone(),
            ctx.label.clone(),
            &ctx.limits,
        ));
        let choice = Self::tiles_for(&ctx, &pool, policy)?;
        let backend = GpuBackend::assemble(ctx, pool, choice, &Module::ALL)?;
        backend.exec.check_compiled().await?;
        Ok(backend)
    }

    fn tiles_for(ctx: &Arc<Context>, pool: &Arc<Pool>, policy: &TilePolicy) -> Result<TileChoice> {
        match policy {
            TilePolicy::Defaults => Ok(TileChoice::defaults()),
            TilePolicy::Fixed(tiles) => {
                for t in [tiles.matmul, tiles.conv] {
                    if !t.fits(&ctx.limits) {
                        return Err(crate::Error::Device(format!(
                            "{}: the tile {t} needs {} bytes of workgroup memory; the device \
                             has {}",
                            ctx.label,
                            t.workgroup_bytes(),
                            ctx.limits.max_compute_workgroup_storage_size
                        )));
                    }
                }
                Ok(TileChoice {
                    tiles: *tiles,
                    source: TileSource::Fixed,
                    timings: Vec::new(),
                })
            }
            #[cfg(not(target_arch = "wasm32"))]
            TilePolicy::Autotune => Self::autotuned(ctx, pool, autotune::cache_dir()),
            #[cfg(not(target_arch = "wasm32"))]
            TilePolicy::AutotuneIn(dir) => Self::autotuned(ctx, pool, Some(dir.clone())),
            // A page can neither keep a cache file nor block to time candidates.
            #[cfg(target_arch = "wasm32")]
            TilePolicy::Autotune | TilePolicy::AutotuneIn(_) => {
                let _ = pool;
                Ok(TileChoice::by_adapter_kind(ctx.info.device_type))
            }
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn autotuned(
        ctx: &Arc<Context>,
        pool: &Arc<Pool>,
        dir: Option<std::path::PathBuf>,
    ) -> Result<TileChoice> {
        let candidates = Tile::candidates_for(&ctx.limits);
        // Per family: the workload it is timed on (calibrated once) and the best time so far.
        let mut workload = HashMap::new();
        let mut best: HashMap<Family, f64> = HashMap::new();
        let mut time = |family: Family, tile: Tile| {
            let w = match workload.get(&family) {
                Some(&w) => w,
                None => {
                    let w = tune_workload::workload_for(ctx, pool, family)?;
                    workload.insert(family, w);
                    w
                }
            };
            let so_far = best.get(&family).copied();
            let ms = tune_workload::time(ctx, pool, family, tile, w, so_far)?;
            let b = best.entry(family).or_insert(ms);
            *b = b.min(ms);
            Ok((ms, w))
        };
        Ok(autotune::choose(
            &AdapterKey::of(&ctx.info),
            dir.as_deref(),
            &candidates,
            &mut time,
        ))
    }

    /// A backend on an open device, with `modules` built for `choice`'s tiles.
    fn assemble(
        ctx: Arc<Context>,
        pool: Arc<Pool>,
        choice: TileChoice,
        modules: &[Module],
    ) -> Result<Arc<GpuBackend>> {
        let kind = context::kind_of(ctx.info.device_type);
        let mut dummies = Vec::new();
        for _ in 0..8 {
            dummies.push(pool.acquire(256)?);
        }
        let exec = Exec::new(ctx, pool, choice.tiles, modules)?;
        Ok(Arc::new(GpuBackend {
            exec,
            kind,
            dummies,
            tiles: choice,
        }))
    }

    /// The GEMM tile shapes this device runs and where they came from (`distill devices`).
    pub fn tiles(&self) -> &TileChoice {
        &self.tiles
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The best adapter (discrete, integrated, other, software) as a concrete backend, its
    /// tiles autotuned.
    pub fn open_best() -> Result<Arc<GpuBackend>> {
        GpuBackend::open_best_with(&TilePolicy::default())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// [`GpuBackend::open_best`] with the tile shapes chosen by `policy`.
    pub fn open_best_with(policy: &TilePolicy) -> Result<Arc<GpuBackend>> {
        match context::best_adapter(true) {
            Some(a) => GpuBackend::open(a, policy),
            None => Err(context::no_adapter_error()),
        }
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The best hardware adapter (discrete, integrated, other; never a software one such as
    /// lavapipe), its tiles chosen by `policy`, or `None` when there is none.
    pub fn open_best_hardware(policy: &TilePolicy) -> Result<Option<Arc<GpuBackend>>> {
        context::best_adapter(false)
            .map(|a| GpuBackend::open(a, policy))
            .transpose()
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// The adapter at `index` of [`list_adapters`] as a concrete backend, its tiles
    /// autotuned.
    pub fn open_index(index: usize) -> Result<Arc<GpuBackend>> {
        GpuBackend::open_index_with(index, &TilePolicy::default())
    }

    #[cfg(not(target_arch = "wasm32"))]
    /// [`GpuBackend::open_index`] with the tile shapes chosen by `policy`.
    pub fn open_index_with(index: usize, policy: &TilePolicy) -> Result<Arc<GpuBackend>> {
        GpuBackend::open(context::adapter_at(index)?, policy)
    }

    /// Wraps this backend as an engine [`Device`].
    pub fn device(self: &Arc<Self>) -> Device {
        Device(self.clone())
    }

    /// Buffer-pool counters (fresh allocations stay flat in a steady-state loop).
    pub fn pool_stats(&self) -> PoolStats {
        self.exec.pool.stats()
    }

    /// Pipelines built and bind groups created so far (both are cached).
    pub fn cache_stats(&self) -> (usize, u64) {
        let st = self.exec.lock();
        self.exec.cache_stats(&st)
    }

    /// The adapter's identity as wgpu reports it (name, vendor and device ids, driver).
    pub(crate) fn adapter_info(&self) -> wgpu::AdapterInfo {
        self.exec.ctx.info.clone()
    }

    /// The optional features the device was opened with.
    pub(crate) fn features(&self) -> wgpu::Features {
        self.exec.ctx.features
    }

    /// Limits the device was opened with (the adapter's own).
    pub fn limits(&self) -> wgpu::Limits {
        self.exec.ctx.limits.clone()
    }

    /// The largest tensor this device accepts, in bytes (the smaller of the adapter's
    /// max_buffer_size and max_storage_buffer_binding_size).
    pub fn max_buffer_bytes(&self) -> u64 {
        self.exec.pool.max_bytes()
    }

    /// Whether the device can time kernels (TIMESTAMP_QUERY).
    pub fn can_profile(&self) -> bool {
        self.exec.can_profile()
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Every adapter wgpu finds (Vulkan, Metal, DX12), in the order `gpu:N` counts them, with the
/// tiles that autotune gives each.
pub fn list_adapters() -> Vec<AdapterReport> {
    list_adapters_with(&TilePolicy::default())
}

#[cfg(not(target_arch = "wasm32"))]
/// [`list_adapters`], each with the tiles that `policy` gives it.
pub fn list_adapters_with(policy: &TilePolicy) -> Vec<AdapterReport> {
    context::reports(policy)
}

#[cfg(not(target_arch = "wasm32"))]
/// Opens the best adapter: discrete, then integrated, then software (lavapipe).
pub fn open_best() -> Result<Device> {
    open_best_with(&TilePolicy::default())
}

#[cfg(not(target_arch = "wasm32"))]
/// [`open_best`] with the tile shapes chosen by `policy`.
pub fn open_best_with(policy: &TilePolicy) -> Result<Device> {
    Ok(GpuBackend::open_best_with(policy)?.device())
}

#[cfg(not(target_arch = "wasm32"))]
/// Opens the best hardware adapter, skipping software ones, with the tile shapes chosen by
/// `policy`; `None` when there is none.
pub fn open_best_hardware(policy: &TilePolicy) -> Result<Option<Device>> {
    Ok(GpuBackend::open_best_hardware(policy)?.map(|b| b.device()))
}

#[cfg(not(target_arch = "wasm32"))]
/// Opens the adapter at `index` in the order `distill devices` lists them.
pub fn open_index(index: usize) -> Result<Device> {
    open_index_with(index, &TilePolicy::default())
}

#[cfg(not(target_arch = "wasm32"))]
/// [`open_index`] with the tile shapes chosen by `policy`.
pub fn open_index_with(index: usize, policy: &TilePolicy) -> Result<Device> {
    Ok(GpuBackend::open_index_with(index, policy)?.device())
}

/// The adapter a browser's WebGPU gives for `power` (`None` when the browser has no WebGPU,
/// or gives no adapter), with what it reveals of itself.
pub async fn request_browser_adapter(
    power: wgpu::PowerPreference,
) -> Option<(wgpu::Adapter, AdapterReport)> {
    let adapter = context::instance()
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: power,
            ..Default::default()
        })
        .await
        .ok()?;
    let report = AdapterReport::new(0, &adapter, &TilePolicy::default());
    Some((adapter, report))
}
