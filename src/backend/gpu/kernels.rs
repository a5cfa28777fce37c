//! [`Backend`] on the GPU: each method checks its operands, fills the kernel's params struct
//! (params.rs) and records one or two dispatches (see `shaders/*.wgsl` for what each kernel
//! does). The plumbing they share is in launch.rs, the launchers of multi-kernel families in
//! families.rs.

use super::families::{ConvCall, ConvGrid, RowsCall, Second};
use super::launch::{bind, grid, tile_grid, u};
use super::params::{MatmulParams, MseParams, OptimParams, ReduceParams};
use super::table::{k, Kernel};
use super::GpuBackend;
use crate::backend::{
    AdamConfig, Backend, Conv2dShape, DeviceKind, GemmBias, GemmShape, KernelTime, MemoryStats,
    Pool2dShape, ReadBack, SgdConfig, Storage, Trans,
};
use crate::Result;

impl GpuBackend {
    /// The staged or the registers-only kernel of a conv2d product, as the conv tile says.
    fn conv_kernel(&self, staged: &'static Kernel, registers: &'static Kernel) -> &'static Kernel {
        if self.exec.tiles.conv.registers {
            registers
        } else {
            staged
        }
    }
}

impl Backend for GpuBackend {
    fn as_gpu(&self) -> Option<&GpuBackend> {
        Some(self)
    }

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
    fn memory(&self) -> MemoryStats {
        let p = self.exec.pool.stats();
        MemoryStats {
            in_use_bytes: p.bytes_allocated - p.idle_bytes,
            idle_bytes: p.idle_bytes,
            fresh_allocations: p.fresh_allocations,
        }
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
    fn read_f32<'a>(&'a self, src: &'a Storage) -> ReadBack<'a, Vec<f32>> {
        Box::pin(async move { Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(src).await?)) })
    }
    fn read_u32<'a>(&'a self, src: &'a Storage) -> ReadBack<'a, Vec<u32>> {
        Box::pin(async move { Ok(bytemuck::pod_collect_to_vec(&self.read_bytes(src).await?)) })
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
    fn set_profiling(&self, on: bool) -> Result<bool> {
        let mut st = self.exec.lock();
        self.exec.ctx.check()?;
        self.exec.set_profiling(&mut st, on)
    }
    fn kernel_times(&self) -> Result<Vec<KernelTime>> {
        // Submit pending work so its dispatches are in the report.
        let mut st = self.exec.lock();
        self.exec.submit(&mut st)?;
        Ok(self.exec.kernel_times(&st))
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
        let kernel = match (ta, tb, self.exec.tiles.matmul.registers) {
            (Trans::N, Trans::N, false) => &k::MATMUL_NN,
            (Trans::N, Trans::T, false) => &k::MATMUL_NT,
            (Trans::T, Trans::N, false) => &k::MATMUL_TN,
            (Trans::T, Trans::T, false) => &k::MATMUL_TT,
            (Trans::N, Trans::N, true) => &k::MATMUL_NN_REGISTERS,
            (Trans::N, Trans::T, true) => &k::MATMUL_NT_REGISTERS,
            (Trans::T, Trans::N, true) => &k::MATMUL_TN_REGISTERS,
            (Trans::T, Trans::T, true) => &k::MATMUL_TT_REGISTERS,
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
        let params = MatmulParams {
            m: u(m)?,
            n: u(n)?,
            k: u(kd)?,
            bias_mode,
            accumulate: accumulate as u32,
            relu: relu as u32,
            vec_a: vec_a as u32,
            vec_b: vec_b as u32,
        };
        // a and b bind twice: as f32 and as vec4 arrays.
        let binds = [
            bind(a),
            bind(b),
            bind(c),
            self.bind_or_dummy(bias, 4),
            bind(a),
            bind(b),
        ];
        self.run(
            kernel,
            &params,
            &binds,
            tile_grid(m, n, self.exec.tiles.matmul),
        )
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
        self.conv(ConvCall {
            kernel: self.conv_kernel(&k::CONV_FWD, &k::CONV_FWD_REGISTERS),
            grid: ConvGrid::Tiles,
            shape: s,
            a: w,
            b: x,
            out: y,
            bias,
            mnk,
        })
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
        self.conv(ConvCall {
            kernel: self.conv_kernel(&k::CONV_DGRAD, &k::CONV_DGRAD_REGISTERS),
            grid: ConvGrid::Tiles,
            shape: s,
            a: w,
            b: dy,
            out: dx,
            bias: None,
            mnk,
        })
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
        self.conv(ConvCall {
            kernel: self.conv_kernel(&k::CONV_WGRAD, &k::CONV_WGRAD_REGISTERS),
            grid: ConvGrid::Tiles,
            shape: s,
            a: dy,
            b: x,
            out: dw,
            bias: None,
            mnk,
        })
    }
    fn conv2d_backward_bias(&self, s: &Conv2dShape, dy: &Storage, db: &Storage) -> Result<()> {
        let dy = self.g(dy, s.output_len(), "conv2d dy")?;
        let db = self.g(db, s.out_channels, "conv2d db")?;
        // src1 is unused by bias_grad: bind dy twice (both read-only).
        self.conv(ConvCall {
            kernel: &k::CONV_BGRAD,
            grid: ConvGrid::PerOutputChannel,
            shape: s,
            a: dy,
            b: dy,
            out: db,
            bias: None,
            mnk: (0, 0, 0),
        })
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
        self.elementwise(&k::RELU_BWD, Some(x), Some(Second::Each(dy)), dx, 0.0)
    }
    fn add(&self, a: &Storage, b: &Storage, y: &Storage) -> Result<()> {
        self.elementwise(&k::ADD, Some(a), Some(Second::Each(b)), y, 0.0)
    }
    fn scale(&self, x: &Storage, s: f32, y: &Storage) -> Result<()> {
        self.elementwise(&k::SCALE, Some(x), None, y, s)
    }
    fn scale_by(&self, x: &Storage, s: &Storage, y: &Storage) -> Result<()> {
        self.elementwise(&k::SCALE_BY, Some(x), Some(Second::Scalar(s)), y, 0.0)
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
            &ReduceParams {
                len: 0,
                rows: u(rows)?,
                cols: u(cols)?,
                div: 1.0,
            },
            &[bind(x), bind(out)],
            grid(cols.div_ceil(64)),
        )
    }

    fn softmax(&self, rows: usize, cols: usize, x: &Storage, t: f32, y: &Storage) -> Result<()> {
        self.softmax_family(RowsCall {
            out: Some(y),
            temperature: t,
            ..RowsCall::new(&k::SOFTMAX, rows, cols, x)
        })
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
        self.softmax_family(RowsCall {
            second: Some(dy),
            out: Some(dx),
            temperature: t,
            ..RowsCall::new(&k::SOFTMAX_BWD, rows, cols, y)
        })
    }
    fn log_softmax(
        &self,
        rows: usize,
        cols: usize,
        x: &Storage,
        t: f32,
        y: &Storage,
    ) -> Result<()> {
        self.softmax_family(RowsCall {
            out: Some(y),
            temperature: t,
            ..RowsCall::new(&k::LOG_SOFTMAX, rows, cols, x)
        })
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
        self.softmax_family(RowsCall {
            second: Some(dy),
            out: Some(dx),
            temperature: t,
            ..RowsCall::new(&k::LOG_SOFTMAX_BWD, rows, cols, y)
        })
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
        self.softmax_family(RowsCall {
            labels: Some(labels),
            out: grad,
            row_loss: Some(&row_loss),
            ..RowsCall::new(&k::CROSS_ENTROPY, rows, cols, logits)
        })?;
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
        self.softmax_family(RowsCall {
            second: Some(teacher),
            labels: Some(labels),
            out: grad,
            row_loss: Some(&row_loss),
            temperature,
            alpha,
            ..RowsCall::new(&k::KD_LOSS, rows, cols, student)
        })?;
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
        self.softmax_family(RowsCall {
            labels: Some(labels),
            correct: Some(out),
            ..RowsCall::new(&k::COUNT_CORRECT, rows, cols, logits)
        })
    }

    fn mse_loss(
        &self,
        len: usize,
        a: &Storage,
        b: &Storage,
        loss: &Storage,
        grad: Option<&Storage>,
    ) -> Result<()> {
        const CHUNK: usize = 4096; // mse.wgsl's chunk per workgroup
        let a = self.g(a, len, "mse_loss a")?;
        let b = self.g(b, len, "mse_loss b")?;
        let loss = self.g(loss, 1, "mse_loss loss")?;
        let grad = grad.map(|g| self.g(g, len, "mse_loss grad")).transpose()?;
        let chunks = len.div_ceil(CHUNK);
        let partials = self.alloc(chunks)?;
        let params = MseParams {
            len: u(len)?,
            scale: (2.0 / len as f64) as f32,
            want_grad: grad.is_some() as u32,
        };
        self.run(
            &k::MSE_LOSS,
            &params,
            &[
                bind(a),
                bind(b),
                self.bind_or_dummy(grad, 3),
                bind(&partials),
            ],
            grid(chunks),
        )?;
        self.reduce_into(&partials, chunks, loss, len as f32)
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
        let params = OptimParams {
            len: u(n)?,
            lr: cfg.lr,
            momentum: cfg.momentum,
            dampening: cfg.dampening,
            weight_decay: cfg.weight_decay,
            nesterov: cfg.nesterov as u32,
            first_step: first_step as u32,
            ..Default::default()
        };
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
        let params = OptimParams {
            len: u(n)?,
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            decoupled: cfg.decoupled_weight_decay as u32,
            bc1: bc1 as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            ..Default::default()
        };
        self.run(
            &k::ADAM,
            &params,
            &[bind(g), bind(p), bind(m), bind(v)],
            grid(n.div_ceil(256)),
        )
    }
}
