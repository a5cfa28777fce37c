//! Standalone WGSL modules: compiled on first use, dispatched with a parameter uniform
//! (binding 0) and storage buffers (bindings 1..), outside the engine's kernel table.
//!
//! The engine compiles its whole module table when a device opens ([`Exec::new`]); shaders
//! that only a study or a benchmark runs (the kernel ladder in `shaders/ladder/`) must not
//! cost every start-up that. A [`Standalone`] opens its own wgpu device on an adapter, with
//! the optional features study kernels may use (SUBGROUP, SHADER_F16) where the adapter has
//! them, compiles a module only when it is first asked for, and caches the pipeline. Bind
//! group layouts come from the shader itself (automatic layout), so a module declares its
//! bindings once, in WGSL. Compile failures, missing features and exceeded limits become
//! [`Error::Device`] / [`Error::OutOfMemory`] naming the module and the adapter.
//!
//! Whatever waits on the device is a future (error scopes, completion, read-backs), so the
//! same code runs in a browser; native callers drive it with `pollster`.
//!
//! [`Exec::new`]: super::exec::Exec

use std::collections::HashMap;
use std::sync::Mutex;

use super::context::{self, convert, Context};
use super::readback::{work_done, MapRead};
use super::GpuBackend;
use crate::{Error, Result};

/// Optional features study kernels may use, requested where the adapter offers them.
const STUDY_FEATURES: wgpu::Features = wgpu::Features::SUBGROUP
    .union(wgpu::Features::SHADER_F16)
    .union(wgpu::Features::TIMESTAMP_QUERY);

/// A device for standalone modules, with its pipeline cache.
pub(crate) struct Standalone {
    ctx: Context,
    index: usize,
    software: bool,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
}

/// The adapter `open_best` would pick (discrete, integrated, other, software; first on ties).
#[cfg(not(target_arch = "wasm32"))]
fn best_index(list: &[wgpu::Adapter]) -> Option<usize> {
    let rank = |t: wgpu::DeviceType| match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => 2,
        wgpu::DeviceType::Cpu => 3,
    };
    (0..list.len()).min_by_key(|&i| (rank(list[i].get_info().device_type), i))
}

