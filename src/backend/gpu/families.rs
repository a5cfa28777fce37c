//! The launchers shared by several kernels of one WGSL module: element-wise maps, the
//! two-pass deterministic sum, the softmax family (with [`RowsCall`], its operands) and the
//! convolutions (with [`ConvCall`]). Each fills the module's params struct and binds
//! placeholders where a kernel leaves a binding unused.

use super::launch::{bind, grid, tile_grid, u};
use super::params::{Conv2dParams, ElementwiseParams, PoolParams, ReduceParams, SoftmaxParams};
use super::table::{k, Kernel};
use super::{GpuBackend, GpuStorage};
use crate::backend::{Conv2dShape, Pool2dShape, Storage};
use crate::Result;

/// One launch of a softmax.wgsl kernel. The module binds six buffers; a kernel uses some of
/// them, the others get placeholders.
pub(crate) struct RowsCall<'a> {
    pub kernel: &'static Kernel,
    pub rows: usize,
    pub cols: usize,
    /// x, y (backward passes), logits or student logits.
    pub input: &'a Storage,
    /// dy (backward passes) or teacher logits.
    pub second: Option<&'a Storage>,
    pub labels: Option<&'a Storage>,
    /// y, dx or the gradient of a loss.
    pub out: Option<&'a Storage>,
    /// Per-row losses (their mean is a reduce.wgsl `finish`).
    pub row_loss: Option<&'a GpuStorage>,
    /// count_correct's u32 counter.
    pub correct: Option<&'a Storage>,
    pub temperature: f32,
    pub alpha: f32,
}

impl<'a> RowsCall<'a> {
    /// `kernel` over `input`, every optional operand absent, temperature 1.
    pub fn new(kernel: &'static Kernel, rows: usize, cols: usize, input: &'a Storage) -> Self {
        RowsCall {
            kernel,
            rows,
            cols,
            input,
            second: None,
            labels: None,
            out: None,
            row_loss: None,
            correct: None,
            temperature: 1.0,
            alpha: 0.0,
        }
    }
}

/// An element-wise kernel's second operand.
#[derive(Clone, Copy)]
pub(crate) enum Second<'a> {
    /// One value per element, as the output.
    Each(&'a Storage),
    /// One device scalar for every element (`scale_by`).
    Scalar(&'a Storage),
}

/// How a conv2d.wgsl launch spreads over workgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ConvGrid {
    /// One workgroup per output tile of the implicit GEMM (the device's conv tile).
    Tiles,
    /// One workgroup per output channel (the bias gradient's sums).
    PerOutputChannel,
}

/// One conv2d.wgsl launch: the implicit GEMM `out[m×n] = a·b` over the convolution `shape`
/// (conv2d.wgsl says which operand is which in each MODE).
pub(crate) struct ConvCall<'a> {
    pub kernel: &'static Kernel,
    pub shape: &'a Conv2dShape,
    pub a: &'a GpuStorage,
    pub b: &'a GpuStorage,
    pub out: &'a GpuStorage,
    pub bias: Option<&'a GpuStorage>,
    /// GEMM size (m, n, k).
    pub mnk: (usize, usize, usize),
    pub grid: ConvGrid,
}

impl GpuBackend {
    pub(crate) fn elementwise(
        &self,
        kernel: &'static Kernel,
        x: Option<&Storage>,
        z: Option<Second>,
        y: &Storage,
        s: f32,
    ) -> Result<()> {
        let y = self.g(y, 0, kernel.name)?;
        let n = y.len;
        let x = x.map(|x| self.g(x, n, kernel.name)).transpose()?;
        let z = match z {
            Some(Second::Each(z)) => Some(self.g(z, n, kernel.name)?),
            Some(Second::Scalar(z)) => Some(self.g(z, 1, kernel.name)?),
            None => None,
        };
        let binds = [self.bind_or_dummy(x, 1), self.bind_or_dummy(z, 2), bind(y)];
        let params = ElementwiseParams { len: u(n)?, s };
        self.run(kernel, &params, &binds, grid(n.div_ceil(256)))
    }

