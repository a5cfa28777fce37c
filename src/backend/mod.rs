//! The kernel seam: every kernel the engine needs, written down once as the [`Backend`] trait.
//!
//! This trait is the table of contents of the kernels. The CPU backend ([`cpu`]) implements it
//! by calling `distill-kernels`; the GPU backend ([`gpu`]) by encoding WGSL compute dispatches.
//! Ops in `src/ops/` only ever talk to this trait, so they never know which device runs them.
//!
//! Memory is a [`Storage`]: a device buffer of 32-bit words. Most tensors hold f32; labels
//! and pooling arg-max indices hold u32 in the same kind of buffer.
//!
//! Contracts every implementation keeps:
//! - outputs are written in full (overwrite) unless the method says it accumulates;
//! - an output buffer is never also an input of the same call (the CPU backend locks them);
//! - shapes have been validated by the caller (the ops); a backend may still return an error
//!   (out of memory, device lost) but never panics on a valid call;
//! - work may be queued: results become visible to the host only through `download*`,
//!   which waits for everything queued before it.

pub mod cpu;
pub mod gpu;
#[cfg(not(target_arch = "wasm32"))]
pub mod inventory;

use std::fmt;
use std::sync::Arc;

pub use distill_kernels::conv::pool_after;
pub use distill_kernels::optim::{AdamConfig, SgdConfig};
pub use distill_kernels::{Conv2dShape, Pool2dShape, Trans};

use crate::Result;

/// A device buffer of `len` 32-bit words.
pub enum Storage {
    Cpu(cpu::CpuStorage),
    Gpu(gpu::GpuStorage),
}

impl Storage {
    /// Length in 32-bit words.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Gpu(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::Cpu(s) => write!(f, "Storage::Cpu(len {})", s.len()),
            Storage::Gpu(s) => write!(f, "Storage::Gpu(len {})", s.len()),
        }
    }
}

/// Bias operand of [`Backend::gemm`].
#[derive(Clone, Copy, Debug)]
pub enum GemmBias<'a> {
    None,
    /// Length m, added to each row.
    PerRow(&'a Storage),
    /// Length n, added to each column.
    PerCol(&'a Storage),
}

pub use distill_kernels::GemmShape;

/// The full-size conv output (or its gradient) the composed conv + pool holds for a moment;
/// a refusal names its shape as a tensor's would.
fn conv_output_buffer<B: Backend + ?Sized>(be: &B, s: &Conv2dShape) -> Result<Storage> {
    let shape = [s.batch, s.out_channels, s.out_h(), s.out_w()];
    be.output(s.output_len())
        .map_err(|e| e.allocating(&format!("a tensor of shape {shape:?} (f32)")))
}

/// [`Backend::conv2d_pool_forward`] as conv2d, max_pool2d (and relu), through a full-size
/// buffer (and a pooled one).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_forward_composed<B: Backend + ?Sized>(
    be: &B,
    s: &Conv2dShape,
    x: &Storage,
    w: &Storage,
    bias: Option<&Storage>,
    relu: bool,
    y: &Storage,
    argmax: &Storage,
) -> Result<()> {
    let ps = pool_after(s);
    let full = conv_output_buffer(be, s)?;
    be.conv2d_forward(s, x, w, bias, &full)?;
    if !relu {
        return be.max_pool2d_forward(&ps, &full, y, argmax);
    }
    let pooled = be.output(ps.output_len())?;
    be.max_pool2d_forward(&ps, &full, &pooled, argmax)?;
    be.relu(&pooled, y)
}

/// [`Backend::conv2d_pool_backward_params`] as the ReLU's backward (where it rectified), the
/// pool's backward into a full-size buffer, then the conv's weight and bias gradients.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_pool_backward_params_composed<B: Backend + ?Sized>(
    be: &B,
    s: &Conv2dShape,
    x: &Storage,
    dy: &Storage,
    argmax: &Storage,
    relu_y: Option<&Storage>,
    dw: &Storage,
    db: Option<&Storage>,
) -> Result<()> {
    let ps = pool_after(s);
    let masked;
    let dy = match relu_y {
        Some(y) => {
            masked = be.output(ps.output_len())?;
            be.relu_backward(y, dy, &masked)?;
            &masked
        }
        None => dy,
    };
    let full = conv_output_buffer(be, s)?;
    be.max_pool2d_backward(&ps, dy, argmax, &full)?;
    be.conv2d_backward_weight(s, x, &full, dw)?;
    if let Some(db) = db {
        be.conv2d_backward_bias(s, &full, db)?;
    }
    Ok(())
}