impl Standalone {
    /// Opens adapter `index` (as `distill devices` numbers them), or the best one.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(index: Option<usize>) -> Result<Standalone> {
        let list = context::adapters();
        let index = match index {
            Some(i) => i,
            None => best_index(&list).ok_or_else(context::no_adapter_error)?,
        };
        if index >= list.len() {
            // The table's own message (how many adapters there are).
            return Err(context::adapter_at(index)
                .err()
                .unwrap_or_else(|| Error::Device(format!("no GPU adapter gpu:{index}"))));
        }
        let adapter = list.into_iter().nth(index).expect("checked above");
        pollster::block_on(Standalone::open_async(adapter, index))
    }

    /// Opens a device on `adapter`, numbered `index` in reports, with the study features it
    /// offers added to what the engine requests.
    pub async fn open_async(adapter: wgpu::Adapter, index: usize) -> Result<Standalone> {
        let software = adapter.get_info().device_type == wgpu::DeviceType::Cpu;
        let ctx = Context::open_async(&adapter, STUDY_FEATURES).await?;
        Ok(Standalone {
            ctx,
            index,
            software,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// `name (Backend)` of the adapter.
    pub fn label(&self) -> &str {
        &self.ctx.label
    }
    /// Its position in `distill devices` (for opening the engine backend on the same adapter).
    pub fn index(&self) -> usize {
        self.index
    }
    /// Whether it is a software adapter (lavapipe).
    pub fn is_software(&self) -> bool {
        self.software
    }
    /// Whether the device was opened with all of `features`.
    pub fn has(&self, features: wgpu::Features) -> bool {
        self.ctx.features.contains(features)
    }
    /// The largest subgroup the adapter may run (meaningful with SUBGROUP).
    pub fn subgroup_max_size(&self) -> u32 {
        self.ctx.info.subgroup_max_size
    }

    /// The pipeline of `entry` in the WGSL `source`, compiled on first use and cached by
    /// `name`. `needs` are the optional features the module uses.
    pub async fn pipeline(
        &self,
        name: &str,
        source: &str,
        entry: &str,
        needs: wgpu::Features,
    ) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = self.cached(name) {
            return Ok(p);
        }
        if !self.has(needs) {
            return Err(Error::Device(format!(
                "{}: {name} needs device features this adapter lacks: {}",
                self.ctx.label,
                context::feature_words(needs - self.ctx.features)
            )));
        }
        let device = &self.ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(name),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipe = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions::default(),
            cache: None,
        });
        if let Some(e) = scope.pop().await {
            return Err(Error::Device(format!(
                "{}: {name} failed to compile: {e}",
                self.ctx.label
            )));
        }
        self.pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), pipe.clone());
        Ok(pipe)
    }

    fn cached(&self, name: &str) -> Option<wgpu::ComputePipeline> {
        let cache = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(name).cloned()
    }

    /// A storage buffer holding `bytes` (padded to 4 bytes; at least 4).
    pub async fn upload(&self, bytes: &[u8]) -> Result<wgpu::Buffer> {
        let buf = self.zeroed(bytes.len() as u64).await?;
        let mut padded = bytes.to_vec();
        padded.resize(padded.len().div_ceil(4).max(1) * 4, 0);
        self.ctx.queue.write_buffer(&buf, 0, &padded);
        Ok(buf)
    }

    /// A zero-filled storage buffer of `bytes` (rounded up to 4; at least 4).
    pub async fn zeroed(&self, bytes: u64) -> Result<wgpu::Buffer> {
        let size = bytes.div_ceil(4).max(1) * 4;
        let max = self
            .ctx
            .limits
            .max_storage_buffer_binding_size
            .min(self.ctx.limits.max_buffer_size);
        if size > max {
            return Err(Error::Device(format!(
                "{}: a {size}-byte storage buffer is over the adapter's limit of {max} bytes",
                self.ctx.label
            )));
        }
        let device = &self.ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buf = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("distill standalone"),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = scope.pop().await {
            return Err(convert(&self.ctx.label, e));
        }
        Ok(buf)
    }

    /// Submits `reps` dispatches of `pipe` over `groups` workgroups, with `params` as the
    /// uniform at binding 0 and each `(binding, buffer)` of `buffers` (the bindings the entry
    /// point uses) (does not wait for the work; see [`Self::finished`]).
    pub async fn dispatch(
        &self,
        pipe: &wgpu::ComputePipeline,
        params: &[u8],
        buffers: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32, u32),
        reps: u32,
    ) -> Result<()> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Device(format!(
                "{}: {groups:?} workgroups, over the limit of {max} per dimension",
                self.ctx.label
            )));
        }
        let device = &self.ctx.device;
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("distill standalone params"),
            size: (params.len() as u64).div_ceil(16).max(1) * 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.ctx.queue.write_buffer(&uniform, 0, params);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: uniform.as_entire_binding(),
        }];
        for (binding, b) in buffers {
            entries.push(wgpu::BindGroupEntry {
                binding: *binding,
                resource: b.as_entire_binding(),
            });
        }
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipe.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("distill standalone"),
        });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(pipe);
            pass.set_bind_group(0, &bg, &[]);
            for _ in 0..reps {
                pass.dispatch_workgroups(groups.0, groups.1, groups.2);
            }
        }
        self.ctx.queue.submit(Some(enc.finish()));
        if let Some(e) = scope.pop().await {
            return Err(convert(&self.ctx.label, e));
        }
        self.ctx.check()
    }

    /// Resolves when everything submitted so far has finished.
    pub async fn finished(&self) -> Result<()> {
        work_done(&self.ctx.device, &self.ctx.queue, &self.ctx.label).await?;
        self.ctx.check()
    }

    /// The first `bytes` of `src`, after everything submitted so far.
    pub async fn read(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let size = bytes.div_ceil(4).max(1) * 4;
        let device = &self.ctx.device;
        let rb = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("distill standalone readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
        enc.copy_buffer_to_buffer(src, 0, &rb, 0, size);
        self.ctx.queue.submit(Some(enc.finish()));
        let data = MapRead::new(&rb, size)
            .wait(device, &self.ctx.label)
            .await?;
        self.ctx.check()?;
        Ok(data[..bytes as usize].to_vec())
    }
}

