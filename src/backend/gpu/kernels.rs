//! [`Backend`] on the GPU: each method checks its operands, packs the kernel's parameters and
//! records one or two dispatches (see `shaders/*.wgsl` for what each kernel does).

use super::pipelines::{k, Bind, Kernel};
use super::{GpuBackend, GpuStorage};
use crate::backend::{
    AdamConfig, Backend, Conv2dShape, DeviceKind, GemmBias, GemmShape, Pool2dShape, SgdConfig,
    Storage, Trans,
};
use crate::{Error, Result};

/// Workgroups for a 1-D range on a 2-D grid (x ≤ 65535): shaders flatten `y·nx + x`.
fn grid(groups: usize) -> (u32, u32, u32) {
    const MAX_X: usize = 65_535;
    if groups <= MAX_X {
        (groups as u32, 1, 1)
    } else {
        (MAX_X as u32, groups.div_ceil(MAX_X) as u32, 1)
    }
}

/// Workgroups of a tiled GEMM: column tiles over x (then z past 65535), row tiles over y.
fn tile_grid(m: usize, n: usize, tile: usize) -> (u32, u32, u32) {
    let (tn, tm) = (n.div_ceil(tile), m.div_ceil(tile));
    let x = tn.min(65_535);
    (x as u32, tm as u32, tn.div_ceil(x.max(1)) as u32)
}

fn f(v: f32) -> u32 {
    v.to_bits()
}

fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Device(format!("dimension {v} does not fit in 32 bits")))
}