/// GPU time of one kernel, summed over its dispatches since profiling was turned on
/// ([`Backend::kernel_times`]).
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's name, e.g. `matmul_nt` or `conv2d_backward_weight`.
    pub name: String,
    /// Dispatches timed.
    pub calls: u64,
    /// Their total time in milliseconds.
    pub total_ms: f64,
}

/// What a backend's buffers hold right now ([`Backend::memory`]). Only buffers that tensors
/// use are counted: the device's own allocations (pipelines, command buffers, staging buffers
/// of a read-back, the driver) are not.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of the buffers held by live storage (tensors, gradients, optimiser state).
    pub in_use_bytes: u64,
    /// Bytes of free buffers parked in the pool for reuse (on the GPU, including those that
    /// wait for the next submission).
    pub idle_bytes: u64,
    /// Buffers created so far because the pool had none of the size asked for.
    pub fresh_allocations: u64,
}

impl MemoryStats {
    /// Everything the pool accounts for: `in_use_bytes + idle_bytes`. Flat from one epoch to
    /// the next in a training loop that leaks nothing.
    pub fn live_bytes(&self) -> u64 {
        self.in_use_bytes + self.idle_bytes
    }
}

/// A read-back in flight ([`Backend::read_f32`]): resolves to the buffer's contents.
pub type ReadBack<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>;

/// What kind of device a backend drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    Cpu,
    DiscreteGpu,
    IntegratedGpu,
    /// A software rasteriser such as lavapipe.
    SoftwareGpu,
    OtherGpu,
}

/// Every kernel of the engine. One method per kernel; `src/ops/` composes them.
#[allow(clippy::too_many_arguments)]
pub trait Backend: Send + Sync {
    /// Human-readable device name, e.g. `cpu (avx2+fma, 2 threads)` or `NVIDIA H200 (Vulkan)`.
    fn name(&self) -> String;
    fn kind(&self) -> DeviceKind;
    /// The wgpu backend behind this device, for code that dispatches outside the kernel
    /// table (the bench's peak kernels); `None` on the CPU.
    fn as_gpu(&self) -> Option<&gpu::GpuBackend> {
        None
    }

