//! Shader modules, pipelines, bind groups, the parameter arena and the pending encoder.
//!
//! - Every WGSL file is compiled once, when the device opens. Pipelines (a module entry point
//!   plus override constants) are created on first use and cached for the device's life.
//! - Each kernel's bind group layout is binding 0 = its parameters (a uniform with a dynamic
//!   offset), then its storage buffers. Parameters of all dispatches of one submission are
//!   appended to a host-side arena and written to one uniform buffer right before the submit
//!   (queue writes run before the submission's commands, and after all earlier submissions),
//!   so bind groups never depend on parameter values: they are cached by the buffers they bind
//!   and a steady-state step creates none.
//! - Dispatches are recorded into one pending command encoder; [`Exec::submit`] finishes and
//!   submits it. Nothing is submitted per op.
//! - With profiling on (and TIMESTAMP_QUERY), each dispatch's compute pass writes begin/end
//!   timestamps; at submit they are resolved and read back, and summed per kernel name.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex};

use super::context::Context;
use super::pool::Pool;
use crate::{Error, Result};

/// The WGSL files, one per kernel family (mirroring kernels/src).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Module {
    Matmul,
    Conv2d,
    Pool,
    Softmax,
    Elementwise,
    Optim,
    Reduce,
}

const MODULES: [(Module, &str, &str); 7] = [
    (
        Module::Matmul,
        "matmul.wgsl",
        include_str!("../../../shaders/matmul.wgsl"),
    ),
    (
        Module::Conv2d,
        "conv2d.wgsl",
        include_str!("../../../shaders/conv2d.wgsl"),
    ),
    (
        Module::Pool,
        "pool.wgsl",
        include_str!("../../../shaders/pool.wgsl"),
    ),
    (
        Module::Softmax,
        "softmax.wgsl",
        include_str!("../../../shaders/softmax.wgsl"),
    ),
    (
        Module::Elementwise,
        "elementwise.wgsl",
        include_str!("../../../shaders/elementwise.wgsl"),
    ),
    (
        Module::Optim,
        "optim.wgsl",
        include_str!("../../../shaders/optim.wgsl"),
    ),
    (
        Module::Reduce,
        "reduce.wgsl",
        include_str!("../../../shaders/reduce.wgsl"),
    ),
];

/// How a kernel binds a storage buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}
use Access::{Read as R, ReadWrite as W};

/// One kernel: an entry point of a module, its override constants and its storage bindings
/// (bindings 1..; binding 0 is always the parameter uniform).
#[derive(Debug)]
pub(crate) struct Kernel {
    pub name: &'static str,
    pub module: Module,
    pub entry: &'static str,
    pub constants: &'static [(&'static str, f64)],
    pub bindings: &'static [Access],
}

macro_rules! kernel {
    ($id:ident, $name:literal, $module:ident, $entry:literal, [$($c:expr),*], [$($b:ident),*]) => {
        pub(crate) const $id: Kernel = Kernel {
            name: $name,
            module: Module::$module,
            entry: $entry,
            constants: &[$($c),*],
            bindings: &[$($b),*],
        };
    };
}