impl GpuBackend {
    /// Submits the pending work and waits for it (for timing engine kernels from outside).
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn finish(&self) -> Result<()> {
        pollster::block_on(self.finished())
    }

    /// Submits the pending work; resolves when it has finished.
    pub(crate) async fn finished(&self) -> Result<()> {
        {
            let mut st = self.exec.lock();
            self.exec.submit(&mut st)?;
        }
        self.exec.finished().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollster::block_on;

    fn open_or_skip() -> Option<Standalone> {
        match Standalone::open(None) {
            Ok(s) => Some(s),
            Err(e) if std::env::var("DISTILL_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
                panic!("DISTILL_REQUIRE_GPU=1 but no adapter opened: {e}")
            }
            Err(_) => None,
        }
    }

    const DOUBLE: &str = "
        struct Params { n: u32, _a: u32, _b: u32, _c: u32 }
        @group(0) @binding(0) var<uniform> p: Params;
        @group(0) @binding(1) var<storage, read> x: array<f32>;
        @group(0) @binding(2) var<storage, read_write> y: array<f32>;
        @compute @workgroup_size(64)
        fn main(@builtin(global_invocation_id) g: vec3<u32>) {
            if (g.x < p.n) { y[g.x] = 2.0 * x[g.x]; }
        }";

    #[test]
    fn a_module_compiles_on_first_use_and_runs() {
        let Some(dev) = open_or_skip() else { return };
        let x: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let xb = block_on(dev.upload(bytemuck::cast_slice(&x))).unwrap();
        let yb = block_on(dev.zeroed(400)).unwrap();
        let pipe =
            block_on(dev.pipeline("double", DOUBLE, "main", wgpu::Features::empty())).unwrap();
        block_on(dev.dispatch(
            &pipe,
            bytemuck::cast_slice(&[100u32, 0, 0, 0]),
            &[(1, &xb), (2, &yb)],
            (2, 1, 1),
            3,
        ))
        .unwrap();
        block_on(dev.finished()).unwrap();
        let y = block_on(dev.read(&yb, 400)).unwrap();
        let y: &[f32] = bytemuck::cast_slice(&y);
        assert!(y.iter().zip(&x).all(|(y, x)| *y == 2.0 * x));
    }

    #[test]
    fn compile_errors_missing_features_and_limits_are_errors() {
        let Some(dev) = open_or_skip() else { return };
        let bad = DOUBLE.replace("2.0 * x[g.x]", "2.0 * undefined_thing");
        let e = block_on(dev.pipeline("bad", &bad, "main", wgpu::Features::empty())).unwrap_err();
        assert!(
            matches!(&e, Error::Device(m) if m.contains("bad failed to compile")),
            "{e}"
        );
        let e = block_on(dev.pipeline("f64", DOUBLE, "main", wgpu::Features::SHADER_F64)).err();
        if !dev.has(wgpu::Features::SHADER_F64) {
            assert!(
                matches!(&e, Some(Error::Device(m)) if m.contains("lacks")),
                "{e:?}"
            );
        }
        let e = block_on(dev.zeroed(u64::MAX / 2)).unwrap_err();
        assert!(matches!(&e, Error::Device(m) if m.contains("over the adapter's limit")));
        let pipe =
            block_on(dev.pipeline("double", DOUBLE, "main", wgpu::Features::empty())).unwrap();
        let b = block_on(dev.zeroed(4)).unwrap();
        let e = block_on(dev.dispatch(&pipe, &[0; 16], &[(1, &b), (2, &b)], (u32::MAX, 1, 1), 1))
            .unwrap_err();
        assert!(
            matches!(&e, Error::Device(m) if m.contains("workgroups")),
            "{e}"
        );
    }
}