    // --- memory -----------------------------------------------------------------------------
    /// A zero-filled buffer of `len` words.
    fn zeros(&self, len: usize) -> Result<Storage>;
    /// A buffer of `len` words for an op to overwrite whole (every kernel writes all of its
    /// outputs): its contents are unspecified, so nothing is spent clearing it. The CPU
    /// hands out a pooled buffer as it is, NaN-filled in debug builds so that a kernel that
    /// leaves an element unwritten fails its tests. Zero-filled by default.
    fn output(&self, len: usize) -> Result<Storage> {
        self.zeros(len)
    }
    fn upload_f32(&self, data: &[f32]) -> Result<Storage>;
    fn upload_u32(&self, data: &[u32]) -> Result<Storage>;
    /// Reads the whole buffer once the work queued before it is done: the engine's one
    /// read-back path. A future, because a browser maps a GPU buffer only after the page
    /// yields; on the CPU it is ready at once.
    fn read_f32<'a>(&'a self, src: &'a Storage) -> ReadBack<'a, Vec<f32>>;
    fn read_u32<'a>(&'a self, src: &'a Storage) -> ReadBack<'a, Vec<u32>>;
    /// [`Backend::read_f32`] waited for on this thread (not in a browser, which cannot block).
    #[cfg(not(target_arch = "wasm32"))]
    fn download_f32(&self, src: &Storage) -> Result<Vec<f32>> {
        pollster::block_on(self.read_f32(src))
    }
    /// [`Backend::read_u32`] waited for on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    fn download_u32(&self, src: &Storage) -> Result<Vec<u32>> {
        pollster::block_on(self.read_u32(src))
    }
    /// `dst = src` (same length).
    fn copy(&self, src: &Storage, dst: &Storage) -> Result<()>;
    /// Submit queued work without waiting (a no-op on the CPU).
    fn flush(&self) -> Result<()>;
    /// Buffers created so far because the pool had none of the size asked for; flat across
    /// the steps of a steady-state training loop.
    fn fresh_allocations(&self) -> u64;
    /// Bytes held by the buffers of this backend, in use and idle in its pool; zeros where a
    /// backend does not count them.
    fn memory(&self) -> MemoryStats {
        MemoryStats::default()
    }

    // --- profiling ----------------------------------------------------------------------------
    /// Turns per-kernel timing on or off. Returns whether it is on: false where the device
    /// cannot time kernels (the CPU backend; a GPU without timestamp queries). Turning it off
    /// forgets the times so far. Timing may make the device wait at every flush.
    fn set_profiling(&self, on: bool) -> Result<bool> {
        let _ = on;
        Ok(false)
    }
    /// Time per kernel since profiling was turned on, slowest first; empty when it is off.
    /// Submits queued work first so the report covers everything recorded so far.
    fn kernel_times(&self) -> Result<Vec<KernelTime>> {
        Ok(Vec::new())
    }

    // --- gemm/ / matmul.wgsl -----------------------------------------------------------------
    /// `C = op(A)·op(B) (+ C if accumulate) (+ bias)`, then ReLU if `relu`.
    fn gemm(
        &self,
        shape: GemmShape,
        a: &Storage,
        b: &Storage,
        c: &Storage,
        bias: GemmBias,
        accumulate: bool,
        relu: bool,
    ) -> Result<()>;

    // --- conv/ / conv2d.wgsl -----------------------------------------------------------------
    fn conv2d_forward(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        y: &Storage,
    ) -> Result<()>;
    fn conv2d_backward_input(
        &self,
        s: &Conv2dShape,
        w: &Storage,
        dy: &Storage,
        dx: &Storage,
    ) -> Result<()>;
    fn conv2d_backward_weight(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        dy: &Storage,
        dw: &Storage,
    ) -> Result<()>;
    fn conv2d_backward_bias(&self, s: &Conv2dShape, dy: &Storage, db: &Storage) -> Result<()>;

    // --- conv/pooled.rs / conv2d.wgsl then pool.wgsl -------------------------------------------
    /// `y = max_pool2d(conv2d(x, w, bias))` over 2×2 windows at stride 2, then ReLU if
    /// `relu`, with the pool's arg-max (indices inside the conv output planes). By default the
    /// kernels one after the other through full-size buffers
    /// ([`conv2d_pool_forward_composed`]); the CPU fuses thin convs.
    #[allow(clippy::too_many_arguments)]
    fn conv2d_pool_forward(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        relu: bool,
        y: &Storage,
        argmax: &Storage,
    ) -> Result<()> {
        conv2d_pool_forward_composed(self, s, x, w, bias, relu, y, argmax)
    }
    /// The weight gradient and, given `db`, the bias gradient of [`Self::conv2d_pool_forward`]
    /// from `dy`, the gradient of its output; `relu_y`: that output, where it rectified. By
    /// default the ReLU's and the pool's backward at full size, then the conv's kernels
    /// ([`conv2d_pool_backward_params_composed`]).
    #[allow(clippy::too_many_arguments)]
    fn conv2d_pool_backward_params(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        dy: &Storage,
        argmax: &Storage,
        relu_y: Option<&Storage>,
        dw: &Storage,
        db: Option<&Storage>,
    ) -> Result<()> {
        conv2d_pool_backward_params_composed(self, s, x, dy, argmax, relu_y, dw, db)
    }

    // --- pool.rs / pool.wgsl ------------------------------------------------------------------
    /// `argmax` (u32) gets the winner's index inside its input plane.
    fn max_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &Storage,
        y: &Storage,
        argmax: &Storage,
    ) -> Result<()>;
    fn max_pool2d_backward(
        &self,
        s: &Pool2dShape,
        dy: &Storage,
        argmax: &Storage,
        dx: &Storage,
    ) -> Result<()>;

    // --- elementwise.rs / elementwise.wgsl, reduce.wgsl ---------------------------------------
    fn relu(&self, x: &Storage, y: &Storage) -> Result<()>;
    fn relu_backward(&self, x: &Storage, dy: &Storage, dx: &Storage) -> Result<()>;
    fn add(&self, a: &Storage, b: &Storage, y: &Storage) -> Result<()>;
    fn scale(&self, x: &Storage, s: f32, y: &Storage) -> Result<()>;
    /// `y = x · s[0]` where `s` is a one-element device buffer (an upstream scalar gradient).
    fn scale_by(&self, x: &Storage, s: &Storage, y: &Storage) -> Result<()>;
    /// `y += alpha · x` (gradient accumulation).
    fn axpy(&self, alpha: f32, x: &Storage, y: &Storage) -> Result<()>;
    fn fill(&self, y: &Storage, value: f32) -> Result<()>;
    /// `out[0] = Σ x`, deterministic.
    fn sum(&self, x: &Storage, out: &Storage) -> Result<()>;
    /// `out[j] = Σ_i x[i, j]` over a rows × cols matrix.
    fn column_sums(&self, rows: usize, cols: usize, x: &Storage, out: &Storage) -> Result<()>;

    // --- softmax/ / softmax.wgsl -------------------------------------------------------------
    fn softmax(
        &self,
        rows: usize,
        cols: usize,
        x: &Storage,
        temperature: f32,
        y: &Storage,
    ) -> Result<()>;
    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        y: &Storage,
        dy: &Storage,
        temperature: f32,
        dx: &Storage,
    ) -> Result<()>;
    fn log_softmax(
        &self,
        rows: usize,
        cols: usize,
        x: &Storage,
        temperature: f32,
        y: &Storage,
    ) -> Result<()>;
    fn log_softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        y: &Storage,
        dy: &Storage,
        temperature: f32,
        dx: &Storage,
    ) -> Result<()>;
    /// `loss[0]` = mean cross-entropy; `grad` (if any) = ∂loss/∂logits.
    fn cross_entropy(
        &self,
        rows: usize,
        cols: usize,
        logits: &Storage,
        labels: &Storage,
        loss: &Storage,
        grad: Option<&Storage>,
    ) -> Result<()>;
    /// `loss[0]` = Hinton KD loss; `grad` (if any) = ∂loss/∂student.
    fn kd_loss(
        &self,
        rows: usize,
        cols: usize,
        student: &Storage,
        teacher: &Storage,
        labels: &Storage,
        temperature: f32,
        alpha: f32,
        loss: &Storage,
        grad: Option<&Storage>,
    ) -> Result<()>;
    /// `out[0]` (u32) += number of rows whose arg-max equals the label.
    fn count_correct(
        &self,
        rows: usize,
        cols: usize,
        logits: &Storage,
        labels: &Storage,
        out: &Storage,
    ) -> Result<()>;

    // --- mse.rs / mse.wgsl --------------------------------------------------------------------
    /// `loss[0]` = mean over the `len` elements of `(a − b)²`; `grad` (if any) = ∂loss/∂a
    /// = `2(a − b)/len` (∂loss/∂b is its negative).
    fn mse_loss(
        &self,
        len: usize,
        a: &Storage,
        b: &Storage,
        loss: &Storage,
        grad: Option<&Storage>,
    ) -> Result<()>;

    // --- optim.rs / optim.wgsl ----------------------------------------------------------------
    fn sgd_step(
        &self,
        cfg: &SgdConfig,
        first_step: bool,
        param: &Storage,
        grad: &Storage,
        momentum: &Storage,
    ) -> Result<()>;
    fn adam_step(
        &self,
        cfg: &AdamConfig,
        step: u32,
        param: &Storage,
        grad: &Storage,
        m: &Storage,
        v: &Storage,
    ) -> Result<()>;
}