impl GpuBackend {
    /// The GPU buffer behind `s`, checked to belong to this device and to hold `need` words.
    fn g<'a>(&self, s: &'a Storage, need: usize, what: &str) -> Result<&'a GpuStorage> {
        match s {
            Storage::Gpu(g) if std::sync::Arc::ptr_eq(&g.pool, &self.exec.pool) => {
                if g.len < need {
                    return Err(Error::Shape(format!(
                        "{what}: buffer holds {} values, the kernel needs {need}",
                        g.len
                    )));
                }
                Ok(g)
            }
            Storage::Gpu(_) => Err(Error::Device(format!(
                "{what}: the tensor lives on another GPU device than {}",
                self.exec.ctx.label
            ))),
            Storage::Cpu(_) => Err(Error::Device(format!(
                "{what}: a CPU tensor was passed to the GPU backend ({})",
                self.exec.ctx.label
            ))),
        }
    }

    fn dummy(&self, slot: usize) -> Bind<'_> {
        let d = &self.dummies[slot];
        Bind {
            buf: &d.buf,
            id: d.id,
        }
    }

    fn run(
        &self,
        kernel: &'static Kernel,
        params: &[u32],
        binds: &[Bind],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let mut st = self.exec.lock();
        self.exec.ctx.check()?;
        self.exec.dispatch(&mut st, kernel, params, binds, groups)
    }

    /// A pooled buffer of `len` words (contents undefined). On out-of-memory, submits and
    /// waits, drops the pool's idle buffers and tries once more.
    fn alloc(&self, len: usize) -> Result<GpuStorage> {
        let bytes = (len as u64).max(1) * 4;
        let pool = &self.exec.pool;
        let pb = match pool.acquire(bytes) {
            Ok(b) => b,
            Err(Error::OutOfMemory { .. }) => {
                let mut st = self.exec.lock();
                self.exec.submit(&mut st)?;
                self.exec.wait()?;
                self.exec.clear_bind_groups(&mut st);
                pool.trim();
                drop(st);
                pool.acquire(bytes)?
            }
            Err(e) => return Err(e),
        };
        Ok(GpuStorage {
            buf: Some(pb),
            len,
            pool: pool.clone(),
        })
    }

    fn download(&self, src: &Storage) -> Result<Vec<u8>> {
        let s = self.g(src, 0, "download")?;
        let mut st = self.exec.lock();
        self.exec.ctx.check()?;
        self.exec.read(&mut st, &s.pooled().buf, s.len as u64 * 4)
    }

    fn elementwise(
        &self,
        kernel: &'static Kernel,
        x: Option<&Storage>,
        z: Option<&Storage>,
        y: &Storage,
        s: f32,
    ) -> Result<()> {
        let y = self.g(y, 0, kernel.name)?;
        let n = y.len;
        let x = x.map(|x| self.g(x, n, kernel.name)).transpose()?;
        let z = match z {
            // scale_by reads a single device scalar.
            Some(z) if kernel.name == "scale_by" => Some(self.g(z, 1, kernel.name)?),
            Some(z) => Some(self.g(z, n, kernel.name)?),
            None => None,
        };
        let binds = [
            x.map(bind).unwrap_or(self.dummy(1)),
            z.map(bind).unwrap_or(self.dummy(2)),
            bind(y),
        ];
        self.run(kernel, &[u(n)?, f(s)], &binds, grid(n.div_ceil(256)))
    }

    /// `out[0] = Σ x[..len] / div`, deterministic (reduce.wgsl).
    fn reduce_into(&self, x: &GpuStorage, len: usize, out: &GpuStorage, div: f32) -> Result<()> {
        const CHUNK: usize = 4096;
        let chunks = len.div_ceil(CHUNK);
        if chunks <= 1 && div == 1.0 {
            // One chunk: the partial pass writes the result directly.
            return self.run(
                &k::SUM_PARTIAL,
                &[u(len)?, 0, 0, f(1.0)],
                &[bind(x), bind(out)],
                (1, 1, 1),
            );
        }
        let partials;
        let (src, n) = if chunks <= 1 {
            (x, len)
        } else {
            partials = self.alloc(chunks)?;
            self.run(
                &k::SUM_PARTIAL,
                &[u(len)?, 0, 0, f(1.0)],
                &[bind(x), bind(&partials)],
                grid(chunks),
            )?;
            (&partials, chunks)
        };
        self.run(
            &k::SUM_FINISH,
            &[u(n)?, 0, 0, f(div)],
            &[bind(src), bind(out)],
            (1, 1, 1),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn softmax_family(
        &self,
        kernel: &'static Kernel,
        rows: usize,
        cols: usize,
        in0: &Storage,
        in1: Option<&Storage>,
        labels: Option<&Storage>,
        out: Option<&Storage>,
        row_loss: Option<&GpuStorage>,
        correct: Option<&Storage>,
        t: f32,
        alpha: f32,
    ) -> Result<()> {
        let n = rows * cols;
        let name = kernel.name;
        let in0 = self.g(in0, n, name)?;
        let in1 = in1.map(|s| self.g(s, n, name)).transpose()?;
        let labels = labels.map(|s| self.g(s, rows, name)).transpose()?;
        let out = out.map(|s| self.g(s, n, name)).transpose()?;
        let correct = correct.map(|s| self.g(s, 1, name)).transpose()?;
        let binds = [
            bind(in0),
            in1.map(bind).unwrap_or(self.dummy(2)),
            labels.map(bind).unwrap_or(self.dummy(3)),
            out.map(bind).unwrap_or(self.dummy(4)),
            row_loss.map(bind).unwrap_or(self.dummy(5)),
            correct.map(bind).unwrap_or(self.dummy(6)),
        ];
        let params = [u(rows)?, u(cols)?, f(t), f(alpha), out.is_some() as u32];
        self.run(kernel, &params, &binds, grid(rows))
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        kernel: &'static Kernel,
        s: &Conv2dShape,
        src0: &GpuStorage,
        src1: &GpuStorage,
        dst: &GpuStorage,
        bias: Option<&GpuStorage>,
        (m, n, kk): (usize, usize, usize),
    ) -> Result<()> {
        let params = [
            u(s.batch)?,
            u(s.in_channels)?,
            u(s.in_h)?,
            u(s.in_w)?,
            u(s.out_channels)?,
            u(s.kernel_h)?,
            u(s.kernel_w)?,
            u(s.stride_h)?,
            u(s.stride_w)?,
            u(s.pad_h)?,
            u(s.pad_w)?,
            u(s.out_h())?,
            u(s.out_w())?,
            u(m)?,
            u(n)?,
            u(kk)?,
            bias.is_some() as u32,
        ];
        let binds = [
            bind(src0),
            bind(src1),
            bind(dst),
            bias.map(bind).unwrap_or(self.dummy(4)),
        ];
        let groups = if kernel.name == k::CONV_BGRAD.name {
            grid(s.out_channels)
        } else {
            tile_grid(m, n, 64)
        };
        self.run(kernel, &params, &binds, groups)
    }

    fn pool_params(s: &Pool2dShape) -> Result<[u32; 9]> {
        Ok([
            u(s.batch * s.channels)?,
            u(s.in_h)?,
            u(s.in_w)?,
            u(s.kernel_h)?,
            u(s.kernel_w)?,
            u(s.stride_h)?,
            u(s.stride_w)?,
            u(s.out_h())?,
            u(s.out_w())?,
        ])
    }
}

fn bind(s: &GpuStorage) -> Bind<'_> {
    let b = s.pooled();
    Bind {
        buf: &b.buf,
        id: b.id,
    }
}