pub(crate) mod k {
    use super::*;
    kernel!(
        MATMUL_NN,
        "matmul_nn",
        Matmul,
        "main",
        [("TRANS_A", 0.0), ("TRANS_B", 0.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_NT,
        "matmul_nt",
        Matmul,
        "main",
        [("TRANS_A", 0.0), ("TRANS_B", 1.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_TN,
        "matmul_tn",
        Matmul,
        "main",
        [("TRANS_A", 1.0), ("TRANS_B", 0.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        MATMUL_TT,
        "matmul_tt",
        Matmul,
        "main",
        [("TRANS_A", 1.0), ("TRANS_B", 1.0)],
        [R, R, W, R, R, R]
    );
    kernel!(
        CONV_FWD,
        "conv2d_forward",
        Conv2d,
        "main",
        [("MODE", 0.0)],
        [R, R, W, R]
    );
    kernel!(
        CONV_DGRAD,
        "conv2d_backward_input",
        Conv2d,
        "main",
        [("MODE", 1.0)],
        [R, R, W, R]
    );
    kernel!(
        CONV_WGRAD,
        "conv2d_backward_weight",
        Conv2d,
        "main",
        [("MODE", 2.0)],
        [R, R, W, R]
    );
    kernel!(
        CONV_BGRAD,
        "conv2d_backward_bias",
        Conv2d,
        "bias_grad",
        [],
        [R, R, W, R]
    );
    kernel!(
        POOL_FWD,
        "max_pool2d_forward",
        Pool,
        "forward",
        [],
        [R, W, W]
    );
    kernel!(
        POOL_BWD,
        "max_pool2d_backward",
        Pool,
        "backward",
        [],
        [R, W, W]
    );
    kernel!(RELU, "relu", Elementwise, "relu", [], [R, R, W]);
    kernel!(
        RELU_BWD,
        "relu_backward",
        Elementwise,
        "relu_backward",
        [],
        [R, R, W]
    );
    kernel!(ADD, "add", Elementwise, "add", [], [R, R, W]);
    kernel!(SCALE, "scale", Elementwise, "scale", [], [R, R, W]);
    kernel!(SCALE_BY, "scale_by", Elementwise, "scale_by", [], [R, R, W]);
    kernel!(AXPY, "axpy", Elementwise, "axpy", [], [R, R, W]);
    kernel!(FILL, "fill", Elementwise, "fill", [], [R, R, W]);
    kernel!(SUM_PARTIAL, "sum_partial", Reduce, "partial", [], [R, W]);
    kernel!(SUM_FINISH, "sum_finish", Reduce, "finish", [], [R, W]);
    kernel!(
        COLUMN_SUMS,
        "column_sums",
        Reduce,
        "column_sums",
        [],
        [R, W]
    );
    kernel!(
        SOFTMAX,
        "softmax",
        Softmax,
        "softmax",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        LOG_SOFTMAX,
        "log_softmax",
        Softmax,
        "log_softmax",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        SOFTMAX_BWD,
        "softmax_backward",
        Softmax,
        "softmax_backward",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        LOG_SOFTMAX_BWD,
        "log_softmax_backward",
        Softmax,
        "log_softmax_backward",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        CROSS_ENTROPY,
        "cross_entropy",
        Softmax,
        "cross_entropy",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        KD_LOSS,
        "kd_loss",
        Softmax,
        "kd_loss",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(
        COUNT_CORRECT,
        "count_correct",
        Softmax,
        "count_correct",
        [],
        [R, R, R, W, W, W]
    );
    kernel!(SGD, "sgd_step", Optim, "sgd", [], [R, W, W, W]);
    kernel!(ADAM, "adam_step", Optim, "adam", [], [R, W, W, W]);
}

/// A buffer as a dispatch binds it: the wgpu handle and its pool id (the bind-group key).
#[derive(Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub buf: &'a wgpu::Buffer,
    pub id: u64,
}

/// Dispatches per submission before an automatic submit (bounds the parameter arena and the
/// memory held by buffers waiting in the pool's pending list).
const ARENA_SLOTS: usize = 4096;
/// Dispatches per submission that can be timed.
const PROFILE_SLOTS: u32 = 1024;

struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    names: Vec<&'static str>,
    totals: HashMap<&'static str, (u64, f64)>,
}

/// Mutable execution state, behind one mutex.
pub(crate) struct State {
    encoder: Option<wgpu::CommandEncoder>,
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
    pub fn new(ctx: Arc<Context>, pool: Arc<Pool>) -> Result<Exec> {
        let device = &ctx.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut modules = HashMap::new();
        for (m, file, src) in MODULES {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(file),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            modules.insert(m, module);
        }
        if let Some(e) = pollster::block_on(scope.pop()) {
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
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipe = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.name),
            layout: Some(&layout),
            module: &self.modules[&kernel.module],
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: kernel.constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
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

    /// Records one dispatch of `kernel` over `groups` workgroups.
    pub fn dispatch(
        &self,
        st: &mut State,
        kernel: &'static Kernel,
        params: &[u32],
        binds: &[Bind],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        debug_assert_eq!(binds.len(), kernel.bindings.len(), "{}", kernel.name);
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
        let full_profile = st
            .profiler
            .as_ref()
            .is_some_and(|p| p.names.len() as u32 >= PROFILE_SLOTS);
        if st.params.len() / self.slot >= ARENA_SLOTS || full_profile {
            self.submit(st)?;
        }
        let pipe = self.pipeline(st, kernel)?;
        let bg = self.bind_group(st, kernel, binds);
        let offset = st.params.len();
        st.params
            .extend(params.iter().flat_map(|w| w.to_le_bytes()));
        st.params.resize(offset + self.slot, 0);

        let timestamp = st.profiler.as_mut().map(|p| {
            let i = p.names.len() as u32;
            p.names.push(kernel.name);
            i
        });
        // Split borrows: the encoder is borrowed mutably while the profiler's query set is read.
        self.encoder(st);
        let State {
            encoder, profiler, ..
        } = st;
        let enc = encoder.as_mut().expect("created above");
        let timestamp_writes = match (timestamp, profiler.as_ref()) {
            (Some(i), Some(p)) => Some(wgpu::ComputePassTimestampWrites {
                query_set: &p.queries,
                beginning_of_pass_write_index: Some(2 * i),
                end_of_pass_write_index: Some(2 * i + 1),
            }),
            _ => None,
        };
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
        let timed = match st.profiler.as_mut() {
            Some(p) if !p.names.is_empty() => {
                let n = p.names.len() as u32;
                enc.resolve_query_set(&p.queries, 0..2 * n, &p.resolve, 0);
                enc.copy_buffer_to_buffer(&p.resolve, 0, &p.readback, 0, 16 * n as u64);
                true
            }
            _ => false,
        };
        self.ctx.queue.submit(Some(enc.finish()));
        self.pool.recycle();
        if timed {
            self.collect_profile(st)?;
        }
        self.ctx.check()
    }

    /// Waits for all submitted work.
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

    /// Copies `bytes` of `src` to the host: records the copy, submits, waits, maps.
    pub fn read(&self, st: &mut State, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let class = super::pool::size_class(bytes);
        let rb = match st.readbacks.get_mut(&class).and_then(Vec::pop) {
            Some(b) => b,
            None => self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distill readback"),
                size: class,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        };
        self.encoder(st)
            .copy_buffer_to_buffer(src, 0, &rb, 0, bytes);
        self.submit(st)?;
        let data = self.map_read(&rb, bytes)?;
        st.readbacks.entry(class).or_default().push(rb);
        Ok(data)
    }

    fn map_read(&self, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let done: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>> =
            Arc::new(Mutex::new(None));
        let d = done.clone();
        buf.map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
            *d.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        });
        self.wait()?;
        let status = done.lock().unwrap_or_else(|e| e.into_inner()).take();
        match status {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                return Err(Error::Device(format!(
                    "{}: reading a buffer back failed: {e}",
                    self.ctx.label
                )))
            }
            None => {
                return Err(Error::Device(format!(
                    "{}: the GPU did not finish a read-back",
                    self.ctx.label
                )))
            }
        }
        let data = {
            let view = buf.get_mapped_range(0..bytes).map_err(|e| {
                Error::Device(format!(
                    "{}: mapping a read-back failed: {e:?}",
                    self.ctx.label
                ))
            })?;
            view.to_vec()
        };
        buf.unmap();
        Ok(data)
    }

    // --- profiling ---------------------------------------------------------------------------

    pub fn can_profile(&self) -> bool {
        self.ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

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
        let d = &self.ctx.device;
        let bytes = 16 * PROFILE_SLOTS as u64;
        st.profiler = Some(Profiler {
            queries: d.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("distill timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * PROFILE_SLOTS,
            }),
            resolve: d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distill timestamps resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: d.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distill timestamps readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            names: Vec::new(),
            totals: HashMap::new(),
        });
        Ok(true)
    }

    fn collect_profile(&self, st: &mut State) -> Result<()> {
        let Some(p) = st.profiler.as_mut() else {
            return Ok(());
        };
        let n = p.names.len();
        let bytes = self.map_read(&p.readback, 16 * n as u64)?;
        let period = self.ctx.queue.get_timestamp_period() as f64;
        for (i, name) in p.names.drain(..).enumerate() {
            let t = |k: usize| {
                let o = 8 * k;
                u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"))
            };
            let (t0, t1) = (t(2 * i), t(2 * i + 1));
            let ms = t1.saturating_sub(t0) as f64 * period / 1e6;
            let e = p.totals.entry(name).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += ms;
        }
        Ok(())
    }

    pub fn profile_report(&self, st: &State) -> Vec<(String, u64, f64)> {
        let mut v: Vec<_> = st
            .profiler
            .iter()
            .flat_map(|p| p.totals.iter())
            .map(|(k, (c, ms))| (k.to_string(), *c, *ms))
            .collect();
        v.sort_by(|a, b| b.2.total_cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        v
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