/// A handle on one backend; cheap to clone. Every tensor holds the device it lives on.
#[derive(Clone)]
pub struct Device(pub Arc<dyn Backend>);

impl Device {
    /// The CPU backend (rayon + SIMD) at the best SIMD level the CPU runs (`DISTILL_CPU`
    /// overrides it); one per process.
    pub fn cpu() -> Device {
        static CPU: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
        CPU.get_or_init(|| Device(Arc::new(cpu::CpuBackend::new())))
            .clone()
    }

    /// A CPU backend whose kernels run at `level` (an error names the levels this CPU runs
    /// instead). Each call opens a device of its own, so devices at two levels can run side by
    /// side in one process.
    pub fn cpu_at(level: distill_kernels::SimdLevel) -> Result<Device> {
        Ok(Device(Arc::new(cpu::CpuBackend::with_level(level)?)))
    }
    pub fn backend(&self) -> &dyn Backend {
        &*self.0
    }
    pub fn name(&self) -> String {
        self.0.name()
    }
    pub fn kind(&self) -> DeviceKind {
        self.0.kind()
    }
    pub fn is_cpu(&self) -> bool {
        self.kind() == DeviceKind::Cpu
    }
    /// Whether tensors of the two devices can meet in one op: the same backend instance
    /// (two GPU devices never share buffers).
    pub fn same(&self, other: &Device) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name())
    }
}

/// A device as a user names it: `auto`, `cpu`, `gpu` or `gpu:N`. [`Device::from_spec`]
/// parses and opens one; parse alone to validate a spec without opening anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceSpec {
    /// A hardware GPU when there is one, otherwise the CPU backend. A software Vulkan device
    /// (lavapipe) runs our kernels far slower than the CPU backend does on the same cores,
    /// so `auto` never picks one.
    Auto,
    /// The CPU backend.
    Cpu,
    /// The best adapter: a discrete GPU, then an integrated one, then a software one.
    Gpu,
    /// The N-th adapter of [`gpu::list_adapters`] (the order of `distill devices`).
    GpuIndex(usize),
}

