//! Execution: shader modules, cached pipelines and bind groups, the parameter arena, the
//! pending command encoder, submission and read-back.
//!
//! - Every WGSL module is compiled once, when the device opens. Pipelines (a module entry
//!   point plus override constants) are created on first use and cached for the device's life.
//! - Each kernel's bind group layout is binding 0 = its parameters (a uniform with a dynamic
//!   offset), then its storage buffers. Parameters of all dispatches of one submission are
//!   appended to a host-side arena and written to one uniform buffer right before the submit
//!   (queue writes run before the submission's commands, and after all earlier submissions),
//!   so bind groups never depend on parameter values: they are cached by the buffers they bind
//!   and a steady-state step creates none.
//! - Dispatches are recorded into one pending command encoder; [`Exec::submit`] finishes and
//!   submits it. Nothing is submitted per op.
//! - With profiling on, each dispatch is timed (see profiler.rs).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use super::context::{scoped, Context};
use super::params::ShaderParams;
use super::pool::Pool;
use super::profiler::Profiler;
#[cfg(not(target_arch = "wasm32"))]
use super::readback::MapRead;
use super::readback::Reading;
use super::table::{Access, Kernel, Module};
use super::tiles::Tiles;
use crate::backend::KernelTime;
use crate::{Error, Result};

/// A buffer as a dispatch binds it: the wgpu handle and its pool id (the bind-group key).
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub buf: &'a wgpu::Buffer,
    pub id: u64,
}

/// Dispatches per submission before an automatic submit (bounds the parameter arena and the
/// memory held by buffers waiting in the pool's pending list).
const ARENA_SLOTS: usize = 4096;

/// Mutable execution state, behind one mutex.
pub(crate) struct State {
    encoder: Option<wgpu::CommandEncoder>,
    /// Parameters of the pending submission's dispatches, one arena slot each.
    params: Vec<u8>,
    pipelines: HashMap<&'static str, wgpu::ComputePipeline>,
    layouts: HashMap<&'static [Access], (wgpu::BindGroupLayout, wgpu::PipelineLayout)>,
    bind_groups: HashMap<Vec<u64>, wgpu::BindGroup>,
    /// MAP_READ buffers for downloads, by size.
    readbacks: HashMap<u64, Vec<wgpu::Buffer>>,
    profiler: Option<Profiler>,
    pub bind_groups_created: u64,
}

pub(crate) struct Exec {
    pub ctx: Arc<Context>,
    pub pool: Arc<Pool>,
    /// The tile shapes the GEMM modules were built with (launchers size their grids by it).
    pub tiles: Tiles,
    modules: HashMap<Module, wgpu::ShaderModule>,
    arena: wgpu::Buffer,
    slot: usize,
    state: Mutex<State>,
}

fn layout_key(bindings: &'static [Access]) -> u64 {
    // Small, stable id of a binding signature for the bind-group key.
    bindings
        .iter()
        .fold(bindings.len() as u64, |h, a| h * 3 + (*a as u64) + 1)
}