impl Backend for GpuBackend {
    fn name(&self) -> String {
        self.exec.ctx.label.clone()
    }
    fn kind(&self) -> DeviceKind {
        self.kind
    }

    fn zeros(&self, len: usize) -> Result<Storage> {
        let s = self.alloc(len)?;
        if len > 0 {
            let mut st = self.exec.lock();
            self.exec.ctx.check()?;
            self.exec
                .encoder(&mut st)
                .clear_buffer(&s.pooled().buf, 0, Some(len as u64 * 4));
        }
        Ok(Storage::Gpu(s))
    }
    fn upload_f32(&self, data: &[f32]) -> Result<Storage> {
        self.upload_u32(bytemuck::cast_slice(data))
    }
    fn upload_u32(&self, data: &[u32]) -> Result<Storage> {
        let s = self.alloc(data.len())?;
        if !data.is_empty() {
            self.exec.ctx.check()?;
            // Safe with pending commands: a buffer fresh from the pool is not used by any
            // command of the pending encoder (see pool.rs), and queue writes run before it.
            self.exec
                .ctx
                .queue
                .write_buffer(&s.pooled().buf, 0, bytemuck::cast_slice(data));
        }
        Ok(Storage::Gpu(s))
    }
    fn download_f32(&self, src: &Storage) -> Result<Vec<f32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.download(src)?))
    }
    fn download_u32(&self, src: &Storage) -> Result<Vec<u32>> {
        Ok(bytemuck::pod_collect_to_vec(&self.download(src)?))
    }
    fn copy(&self, src: &Storage, dst: &Storage) -> Result<()> {
        let d = self.g(dst, 0, "copy")?;
        let s = self.g(src, d.len, "copy")?;
        if d.len == 0 || s.pooled().id == d.pooled().id {
            return Ok(());
        }
        let mut st = self.exec.lock();
        self.exec.ctx.check()?;
        self.exec.encoder(&mut st).copy_buffer_to_buffer(
            &s.pooled().buf,
            0,
            &d.pooled().buf,
            0,
            d.len as u64 * 4,
        );
        Ok(())
    }
    fn flush(&self) -> Result<()> {
        let mut st = self.exec.lock();
        self.exec.ctx.check()?;
        self.exec.submit(&mut st)
    }
    fn fresh_allocations(&self) -> u64 {
        self.pool_stats().fresh_allocations
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
        let GemmShape {
            ta,
            tb,
            m,
            n,
            k: kd,
        } = sh;
        let a = self.g(a, m * kd, "gemm A")?;
        let b = self.g(b, kd * n, "gemm B")?;
        let c = self.g(c, m * n, "gemm C")?;
        let (bias_mode, bias) = match bias {
            GemmBias::None => (0, None),
            GemmBias::PerRow(s) => (1, Some(self.g(s, m, "gemm bias")?)),
            GemmBias::PerCol(s) => (2, Some(self.g(s, n, "gemm bias")?)),
        };
        if m == 0 || n == 0 {
            return Ok(());
        }
        let kernel = match (ta, tb) {
            (Trans::N, Trans::N) => &k::MATMUL_NN,
            (Trans::N, Trans::T) => &k::MATMUL_NT,
            (Trans::T, Trans::N) => &k::MATMUL_TN,
            (Trans::T, Trans::T) => &k::MATMUL_TT,
        };
        // vec4 loads need the stored row length to be a multiple of 4 (then every quad is
        // 16-byte aligned).
        let vec_a = if ta == Trans::N {
            kd % 4 == 0
        } else {
            m % 4 == 0
        };
        let vec_b = if tb == Trans::N {
            n % 4 == 0
        } else {
            kd % 4 == 0
        };
        let params = [
            u(m)?,
            u(n)?,
            u(kd)?,
            bias_mode,
            accumulate as u32,
            relu as u32,
            vec_a as u32,
            vec_b as u32,
        ];
        let binds = [
            bind(a),
            bind(b),
            bind(c),
            bias.map(bind).unwrap_or(self.dummy(4)),
            bind(a),
            bind(b),
        ];
        self.run(kernel, &params, &binds, tile_grid(m, n, 64))
    }

    fn conv2d_forward(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        w: &Storage,
        bias: Option<&Storage>,
        y: &Storage,
    ) -> Result<()> {
        let x = self.g(x, s.input_len(), "conv2d x")?;
        let w = self.g(w, s.weight_len(), "conv2d w")?;
        let y = self.g(y, s.output_len(), "conv2d y")?;
        let bias = bias
            .map(|b| self.g(b, s.out_channels, "conv2d bias"))
            .transpose()?;
        let mnk = (
            s.out_channels,
            s.batch * s.out_h() * s.out_w(),
            s.in_channels * s.kernel_h * s.kernel_w,
        );
        self.conv(&k::CONV_FWD, s, w, x, y, bias, mnk)
    }
    fn conv2d_backward_input(
        &self,
        s: &Conv2dShape,
        w: &Storage,
        dy: &Storage,
        dx: &Storage,
    ) -> Result<()> {
        let w = self.g(w, s.weight_len(), "conv2d w")?;
        let dy = self.g(dy, s.output_len(), "conv2d dy")?;
        let dx = self.g(dx, s.input_len(), "conv2d dx")?;
        let mnk = (
            s.in_channels,
            s.batch * s.in_h * s.in_w,
            s.out_channels * s.kernel_h * s.kernel_w,
        );
        self.conv(&k::CONV_DGRAD, s, w, dy, dx, None, mnk)
    }
    fn conv2d_backward_weight(
        &self,
        s: &Conv2dShape,
        x: &Storage,
        dy: &Storage,
        dw: &Storage,
    ) -> Result<()> {
        let x = self.g(x, s.input_len(), "conv2d x")?;
        let dy = self.g(dy, s.output_len(), "conv2d dy")?;
        let dw = self.g(dw, s.weight_len(), "conv2d dw")?;
        let mnk = (
            s.out_channels,
            s.in_channels * s.kernel_h * s.kernel_w,
            s.batch * s.out_h() * s.out_w(),
        );
        self.conv(&k::CONV_WGRAD, s, dy, x, dw, None, mnk)
    }
    fn conv2d_backward_bias(&self, s: &Conv2dShape, dy: &Storage, db: &Storage) -> Result<()> {
        let dy = self.g(dy, s.output_len(), "conv2d dy")?;
        let db = self.g(db, s.out_channels, "conv2d db")?;
        // src1 is unused by bias_grad: bind dy twice (both read-only).
        self.conv(&k::CONV_BGRAD, s, dy, dy, db, None, (0, 0, 0))
    }

    fn max_pool2d_forward(
        &self,
        s: &Pool2dShape,
        x: &Storage,
        y: &Storage,
        argmax: &Storage,
    ) -> Result<()> {
        let x = self.g(x, s.input_len(), "max_pool2d x")?;
        let y = self.g(y, s.output_len(), "max_pool2d y")?;
        let am = self.g(argmax, s.output_len(), "max_pool2d argmax")?;
        self.run(
            &k::POOL_FWD,
            &Self::pool_params(s)?,
            &[bind(x), bind(y), bind(am)],
            grid(s.output_len().div_ceil(256)),
        )
    }
    fn max_pool2d_backward(
        &self,
        s: &Pool2dShape,
        dy: &Storage,
        argmax: &Storage,
        dx: &Storage,
    ) -> Result<()> {
        let dy = self.g(dy, s.output_len(), "max_pool2d dy")?;
        let am = self.g(argmax, s.output_len(), "max_pool2d argmax")?;
        let dx = self.g(dx, s.input_len(), "max_pool2d dx")?;
        self.run(
            &k::POOL_BWD,
            &Self::pool_params(s)?,
            &[bind(dy), bind(dx), bind(am)],
            grid(s.input_len().div_ceil(256)),
        )
    }

    fn relu(&self, x: &Storage, y: &Storage) -> Result<()> {
        self.elementwise(&k::RELU, Some(x), None, y, 0.0)
    }
    fn relu_backward(&self, x: &Storage, dy: &Storage, dx: &Storage) -> Result<()> {
        self.elementwise(&k::RELU_BWD, Some(x), Some(dy), dx, 0.0)
    }
    fn add(&self, a: &Storage, b: &Storage, y: &Storage) -> Result<()> {
        self.elementwise(&k::ADD, Some(a), Some(b), y, 0.0)
    }
    fn scale(&self, x: &Storage, s: f32, y: &Storage) -> Result<()> {
        self.elementwise(&k::SCALE, Some(x), None, y, s)
    }
    fn scale_by(&self, x: &Storage, s: &Storage, y: &Storage) -> Result<()> {
        self.elementwise(&k::SCALE_BY, Some(x), Some(s), y, 0.0)
    }
    fn axpy(&self, alpha: f32, x: &Storage, y: &Storage) -> Result<()> {
        self.elementwise(&k::AXPY, Some(x), None, y, alpha)
    }
    fn fill(&self, y: &Storage, value: f32) -> Result<()> {
        self.elementwise(&k::FILL, None, None, y, value)
    }
    fn sum(&self, x: &Storage, out: &Storage) -> Result<()> {
        let x = self.g(x, 0, "sum")?;
        let out = self.g(out, 1, "sum out")?;
        self.reduce_into(x, x.len, out, 1.0)
    }
    fn column_sums(&self, rows: usize, cols: usize, x: &Storage, out: &Storage) -> Result<()> {
        let x = self.g(x, rows * cols, "column_sums")?;
        let out = self.g(out, cols, "column_sums out")?;
        self.run(
            &k::COLUMN_SUMS,
            &[0, u(rows)?, u(cols)?, f(1.0)],
            &[bind(x), bind(out)],
            grid(cols.div_ceil(64)),
        )
    }

    fn softmax(&self, rows: usize, cols: usize, x: &Storage, t: f32, y: &Storage) -> Result<()> {
        self.softmax_family(
            &k::SOFTMAX,
            rows,
            cols,
            x,
            None,
            None,
            Some(y),
            None,
            None,
            t,
            0.0,
        )
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
        self.softmax_family(
            &k::SOFTMAX_BWD,
            rows,
            cols,
            y,
            Some(dy),
            None,
            Some(dx),
            None,
            None,
            t,
            0.0,
        )
    }
    fn log_softmax(
        &self,
        rows: usize,
        cols: usize,
        x: &Storage,
        t: f32,
        y: &Storage,
    ) -> Result<()> {
        self.softmax_family(
            &k::LOG_SOFTMAX,
            rows,
            cols,
            x,
            None,
            None,
            Some(y),
            None,
            None,
            t,
            0.0,
        )
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
        self.softmax_family(
            &k::LOG_SOFTMAX_BWD,
            rows,
            cols,
            y,
            Some(dy),
            None,
            Some(dx),
            None,
            None,
            t,
            0.0,
        )
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
        let loss = self.g(loss, 1, "cross_entropy loss")?;
        let row_loss = self.alloc(rows)?;
        self.softmax_family(
            &k::CROSS_ENTROPY,
            rows,
            cols,
            logits,
            None,
            Some(labels),
            grad,
            Some(&row_loss),
            None,
            1.0,
            0.0,
        )?;
        self.reduce_into(&row_loss, rows, loss, rows as f32)
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
        let loss = self.g(loss, 1, "kd_loss loss")?;
        let row_loss = self.alloc(rows)?;
        self.softmax_family(
            &k::KD_LOSS,
            rows,
            cols,
            student,
            Some(teacher),
            Some(labels),
            grad,
            Some(&row_loss),
            None,
            temperature,
            alpha,
        )?;
        self.reduce_into(&row_loss, rows, loss, rows as f32)
    }
    fn count_correct(
        &self,
        rows: usize,
        cols: usize,
        logits: &Storage,
        labels: &Storage,
        out: &Storage,
    ) -> Result<()> {
        self.softmax_family(
            &k::COUNT_CORRECT,
            rows,
            cols,
            logits,
            None,
            Some(labels),
            None,
            None,
            Some(out),
            1.0,
            0.0,
        )
    }

    fn sgd_step(
        &self,
        cfg: &SgdConfig,
        first_step: bool,
        param: &Storage,
        grad: &Storage,
        momentum: &Storage,
    ) -> Result<()> {
        let p = self.g(param, 0, "sgd param")?;
        let n = p.len;
        let g = self.g(grad, n, "sgd grad")?;
        let m = self.g(
            momentum,
            if cfg.momentum != 0.0 { n } else { 0 },
            "sgd momentum",
        )?;
        let params = [
            u(n)?,
            f(cfg.lr),
            f(cfg.momentum),
            f(cfg.dampening),
            f(cfg.weight_decay),
            cfg.nesterov as u32,
            first_step as u32,
        ];
        self.run(
            &k::SGD,
            &params,
            &[bind(g), bind(p), bind(m), self.dummy(4)],
            grid(n.div_ceil(256)),
        )
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
        let p = self.g(param, 0, "adam param")?;
        let n = p.len;
        let g = self.g(grad, n, "adam grad")?;
        let m = self.g(m, n, "adam m")?;
        let v = self.g(v, n, "adam v")?;
        // Bias corrections in f64, as PyTorch computes them on Python floats.
        let step = step.max(1) as i32;
        let bc1 = 1.0 - (cfg.beta1 as f64).powi(step);
        let bc2 = 1.0 - (cfg.beta2 as f64).powi(step);
        let params = [
            u(n)?,
            f(cfg.lr),
            0,
            0,
            f(cfg.weight_decay),
            0,
            0,
            f(cfg.beta1),
            f(cfg.beta2),
            f(cfg.eps),
            cfg.decoupled_weight_decay as u32,
            f(bc1 as f32),
            f(bc2.sqrt() as f32),
        ];
        self.run(
            &k::ADAM,
            &params,
            &[bind(g), bind(p), bind(m), bind(v)],
            grid(n.div_ceil(256)),
        )
    }
}