impl DeviceSpec {
    /// Parses `auto`, `cpu`, `gpu` or `gpu:N` (surrounding spaces ignored).
    pub fn parse(spec: &str) -> Result<DeviceSpec> {
        match spec.trim() {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "gpu" => Ok(DeviceSpec::Gpu),
            other => match other.strip_prefix("gpu:").map(str::parse::<usize>) {
                Some(Ok(index)) => Ok(DeviceSpec::GpuIndex(index)),
                _ => Err(crate::Error::Device(format!(
                    "unknown device '{other}': expected auto, cpu, gpu or gpu:N (see `distill devices`)"
                ))),
            },
        }
    }

    /// Opens the device with the default options. An adapter that cannot be opened is an
    /// error naming the spec, except under `auto`, which then falls back to the CPU backend.
    /// (A page opens its device with `web::device::open_engine`, which waits for the
    /// browser.)
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(self) -> Result<Device> {
        self.open_with(&DeviceOptions::default())
    }

    /// [`DeviceSpec::open`] with `options`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open_with(self, options: &DeviceOptions) -> Result<Device> {
        let tiles = &options.tiles;
        match self {
            DeviceSpec::Cpu => options.cpu(),
            DeviceSpec::Auto => match gpu::open_best_hardware(tiles) {
                Ok(Some(d)) => Ok(d),
                Ok(None) | Err(_) => options.cpu(),
            },
            DeviceSpec::Gpu => {
                gpu::open_best_with(tiles).map_err(|e| opening("a GPU (device `gpu`)", e))
            }
            DeviceSpec::GpuIndex(i) => {
                gpu::open_index_with(i, tiles).map_err(|e| opening(&format!("device `gpu:{i}`"), e))
            }
        }
    }
}

/// How a device is built as it opens. Each device keeps its own: two devices of one process
/// may differ.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceOptions {
    /// A GPU device's GEMM tile shapes: autotuned and cached (the default), the defaults, or
    /// fixed ones. The CPU backend ignores it.
    pub tiles: gpu::TilePolicy,
    /// The CPU backend's SIMD level; `None`: the process's ([`distill_kernels::simd::level`],
    /// the widest the CPU runs unless `DISTILL_CPU` says otherwise). GPU devices ignore it.
    pub simd: Option<distill_kernels::SimdLevel>,
}

impl DeviceOptions {
    /// The CPU backend these options ask for.
    pub fn cpu(&self) -> Result<Device> {
        match self.simd {
            Some(level) => Device::cpu_at(level),
            None => Ok(Device::cpu()),
        }
    }
}

/// A device error while opening `what`, saying so (other errors pass through unchanged).
#[cfg(not(target_arch = "wasm32"))]
fn opening(what: &str, e: crate::Error) -> crate::Error {
    match e {
        crate::Error::Device(msg) => crate::Error::Device(format!("cannot open {what}: {msg}")),
        other => other,
    }
}

impl std::str::FromStr for DeviceSpec {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<DeviceSpec> {
        DeviceSpec::parse(s)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Gpu => f.write_str("gpu"),
            DeviceSpec::GpuIndex(i) => write!(f, "gpu:{i}"),
        }
    }
}

impl Device {
    /// Opens a device from a user's spec: `auto`, `cpu`, `gpu` (the best adapter) or `gpu:N`
    /// (the N-th adapter of `distill devices`); see [`DeviceSpec`]. `auto` takes a hardware
    /// GPU when there is one and otherwise the CPU backend; it never picks a software adapter.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_spec(spec: &str) -> Result<Device> {
        DeviceSpec::parse(spec)?.open()
    }

    /// [`Device::from_spec`] with `options` (for a GPU: how its GEMM tiles are chosen).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(spec: &str, options: &DeviceOptions) -> Result<Device> {
        DeviceSpec::parse(spec)?.open_with(options)
    }

    /// [`Backend::set_profiling`]: returns whether this device now times its kernels.
    pub fn set_profiling(&self, on: bool) -> Result<bool> {
        self.0.set_profiling(on)
    }

    /// [`Backend::memory`]: bytes held by this device's buffers, in use and pooled.
    pub fn memory(&self) -> MemoryStats {
        self.0.memory()
    }

    /// [`Backend::kernel_times`]: time per kernel so far, slowest first.
    pub fn kernel_times(&self) -> Result<Vec<KernelTime>> {
        self.0.kernel_times()
    }
}
