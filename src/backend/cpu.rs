//! The CPU backend: each [`Backend`] method locks its buffers and calls the matching
//! `distill-kernels` function. Work runs immediately on the calling thread + rayon's pool.
//!
//! Buffers come from a pool keyed by length, as on the GPU: a training step asks for the
//! same sizes every time, so after the first step it allocates nothing. Without the pool,
//! activations larger than the allocator's mmap threshold (glibc: 32 MiB at most, e.g. the
//! teacher's first conv output at batch 256) were mapped, faulted in page by page and
//! unmapped on every op, which halved training throughput.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use distill_kernels as k;
use distill_kernels::{Bias, Epilogue};

use super::*;
use crate::Error;

/// Free host buffers by length, bounded so an idle pool cannot hoard memory. It also counts
/// the bytes of the pooled buffers that storage holds ([`CpuPool::memory`]).
#[derive(Default)]
pub struct CpuPool {
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    free: HashMap<usize, Vec<Vec<f32>>>,
    cached_bytes: usize,
    /// Bytes of the pooled buffers held by live [`CpuStorage`].
    in_use_bytes: usize,
    fresh_allocations: u64,
}

impl CpuPool {
    /// The most bytes of free buffers kept for reuse.
    pub const MAX_CACHED_BYTES: usize = 2 << 30;

    fn take(&self, len: usize) -> Option<Vec<f32>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let v = st.free.get_mut(&len)?.pop()?;
        st.cached_bytes -= len * 4;
        Some(v)
    }

    /// A buffer of live storage was dropped: keep it for reuse, or free it.
    fn give(&self, v: Vec<f32>) {
        let bytes = v.len() * 4;
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.in_use_bytes -= bytes;
        if bytes == 0 || st.cached_bytes + bytes > Self::MAX_CACHED_BYTES {
            return; // dropped: freed to the allocator
        }
        st.cached_bytes += bytes;
        st.free.entry(v.len()).or_default().push(v);
    }

    /// Buffers allocated because the pool had none of the size asked for (a steady-state
    /// training loop stops adding to it after its first step).
    pub fn fresh_allocations(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fresh_allocations
    }

    /// Bytes in use by storage and parked for reuse, and fresh allocations so far.
    pub fn memory(&self) -> MemoryStats {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        MemoryStats {
            in_use_bytes: st.in_use_bytes as u64,
            idle_bytes: st.cached_bytes as u64,
            fresh_allocations: st.fresh_allocations,
        }
    }
}

/// A host buffer of 32-bit words (u32 data is stored bit-for-bit in the f32 vector). Goes
/// back to its pool when dropped.
pub struct CpuStorage {
    data: RwLock<Vec<f32>>,
    pool: Option<Arc<CpuPool>>,
}

impl Drop for CpuStorage {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            let v = std::mem::take(self.data.get_mut().unwrap_or_else(|e| e.into_inner()));
            pool.give(v);
        }
    }
}

