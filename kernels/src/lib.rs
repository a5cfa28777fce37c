//! `distill-kernels`: the CPU kernels of distill.
//!
//! Plain functions over slices, threaded with rayon and vectorised with `std::arch`
//! (AVX-512 or AVX2+FMA on x86-64, NEON on aarch64, scalar elsewhere), picked once at run time
//! by [`simd::level`]. Each kernel module here has a WGSL twin in `shaders/`. [`rng`] is the
//! seeded generator the engine and the kernel tests draw from.
//!
//! Conventions shared by every kernel:
//! - tensors are dense row-major f32 slices; images are NCHW;
//! - outputs are *overwritten* unless a function says it accumulates;
//! - slice lengths are the caller's contract (checked with `assert!`): the engine validates
//!   user-facing shapes with the `*Shape::validate` methods below and turns failures into
//!   errors before any kernel runs;
//! - reductions combine fixed-size chunks in a fixed order, so results do not depend on the
//!   number of threads.

pub mod bench;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod ladder;
pub mod mse;
pub mod optim;
pub mod pool;
pub mod rng;
pub mod simd;
pub mod softmax;

pub use gemm::GemmShape;
pub use simd::SimdLevel;

/// Shape of a 2-D convolution over an NCHW batch (weights `[out, in, kh, kw]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
    pub pad_h: usize,
    pub pad_w: usize,
}

impl Conv2dShape {
    /// The presets' convolution: 3×3, stride 1, padding 1 (same size out), on
    /// `side`×`side` images.
    pub fn same_3x3(batch: usize, in_channels: usize, out_channels: usize, side: usize) -> Self {
        Conv2dShape {
            batch,
            in_channels,
            in_h: side,
            in_w: side,
            out_channels,
            kernel_h: 3,
            kernel_w: 3,
            stride_h: 1,
            stride_w: 1,
            pad_h: 1,
            pad_w: 1,
        }
    }

    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.pad_h - self.kernel_h) / self.stride_h + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.pad_w - self.kernel_w) / self.stride_w + 1
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel_h * self.kernel_w
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h() * self.out_w()
    }
    /// Multiply-adds of the forward pass times two (each backward kernel costs the same).
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.out_channels * self.out_h() * self.out_w()) as f64
            * (self.in_channels * self.kernel_h * self.kernel_w) as f64
    }
    /// Every dimension non-zero, and the kernel fits inside the padded input.
    pub fn validate(&self) -> Result<(), String> {
        let dims = [
            ("batch", self.batch),
            ("in_channels", self.in_channels),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("out_channels", self.out_channels),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(format!("conv2d: {name} must be > 0"));
            }
        }
        if self.kernel_h > self.in_h + 2 * self.pad_h || self.kernel_w > self.in_w + 2 * self.pad_w
        {
            return Err(format!(
                "conv2d: kernel {}x{} is larger than the padded input {}x{}",
                self.kernel_h,
                self.kernel_w,
                self.in_h + 2 * self.pad_h,
                self.in_w + 2 * self.pad_w
            ));
        }
        Ok(())
    }
}

/// Shape of a 2-D max-pool over an NCHW batch (no padding; windows that would run past the
/// edge are dropped, as PyTorch does with `ceil_mode=False`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dShape {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride_h: usize,
    pub stride_w: usize,
}

impl Pool2dShape {
    pub fn out_h(&self) -> usize {
        (self.in_h - self.kernel_h) / self.stride_h + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w - self.kernel_w) / self.stride_w + 1
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.in_h * self.in_w
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.out_h() * self.out_w()
    }
    pub fn validate(&self) -> Result<(), String> {
        let dims = [
            ("batch", self.batch),
            ("channels", self.channels),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
        ];
        for (name, v) in dims {
            if v == 0 {
                return Err(format!("max_pool2d: {name} must be > 0"));
            }
        }
        if self.kernel_h > self.in_h || self.kernel_w > self.in_w {
            return Err(format!(
                "max_pool2d: window {}x{} is larger than the input {}x{}",
                self.kernel_h, self.kernel_w, self.in_h, self.in_w
            ));
        }
        Ok(())
    }
}

/// What the GEMM does to each output element after the product (the "epilogue").
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// `C = op(A)·op(B) + C` instead of overwriting C.
    pub accumulate: bool,
    /// Bias added after the product (and after accumulation).
    pub bias: Bias<'a>,
    /// `max(0, ·)` applied last.
    pub relu: bool,
}

/// A bias vector broadcast over the rows or the columns of C.
#[derive(Clone, Copy, Debug, Default)]
pub enum Bias<'a> {
    #[default]
    None,
    /// `bias[i]` added to row i (length m): conv2d forward, where rows are output channels.
    PerRow(&'a [f32]),
    /// `bias[j]` added to column j (length n): linear layers, where columns are features.
    PerCol(&'a [f32]),
}

/// Whether a GEMM operand is read as stored (`N`) or transposed (`T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Trans {
    N,
    T,
}