impl Exec {
    /// Compiles `modules` (the tiled GEMM loop with the shapes of `tiles`) on `ctx`'s device.
    pub fn new(
        ctx: Arc<Context>,
        pool: Arc<Pool>,
        tiles: Tiles,
        modules_to_build: &[Module],
    ) -> Result<Exec> {
        let device = &ctx.device;
        let (modules, error) = scoped(device, wgpu::ErrorFilter::Validation, || {
            let mut modules = HashMap::new();
            for &m in modules_to_build {
                let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(m.file().0),
                    source: wgpu::ShaderSource::Wgsl(m.source(tiles).into()),
                });
                modules.insert(m, module);
            }
            modules
        });
        if let Some(e) = error {
            return Err(Error::Device(format!(
                "{}: a WGSL shader failed to compile: {e}",
                ctx.label
            )));
        }
        let slot = (ctx.limits.min_uniform_buffer_offset_alignment as usize).max(256);
        let arena = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("distill params"),
            size: (slot * ARENA_SLOTS) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(Exec {
            ctx,
            pool,
            tiles,
            modules,
            arena,
            slot,
            state: Mutex::new(State {
                encoder: None,
                params: Vec::new(),
                pipelines: HashMap::new(),
                layouts: HashMap::new(),
                bind_groups: HashMap::new(),
                readbacks: HashMap::new(),
                profiler: None,
                bind_groups_created: 0,
            }),
        })
    }

    /// The compiler's errors for the modules built in [`Exec::new`], as one error naming each
    /// module and line. Natively the error scope in `new` has caught them already; a browser
    /// reports them only through the modules' compilation info, which is awaited here.
    pub async fn check_compiled(&self) -> Result<()> {
        let mut errors = Vec::new();
        for (m, module) in &self.modules {
            let info = module.get_compilation_info().await;
            for msg in info.messages {
                if msg.message_type == wgpu::CompilationMessageType::Error {
                    let line = msg.location.map_or(0, |l| l.line_number);
                    errors.push(format!("{}:{line}: {}", m.file().0, msg.message));
                }
            }
        }
        if errors.is_empty() {
            return self.ctx.check();
        }
        errors.sort();
        Err(Error::Device(format!(
            "{}: a WGSL shader failed to compile: {}",
            self.ctx.label,
            errors.join("; ")
        )))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn layouts<'s>(
        &self,
        st: &'s mut State,
        bindings: &'static [Access],
    ) -> &'s (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let device = &self.ctx.device;
        let slot = self.slot as u64;
        st.layouts.entry(bindings).or_insert_with(|| {
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: NonZeroU64::new(slot),
                },
                count: None,
            }];
            for (i, a) in bindings.iter().enumerate() {
                entries.push(wgpu::BindGroupLayoutEntry {
                    binding: i as u32 + 1,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *a == Access::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                });
            }
            let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            (bgl, pl)
        })
    }

    fn pipeline(&self, st: &mut State, kernel: &'static Kernel) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = st.pipelines.get(kernel.name) {
            return Ok(p.clone());
        }
        let layout = self.layouts(st, kernel.bindings).1.clone();
        let device = &self.ctx.device;
        let module = self.modules.get(&kernel.module).ok_or_else(|| {
            Error::Device(format!(
                "{}: the {} kernel's module was not built on this device",
                self.ctx.label, kernel.name
            ))
        })?;
        let (pipe, error) = scoped(device, wgpu::ErrorFilter::Validation, || {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: Some(&layout),
                module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: kernel.constants,
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        });
        if let Some(e) = error {
            return Err(Error::Device(format!(
                "{}: could not build the {} pipeline: {e}",
                self.ctx.label, kernel.name
            )));
        }
        st.pipelines.insert(kernel.name, pipe.clone());
        Ok(pipe)
    }

    fn bind_group(
        &self,
        st: &mut State,
        kernel: &'static Kernel,
        binds: &[Bind],
    ) -> wgpu::BindGroup {
        let mut key = Vec::with_capacity(binds.len() + 1);
        key.push(layout_key(kernel.bindings));
        key.extend(binds.iter().map(|b| b.id));
        if let Some(bg) = st.bind_groups.get(&key) {
            return bg.clone();
        }
        let bgl = self.layouts(st, kernel.bindings).0.clone();
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.arena,
                offset: 0,
                size: NonZeroU64::new(self.slot as u64),
            }),
        }];
        for (i, b) in binds.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource: b.buf.as_entire_binding(),
            });
        }
        let bg = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &bgl,
                entries: &entries,
            });
        // Bounded: buffers come from the pool, so the set of combinations is small in a
        // training loop; if something churns, start over rather than grow forever.
        if st.bind_groups.len() >= 16_384 {
            st.bind_groups.clear();
        }
        st.bind_groups_created += 1;
        st.bind_groups.insert(key, bg.clone());
        bg
    }

    pub fn encoder<'s>(&self, st: &'s mut State) -> &'s mut wgpu::CommandEncoder {
        st.encoder.get_or_insert_with(|| {
            self.ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("distill step"),
                })
        })
    }

    /// Whether this device has the optional features `kernel` uses.
    pub fn supports(&self, kernel: &Kernel) -> bool {
        self.ctx.features.contains(kernel.needs)
    }

    /// Records one dispatch of `kernel` over `groups` workgroups, with `params` (the
    /// `Params` struct of the kernel's module) in the next slot of the parameter arena.
    pub fn dispatch<P: ShaderParams>(
        &self,
        st: &mut State,
        kernel: &'static Kernel,
        params: &P,
        binds: &[Bind],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        debug_assert_eq!(binds.len(), kernel.bindings.len(), "{}", kernel.name);
        debug_assert_eq!(
            P::MODULE,
            kernel.module.params_module(),
            "{}: params type",
            kernel.name
        );
        debug_assert!(
            std::mem::size_of::<P>() <= self.slot,
            "params exceed an arena slot"
        );
        if groups.0 == 0 || groups.1 == 0 || groups.2 == 0 {
            return Ok(());
        }
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        if groups.0 > max || groups.1 > max || groups.2 > max {
            return Err(Error::Device(format!(
                "{}: {} needs {:?} workgroups, over the limit of {max} per dimension",
                self.ctx.label, kernel.name, groups
            )));
        }
        if !self.supports(kernel) {
            return Err(Error::Device(format!(
                "{}: {} needs device features this device lacks: {}",
                self.ctx.label,
                kernel.name,
                super::context::feature_words(kernel.needs - self.ctx.features)
            )));
        }
        let full_profile = st.profiler.as_ref().is_some_and(Profiler::is_full);
        if st.params.len() / self.slot >= ARENA_SLOTS || full_profile {
            self.submit(st)?;
        }
        let pipe = self.pipeline(st, kernel)?;
        let bg = self.bind_group(st, kernel, binds);
        let offset = st.params.len();
        st.params.extend_from_slice(bytemuck::bytes_of(params));
        st.params.resize(offset + self.slot, 0);

        // Split borrows: the encoder is borrowed mutably while the profiler's query set is read.
        self.encoder(st);
        let State {
            encoder, profiler, ..
        } = st;
        let enc = encoder.as_mut().expect("created above");
        let timestamp_writes = profiler.as_mut().map(|p| p.time_next(kernel.name));
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name),
            timestamp_writes,
        });
        pass.set_pipeline(&pipe);
        pass.set_bind_group(0, &bg, &[offset as u32]);
        pass.dispatch_workgroups(groups.0, groups.1, groups.2);
        Ok(())
    }

    /// Submits the pending encoder (if any) and recycles buffers released before it.
    pub fn submit(&self, st: &mut State) -> Result<()> {
        let Some(mut enc) = st.encoder.take() else {
            self.pool.recycle();
            return self.ctx.check();
        };
        if !st.params.is_empty() {
            self.ctx.queue.write_buffer(&self.arena, 0, &st.params);
            st.params.clear();
        }
        let timed = st.profiler.as_ref().and_then(|p| p.resolve(&mut enc));
        self.ctx.queue.submit(Some(enc.finish()));
        self.pool.recycle();
        if let (Some(bytes), Some(p)) = (timed, st.profiler.as_mut()) {
            let data = self.map_read(&p.readback, bytes)?;
            p.add_times(&data, self.ctx.queue.get_timestamp_period() as f64);
        }
        self.ctx.check()
    }

    /// Waits for all submitted work.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| {
                Error::Device(format!(
                    "{}: waiting for the GPU failed: {e}",
                    self.ctx.label
                ))
            })?;
        self.ctx.check()
    }

    /// Resolves when all submitted work has finished (natively a device poll; in a browser
    /// the queue's promise).
    pub async fn finished(&self) -> Result<()> {
        super::readback::work_done(&self.ctx.device, &self.ctx.queue, &self.ctx.label).await?;
        self.ctx.check()
    }

    /// Starts copying `bytes` of `src` to the host: records the copy, submits, and asks for
    /// the staging buffer to be mapped. [`Exec::finish_read`] awaits the mapping; the state
    /// lock is not held in between, so the browser's event loop can run.
    pub fn begin_read(&self, st: &mut State, src: &wgpu::Buffer, bytes: u64) -> Result<Reading> {
        let class = super::pool::size_class(bytes.max(4));
        let rb = match st.readbacks.get_mut(&class).and_then(Vec::pop) {
            Some(b) => b,
            None => self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distill readback"),
                size: class,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        if bytes > 0 {
            self.encoder(st)
                .copy_buffer_to_buffer(src, 0, &rb, 0, bytes);
        }
        self.submit(st)?;
        Ok(Reading::start(rb, class, bytes))
    }

    /// Waits for a read started by [`Exec::begin_read`] and returns its bytes.
    pub async fn finish_read(&self, reading: Reading) -> Result<Vec<u8>> {
        let (data, rb, class) = reading.finish(&self.ctx.device, &self.ctx.label).await?;
        self.lock().readbacks.entry(class).or_default().push(rb);
        self.ctx.check()?;
        Ok(data)
    }

    /// Maps `bytes` of `buf` (a MAP_READ buffer whose copy was submitted) and waits on this
    /// thread: the profiler's timestamps, which only native builds collect.
    #[cfg(not(target_arch = "wasm32"))]
    fn map_read(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        pollster::block_on(MapRead::new(buf, bytes).wait(&self.ctx.device, &self.ctx.label))
    }

    /// A browser cannot wait for a mapping without yielding; the device is never opened with
    /// timestamp queries there ([`Exec::can_profile`]), so this is never reached.
    #[cfg(target_arch = "wasm32")]
    fn map_read(&self, _: &wgpu::Buffer, _: u64) -> Result<Vec<u8>> {
        Err(Error::Device(format!(
            "{}: kernel timing needs a blocking read-back, which a browser does not allow",
            self.ctx.label
        )))
    }

    // --- profiling ---------------------------------------------------------------------------

    /// Whether the device can time kernels (it was opened with TIMESTAMP_QUERY).
    pub fn can_profile(&self) -> bool {
        cfg!(not(target_arch = "wasm32"))
            && self.ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Turns kernel timing on or off; returns whether it is on (false without TIMESTAMP_QUERY).
    /// Turning it off forgets the times so far.
    pub fn set_profiling(&self, st: &mut State, on: bool) -> Result<bool> {
        if !on {
            st.profiler = None;
            return Ok(false);
        }
        if !self.can_profile() {
            return Ok(false);
        }
        if st.profiler.is_some() {
            return Ok(true);
        }
        // Queries recorded so far belong to no profiler: submit them first.
        self.submit(st)?;
        st.profiler = Some(Profiler::new(&self.ctx.device));
        Ok(true)
    }

    /// Time per kernel so far, slowest first (empty when profiling is off).
    pub fn kernel_times(&self, st: &State) -> Vec<KernelTime> {
        st.profiler
            .as_ref()
            .map(Profiler::report)
            .unwrap_or_default()
    }

    /// Forgets every cached bind group (after buffers were destroyed).
    pub fn clear_bind_groups(&self, st: &mut State) {
        st.bind_groups.clear();
    }

    /// Pipelines created so far and bind groups created so far.
    pub fn cache_stats(&self, st: &State) -> (usize, u64) {
        (st.pipelines.len(), st.bind_groups_created)
    }
}