impl CpuStorage {
    /// A buffer that owns `data` and belongs to no pool.
    pub fn new(data: Vec<f32>) -> Self {
        CpuStorage {
            data: RwLock::new(data),
            pool: None,
        }
    }
    pub fn len(&self) -> usize {
        self.read().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn read(&self) -> RwLockReadGuard<'_, Vec<f32>> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Vec<f32>> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The CPU backend: every kernel runs at this device's SIMD level, so two CPU devices in one
/// process can run different levels (a benchmark's A/B, a test of every path).
pub struct CpuBackend {
    level: k::SimdLevel,
    pool: Arc<CpuPool>,
}

impl CpuBackend {
    /// At the process's level ([`k::simd::level`]: the best the CPU runs, or `DISTILL_CPU`).
    pub fn new() -> Self {
        CpuBackend::at(k::simd::level())
    }

    /// At `level`, which the caller has checked the CPU runs ([`k::SimdLevel::is_supported`]).
    fn at(level: k::SimdLevel) -> Self {
        CpuBackend {
            level,
            pool: Arc::default(),
        }
    }

    /// A backend at `level`, or why this CPU cannot run it.
    pub fn with_level(level: k::SimdLevel) -> Result<Self> {
        if !level.is_supported() {
            let runs: Vec<&str> = k::simd::available().iter().map(|l| l.name()).collect();
            return Err(Error::InvalidArgument(format!(
                "this CPU cannot run the {} SIMD level (it runs: {})",
                level.name(),
                runs.join(", ")
            )));
        }
        Ok(CpuBackend::at(level))
    }

    /// The SIMD level its kernels run at.
    pub fn level(&self) -> k::SimdLevel {
        self.level
    }

    pub fn pool(&self) -> &CpuPool {
        &self.pool
    }

    /// A pooled buffer of `len` words; its contents are whatever the last user left, so
    /// callers overwrite all of it.
    fn buffer(&self, len: usize) -> Result<Vec<f32>> {
        if let Some(v) = self.pool.take(len) {
            return Ok(v);
        }
        self.pool
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fresh_allocations += 1;
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|_| Error::OutOfMemory {
            device: self.name(),
            detail: format!("could not allocate {} bytes", len * 4),
        })?;
        v.resize(len, 0.0);
        Ok(v)
    }

    /// Wraps a buffer from [`Self::buffer`]; it goes back to the pool when the storage drops.
    fn storage(&self, data: Vec<f32>) -> Storage {
        self.pool
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_use_bytes += data.len() * 4;
        Storage::Cpu(CpuStorage {
            data: RwLock::new(data),
            pool: Some(self.pool.clone()),
        })
    }
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

fn cpu(s: &Storage) -> Result<&CpuStorage> {
    match s {
        Storage::Cpu(c) => Ok(c),
        Storage::Gpu(_) => Err(Error::Device(
            "a GPU tensor was passed to the CPU backend".into(),
        )),
    }
}

fn r(s: &Storage) -> Result<RwLockReadGuard<'_, Vec<f32>>> {
    Ok(cpu(s)?.read())
}

fn w(s: &Storage) -> Result<RwLockWriteGuard<'_, Vec<f32>>> {
    Ok(cpu(s)?.write())
}

fn as_u32(v: &[f32]) -> &[u32] {
    // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u32, v.len()) }
}