    /// `out[0] = Σ x[..len] / div`, deterministic (reduce.wgsl).
    pub(crate) fn reduce_into(
        &self,
        x: &GpuStorage,
        len: usize,
        out: &GpuStorage,
        div: f32,
    ) -> Result<()> {
        const CHUNK: usize = 4096;
        let chunks = len.div_ceil(CHUNK);
        let params = |len, div| -> Result<ReduceParams> {
            Ok(ReduceParams {
                len: u(len)?,
                div,
                ..Default::default()
            })
        };
        if chunks <= 1 && div == 1.0 {
            // One chunk: the partial pass writes the result directly.
            return self.run(
                &k::SUM_PARTIAL,
                &params(len, 1.0)?,
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
                &params(len, 1.0)?,
                &[bind(x), bind(&partials)],
                grid(chunks),
            )?;
            (&partials, chunks)
        };
        self.run(
            &k::SUM_FINISH,
            &params(n, div)?,
            &[bind(src), bind(out)],
            (1, 1, 1),
        )
    }

    pub(crate) fn softmax_family(&self, c: RowsCall) -> Result<()> {
        let (rows, n, name) = (c.rows, c.rows * c.cols, c.kernel.name);
        let input = self.g(c.input, n, name)?;
        let second = c.second.map(|s| self.g(s, n, name)).transpose()?;
        let labels = c.labels.map(|s| self.g(s, rows, name)).transpose()?;
        let out = c.out.map(|s| self.g(s, n, name)).transpose()?;
        let correct = c.correct.map(|s| self.g(s, 1, name)).transpose()?;
        let binds = [
            bind(input),
            self.bind_or_dummy(second, 2),
            self.bind_or_dummy(labels, 3),
            self.bind_or_dummy(out, 4),
            self.bind_or_dummy(c.row_loss, 5),
            self.bind_or_dummy(correct, 6),
        ];
        let params = SoftmaxParams {
            rows: u(rows)?,
            cols: u(c.cols)?,
            t: c.temperature,
            alpha: c.alpha,
            want_grad: out.is_some() as u32,
        };
        self.run(c.kernel, &params, &binds, grid(rows))
    }

    pub(crate) fn conv(&self, c: ConvCall) -> Result<()> {
        let s = c.shape;
        let (m, n, kk) = c.mnk;
        let params = Conv2dParams {
            batch: u(s.batch)?,
            cin: u(s.in_channels)?,
            h: u(s.in_h)?,
            w: u(s.in_w)?,
            cout: u(s.out_channels)?,
            kh: u(s.kernel_h)?,
            kw: u(s.kernel_w)?,
            sh: u(s.stride_h)?,
            sw: u(s.stride_w)?,
            ph: u(s.pad_h)?,
            pw: u(s.pad_w)?,
            oh: u(s.out_h())?,
            ow: u(s.out_w())?,
            m: u(m)?,
            n: u(n)?,
            k: u(kk)?,
            has_bias: c.bias.is_some() as u32,
        };
        let binds = [
            bind(c.a),
            bind(c.b),
            bind(c.out),
            self.bind_or_dummy(c.bias, 4),
        ];
        let groups = match c.grid {
            ConvGrid::PerOutputChannel => grid(s.out_channels),
            ConvGrid::Tiles => tile_grid(m, n, self.exec.tiles.conv),
        };
        self.run(c.kernel, &params, &binds, groups)
    }

    pub(crate) fn pool_params(s: &Pool2dShape) -> Result<PoolParams> {
        Ok(PoolParams {
            planes: u(s.batch * s.channels)?,
            h: u(s.in_h)?,
            w: u(s.in_w)?,
            kh: u(s.kernel_h)?,
            kw: u(s.kernel_w)?,
            sh: u(s.stride_h)?,
            sw: u(s.stride_w)?,
            oh: u(s.out_h())?,
            ow: u(s.out_w())?,
        })
    }
}