fn as_u32_mut(v: &mut [f32]) -> &mut [u32] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u32, v.len()) }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        let threads = rayon::current_num_threads();
        let plural = if threads == 1 { "" } else { "s" };
        format!("cpu ({}, {threads} thread{plural})", self.level.name())
    }
    fn kind(&self) -> DeviceKind {
        DeviceKind::Cpu
    }

    fn zeros(&self, len: usize) -> Result<Storage> {
        let mut v = self.buffer(len)?;
        k::elementwise::fill(&mut v, 0.0);
        Ok(self.storage(v))
    }
    fn output(&self, len: usize) -> Result<Storage> {
        let mut v = self.buffer(len)?;
        if cfg!(debug_assertions) {
            k::elementwise::fill(&mut v, f32::NAN);
        }
        Ok(self.storage(v))
    }
    fn upload_f32(&self, data: &[f32]) -> Result<Storage> {
        let mut v = self.buffer(data.len())?;
        v.copy_from_slice(data);
        Ok(self.storage(v))
    }
    fn upload_u32(&self, data: &[u32]) -> Result<Storage> {
        let mut v = self.buffer(data.len())?;
        for (d, &u) in v.iter_mut().zip(data) {
            *d = f32::from_bits(u);
        }
        Ok(self.storage(v))
    }
    fn read_f32<'a>(&'a self, src: &'a Storage) -> ReadBack<'a, Vec<f32>> {
        Box::pin(std::future::ready(r(src).map(|v| v.clone())))
    }
    fn read_u32<'a>(&'a self, src: &'a Storage) -> ReadBack<'a, Vec<u32>> {
        Box::pin(std::future::ready(r(src).map(|v| as_u32(&v).to_vec())))
    }
    fn copy(&self, src: &Storage, dst: &Storage) -> Result<()> {
        let s = r(src)?.clone();
        w(dst)?.copy_from_slice(&s);
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    fn fresh_allocations(&self) -> u64 {
        self.pool.fresh_allocations()
    }
    fn memory(&self) -> MemoryStats {
        self.pool.memory()
    }

    fn gemm(
        &self,
        sh: GemmShape,
        a: &Storage,
        b: &Storage,
        c: &Storage,
        bias: GemmBias,
        accumulate: bool,
        relu: bool,
    ) -> Result<()> {
        let (a, b) = (r(a)?, r(b)?);
        let bias_guard = match bias {
            GemmBias::None => None,
            GemmBias::PerRow(s) | GemmBias::PerCol(s) => Some(r(s)?),
        };
        let bias = match (bias, &bias_guard) {
            (GemmBias::PerRow(_), Some(g)) => Bias::PerRow(&g[..]),
            (GemmBias::PerCol(_), Some(g)) => Bias::PerCol(&g[..]),
            _ => Bias::None,
        };
        let mut c = w(c)?;
        k::gemm::gemm_at(
            self.level,
            sh,
            &a,
            &b,
            &mut c,
            Epilogue {
                accumulate,
                bias,
                relu,
            },
        );
        Ok(())
    }

    fn conv2d_forward(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        wt: &Storage,
        bias: Option<&Storage>,
        y: &Storage,
    ) -> Result<()> {
        let bias = bias.map(r).transpose()?;
        k::conv::conv2d_forward_at(
            self.level,
            s,
            &r(x)?,
            &r(wt)?,
            bias.as_deref().map(|v| &v[..]),
            &mut w(y)?,
        );
        Ok(())
    }
    fn conv2d_backward_input(
        &self,
        s: &Conv2dShape,
        wt: &Storage,
        dy: &Storage,
        dx: &Storage,
    ) -> Result<()> {
        k::conv::conv2d_backward_input_at(self.level, s, &r(wt)?, &r(dy)?, &mut w(dx)?);
        Ok(())
    }
    fn conv2d_backward_weight(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        dy: &Storage,
        dw: &Storage,
    ) -> Result<()> {
        k::conv::conv2d_backward_weight_at(self.level, s, &r(x)?, &r(dy)?, &mut w(dw)?);
        Ok(())
    }
    fn conv2d_backward_bias(&self, s: &Conv2dShape, dy: &Storage, db: &Storage) -> Result<()> {
        k::conv::conv2d_backward_bias(s, &r(dy)?, &mut w(db)?);
        Ok(())
    }

    fn conv2d_pool_forward(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        wt: &Storage,
        bias: Option<&Storage>,
        relu: bool,
        y: &Storage,
        argmax: &Storage,
    ) -> Result<()> {
        if !k::conv::conv2d_pool_fuses(self.level, s) {
            return conv2d_pool_forward_composed(self, s, x, wt, bias, relu, y, argmax);
        }
        let bias = bias.map(r).transpose()?;
        k::conv::conv2d_pool_forward_at(
            self.level,
            s,
            &r(x)?,
            &r(wt)?,
            bias.as_deref().map(|b| b.as_slice()),
            relu,
            &mut w(y)?,
            as_u32_mut(&mut w(argmax)?),
        );
        Ok(())
    }

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
        if !k::conv::conv2d_pool_fuses(self.level, s) {
            return conv2d_pool_backward_params_composed(self, s, x, dy, argmax, relu_y, dw, db);
        }
        let relu_y = relu_y.map(r).transpose()?;
        let mut db = db.map(w).transpose()?;
        k::conv::conv2d_pool_backward_params_at(
            self.level,
            s,
            &r(x)?,
            &r(dy)?,
            as_u32(&r(argmax)?),
            relu_y.as_deref().map(|y| y.as_slice()),
            &mut w(dw)?,
            db.as_deref_mut().map(|d| d.as_mut_slice()),
        );
        Ok(())
    }

    fn max_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &Storage,
        y: &Storage,
        argmax: &Storage,
    ) -> Result<()> {
        k::pool::max_pool2d_forward_at(
            self.level,
            s,
            &r(x)?,
            &mut w(y)?,
            as_u32_mut(&mut w(argmax)?),
        );
        Ok(())
    }
    fn max_pool2d_backward(
        &self,
        s: &Pool2dShape,
        dy: &Storage,
        argmax: &Storage,
        dx: &Storage,
    ) -> Result<()> {
        k::pool::max_pool2d_backward_at(self.level, s, &r(dy)?, as_u32(&r(argmax)?), &mut w(dx)?);
        Ok(())
    }

    fn relu(&self, x: &Storage, y: &Storage) -> Result<()> {
        k::elementwise::relu_at(self.level, &r(x)?, &mut w(y)?);
        Ok(())
    }
    fn relu_backward(&self, x: &Storage, dy: &Storage, dx: &Storage) -> Result<()> {
        k::elementwise::relu_backward_at(self.level, &r(x)?, &r(dy)?, &mut w(dx)?);
        Ok(())
    }
    fn add(&self, a: &Storage, b: &Storage, y: &Storage) -> Result<()> {
        k::elementwise::add_at(self.level, &r(a)?, &r(b)?, &mut w(y)?);
        Ok(())
    }
    fn scale(&self, x: &Storage, s: f32, y: &Storage) -> Result<()> {
        k::elementwise::scale_at(self.level, &r(x)?, s, &mut w(y)?);
        Ok(())
    }
    fn scale_by(&self, x: &Storage, s: &Storage, y: &Storage) -> Result<()> {
        let s = r(s)?[0];
        k::elementwise::scale_at(self.level, &r(x)?, s, &mut w(y)?);
        Ok(())
    }
    fn axpy(&self, alpha: f32, x: &Storage, y: &Storage) -> Result<()> {
        k::elementwise::axpy_at(self.level, alpha, &r(x)?, &mut w(y)?);
        Ok(())
    }
    fn fill(&self, y: &Storage, value: f32) -> Result<()> {
        k::elementwise::fill(&mut w(y)?, value);
        Ok(())
    }
    fn sum(&self, x: &Storage, out: &Storage) -> Result<()> {
        let s = k::elementwise::sum(&r(x)?);
        w(out)?[0] = s;
        Ok(())
    }
    fn column_sums(&self, rows: usize, cols: usize, x: &Storage, out: &Storage) -> Result<()> {
        k::elementwise::column_sums(rows, cols, &r(x)?, &mut w(out)?);
        Ok(())
    }

    fn softmax(&self, rows: usize, cols: usize, x: &Storage, t: f32, y: &Storage) -> Result<()> {
        k::softmax::softmax_at(self.level, rows, cols, &r(x)?, t, &mut w(y)?);
        Ok(())
    }
    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        y: &Storage,
        dy: &Storage,
        t: f32,
        dx: &Storage,
    ) -> Result<()> {
        k::softmax::softmax_backward_at(self.level, rows, cols, &r(y)?, &r(dy)?, t, &mut w(dx)?);
        Ok(())
    }
    fn log_softmax(
        &self,
        rows: usize,
        cols: usize,
        x: &Storage,
        t: f32,
        y: &Storage,
    ) -> Result<()> {
        k::softmax::log_softmax_at(self.level, rows, cols, &r(x)?, t, &mut w(y)?);
        Ok(())
    }
    fn log_softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        y: &Storage,
        dy: &Storage,
        t: f32,
        dx: &Storage,
    ) -> Result<()> {
        k::softmax::log_softmax_backward_at(
            self.level,
            rows,
            cols,
            &r(y)?,
            &r(dy)?,
            t,
            &mut w(dx)?,
        );
        Ok(())
    }
    fn cross_entropy(
        &self,
        rows: usize,
        cols: usize,
        logits: &Storage,
        labels: &Storage,
        loss: &Storage,
        grad: Option<&Storage>,
    ) -> Result<()> {
        let labels = r(labels)?;
        let mut grad = grad.map(w).transpose()?;
        let l = k::softmax::cross_entropy(
            rows,
            cols,
            &r(logits)?,
            as_u32(&labels),
            grad.as_deref_mut().map(|g| &mut g[..]),
        );
        w(loss)?[0] = l;
        Ok(())
    }
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
    ) -> Result<()> {
        let labels = r(labels)?;
        let mut grad = grad.map(w).transpose()?;
        let l = k::softmax::kd_loss(
            rows,
            cols,
            &r(student)?,
            &r(teacher)?,
            as_u32(&labels),
            temperature,
            alpha,
            grad.as_deref_mut().map(|g| &mut g[..]),
        );
        w(loss)?[0] = l;
        Ok(())
    }
    fn count_correct(
        &self,
        rows: usize,
        cols: usize,
        logits: &Storage,
        labels: &Storage,
        out: &Storage,
    ) -> Result<()> {
        let n = k::softmax::count_correct(rows, cols, &r(logits)?, as_u32(&r(labels)?));
        let mut o = w(out)?;
        let cur = o[0].to_bits();
        o[0] = f32::from_bits(cur + n);
        Ok(())
    }

    fn mse_loss(
        &self,
        len: usize,
        a: &Storage,
        b: &Storage,
        loss: &Storage,
        grad: Option<&Storage>,
    ) -> Result<()> {
        let (a, b) = (r(a)?, r(b)?);
        let mut grad = grad.map(w).transpose()?;
        let l = k::mse::mse_loss_at(
            self.level,
            &a[..len],
            &b[..len],
            grad.as_deref_mut().map(|g| &mut g[..len]),
        );
        w(loss)?[0] = l;
        Ok(())
    }
    fn sgd_step(
        &self,
        cfg: &SgdConfig,
        first_step: bool,
        param: &Storage,
        grad: &Storage,
        momentum: &Storage,
    ) -> Result<()> {
        k::optim::sgd_step_at(
            self.level,
            cfg,
            first_step,
            &mut w(param)?,
            &r(grad)?,
            &mut w(momentum)?,
        );
        Ok(())
    }
    fn adam_step(
        &self,
        cfg: &AdamConfig,
        step: u32,
        param: &Storage,
        grad: &Storage,
        m: &Storage,
        v: &Storage,
    ) -> Result<()> {
        k::optim::adam_step_at(
            self.level,
            cfg,
            step,
            &mut w(param)?,
            &r(grad)?,
            &mut w(m)?,
            &mut w(v)?,
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    /// Two CPU devices at different levels in one process: each names its level, each runs
    /// its own kernels, and they agree (softmax rows long enough for every vector width).
    #[test]
    fn devices_at_two_levels_side_by_side() {
        let best = k::simd::detect();
        let (scalar, wide) = (
            Device::cpu_at(k::SimdLevel::Scalar).unwrap(),
            Device::cpu_at(best).unwrap(),
        );
        assert!(scalar.name().contains("scalar"), "{}", scalar.name());
        assert!(wide.name().contains(best.name()), "{}", wide.name());
        let (rows, cols) = (3, 37);
        let x: Vec<f32> = (0..rows * cols)
            .map(|i| (i as f32 * 0.37).sin() * 4.0)
            .collect();
        let run = |d: &Device| {
            let be = d.backend();
            let (xs, ys) = (be.upload_f32(&x).unwrap(), be.zeros(rows * cols).unwrap());
            be.softmax(rows, cols, &xs, 2.0, &ys).unwrap();
            be.download_f32(&ys).unwrap()
        };
        for (a, b) in run(&scalar).iter().zip(run(&wide)) {
            assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
        }
    }

    #[test]
    fn a_level_the_cpu_lacks_is_an_error_naming_what_it_runs() {
        let missing = [k::SimdLevel::Neon, k::SimdLevel::Avx2Fma]
            .into_iter()
            .find(|l| !l.is_supported())
            .expect("no CPU runs both NEON and AVX2");
        let Err(e) = Device::cpu_at(missing) else {
            panic!("{} was not refused", missing.name())
        };
        let msg = e.to_string();
        assert!(
            msg.contains("cannot run") && msg.contains("scalar"),
            "{msg}"
        );
    }
}
