//! The thin kernels once more, written once over a vector type ([`Lanes`]) and instantiated
//! for the levels whose registers are not the AVX2 path's: AVX-512 (16 lanes, `avx512.rs`) and
//! NEON (4 lanes, `neon.rs`).
//!
//! # Algorithm
//!
//! The same three jobs as the AVX2 kernels beside this folder, on the same per-image unfold
//! ([`ColLayout`]):
//!
//! - forward (`forward.rs`): per output channel the K weights and the bias sit in registers
//!   and `col` is streamed [`FWD_VECTORS`] vectors at a time; large outputs are written with
//!   streaming stores where the level has them (AVX-512), as on AVX2;
//! - weight grad (`weight_grad.rs`): output channels in pairs, all K taps of a pair at once
//!   (2·K ≤ 24 accumulators: both levels have 32 vector registers), one `col` load per tap
//!   shared by the pair; lanes, then chunks, summed in a fixed order;
//! - input grad (`input_grad.rs`): `dcol = Wᵀ·dY` on a 3-tap × [`DCOL_VECTORS`]-vector
//!   register tile over the output channels in order, then the fold: whole shifted rows for a
//!   stride-1 "same" convolution ([`FlatFold`]), the scalar `col2im_channel` otherwise.
//!
//! Beside them, the conv fused with the 2×2 max-pool after it: its forward (`pooled.rs`, the
//! forward above into a scratch, then the pool) and its weight and bias gradients at the
//! pooled resolution (`pooled_grad.rs`, its own algorithm).
//!
//! The ragged end of a row is one partial vector ([`Lanes::load_first`] /
//! [`Lanes::store_first`]: lane masks on AVX-512, a copy through a 4-float buffer on NEON).
//! Every output element sees the same sequence of float operations whatever the thread count
//! and however the pixels are blocked, so the kernels are deterministic at each level.
//!
//! # What bounds it
//!
//! Memory, as for the AVX2 kernels (`../mod.rs`): 2·K flops per element of y or dY moved.
//! These kernels prefetch dY, the next image's input and the output's pages ahead of the
//! stores as the AVX2 ones do.

mod forward;
mod input_grad;
mod pooled;
mod pooled_grad;
mod weight_grad;

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "aarch64")]
mod neon;

#[cfg(target_arch = "x86_64")]
pub(super) use avx512::Avx512;
#[cfg(target_arch = "aarch64")]
pub(super) use neon::Neon;

use crate::conv::Geo;
pub(super) use forward::forward;
pub(super) use input_grad::backward_input;
pub(super) use pooled::forward_pool;
pub(super) use pooled_grad::backward_params_pool;
use pooled_grad::PooledGradImage;
pub(super) use weight_grad::backward_weight;

#[allow(unused_imports)]
use super::{ColLayout, FlatFold};

/// Output vectors per step of the forward (independent FMA chains).
pub(super) const FWD_VECTORS: usize = 4;

/// Pixel vectors of the input grad's register tile (3 taps × 4 vectors: 12 accumulators, 4
/// dY vectors and a broadcast weight, in 32 registers on both levels).
pub(super) const DCOL_VECTORS: usize = 4;

/// A SIMD vector of `N` f32 lanes: the operations the thin kernels use. Implementations are
/// `#[inline(always)]` and run only inside the level's `#[target_feature]` entry points
/// ([`Kernels`]).
pub(super) trait Lanes: Copy {
    /// Lanes per vector.
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(p: *mut f32, v: Self);
    /// The first `n < N` floats at `p` (only those are read), the other lanes zero.
    unsafe fn load_first(p: *const f32, n: usize) -> Self;
    /// Stores the first `n < N` lanes (only those floats are written).
    unsafe fn store_first(p: *mut f32, n: usize, v: Self);
    /// `a·b + c`, fused (one rounding).
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// A hint to bring the line at `p` into L1 (any address: it never faults).
    unsafe fn prefetch(p: *const f32);
    /// Stores `v` at `p` (16-byte aligned) bypassing the caches where the level can (no
    /// read-for-ownership of the line); [`Lanes::stream_fence`] orders these stores before
    /// any later access.
    unsafe fn store_stream(p: *mut f32, v: Self);
    unsafe fn stream_fence();
    /// u32 lanes (the pool's arg-max, and the window pixels it is compared with).
    type Index: Copy;
    /// A predicate per lane.
    type Mask: Copy;
    unsafe fn load_index(p: *const u32) -> Self::Index;
    /// The first `n < N` u32s at `p` (only those are read), the other lanes zero.
    unsafe fn load_index_first(p: *const u32, n: usize) -> Self::Index;
    /// `a == b`, lane by lane.
    unsafe fn eq(a: Self::Index, b: Self::Index) -> Self::Mask;
    /// `v > 0`, lane by lane (false for NaN).
    unsafe fn positive(v: Self) -> Self::Mask;
    /// `v` where `m`, `+0` elsewhere.
    unsafe fn keep(v: Self, m: Self::Mask) -> Self;
    /// The even and the odd lanes of the `2·N` floats `lo` then `hi`.
    unsafe fn unzip(lo: Self, hi: Self) -> (Self, Self);
}

/// The per-image kernels of a level, each a `#[target_feature]` function wrapping the generic
/// kernel for that level's [`Lanes`] (see [`thin_kernels_for`]).
pub(super) trait Kernels: Lanes {
    /// `y[co×P] = bias + w[co×K]·col` for one image.
    #[allow(clippy::too_many_arguments)]
    unsafe fn fwd_image<const K: usize>(
        col: &[f32],
        offs: &[usize],
        p: usize,
        w: &[f32],
        bias: Option<&[f32]>,
        y: &mut [f32],
        co: usize,
        nt: bool,
    );
    /// `acc[co×K×N] += dY·colᵀ`, lane-wise.
    unsafe fn wgrad_image<const K: usize>(
        col: &[f32],
        offs: &[usize],
        p: usize,
        dy: &[f32],
        acc: &mut [f32],
        co: usize,
    );
    /// One image of the fused conv + pool backward: [`pooled_grad::wgrad_pooled_image`].
    unsafe fn wgrad_pooled_image<const K: usize>(
        img: &PooledGradImage,
        padded: &[f32],
        wcol: &mut [f32],
        acc: &mut [f32],
    );
    /// The padded input planes of one image: [`pooled_grad::pad_image`].
    unsafe fn pad_image(g: &Geo, x: &[f32], out: &mut [f32]);
    /// `dcol[K×ps] = w[co×K]ᵀ·dY[co×P]` for one image.
    unsafe fn dcol_image(
        k: usize,
        w: &[f32],
        dy: &[f32],
        p: usize,
        co: usize,
        dcol: &mut [f32],
        ps: usize,
    );
    /// `dx[P] = Σ_taps rows[start..]` (the flat fold of a "same" convolution).
    unsafe fn flat_fold(starts: &[usize], rows: &[f32], p: usize, dx: &mut [f32]);
}

/// Implements [`Kernels`] for `$v` with `#[target_feature(enable = $feature)]` entry points, so
/// the generic kernels (`#[inline(always)]`) and the level's intrinsics compile into them.
macro_rules! thin_kernels_for {
    ($v:ty, $feature:literal) => {
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn fwd_image_tf<const K: usize>(
            col: &[f32],
            offs: &[usize],
            p: usize,
            w: &[f32],
            bias: Option<&[f32]>,
            y: &mut [f32],
            co: usize,
            nt: bool,
        ) {
            super::forward::fwd_image::<$v, K>(col, offs, p, w, bias, y, co, nt)
        }

        #[target_feature(enable = $feature)]
        unsafe fn wgrad_image_tf<const K: usize>(
            col: &[f32],
            offs: &[usize],
            p: usize,
            dy: &[f32],
            acc: &mut [f32],
            co: usize,
        ) {
            super::weight_grad::wgrad_image::<$v, K>(col, offs, p, dy, acc, co)
        }

        #[target_feature(enable = $feature)]
        unsafe fn wgrad_pooled_image_tf<const K: usize>(
            img: &super::PooledGradImage,
            padded: &[f32],
            wcol: &mut [f32],
            acc: &mut [f32],
        ) {
            super::pooled_grad::wgrad_pooled_image::<$v, K>(img, padded, wcol, acc)
        }

        #[target_feature(enable = $feature)]
        unsafe fn pad_image_tf(g: &super::Geo, x: &[f32], out: &mut [f32]) {
            super::pooled_grad::pad_image::<$v>(g, x, out)
        }

        #[target_feature(enable = $feature)]
        unsafe fn dcol_image_tf(
            k: usize,
            w: &[f32],
            dy: &[f32],
            p: usize,
            co: usize,
            dcol: &mut [f32],
            ps: usize,
        ) {
            super::input_grad::dcol_image::<$v>(k, w, dy, p, co, dcol, ps)
        }

        #[target_feature(enable = $feature)]
        unsafe fn flat_fold_tf(starts: &[usize], rows: &[f32], p: usize, dx: &mut [f32]) {
            super::input_grad::flat_fold::<$v>(starts, rows, p, dx)
        }

        impl super::Kernels for $v {
            unsafe fn fwd_image<const K: usize>(
                col: &[f32],
                offs: &[usize],
                p: usize,
                w: &[f32],
                bias: Option<&[f32]>,
                y: &mut [f32],
                co: usize,
                nt: bool,
            ) {
                fwd_image_tf::<K>(col, offs, p, w, bias, y, co, nt)
            }
            unsafe fn wgrad_image<const K: usize>(
                col: &[f32],
                offs: &[usize],
                p: usize,
                dy: &[f32],
                acc: &mut [f32],
                co: usize,
            ) {
                wgrad_image_tf::<K>(col, offs, p, dy, acc, co)
            }
            unsafe fn wgrad_pooled_image<const K: usize>(
                img: &super::PooledGradImage,
                padded: &[f32],
                wcol: &mut [f32],
                acc: &mut [f32],
            ) {
                wgrad_pooled_image_tf::<K>(img, padded, wcol, acc)
            }
            unsafe fn pad_image(g: &super::Geo, x: &[f32], out: &mut [f32]) {
                pad_image_tf(g, x, out)
            }
            unsafe fn dcol_image(
                k: usize,
                w: &[f32],
                dy: &[f32],
                p: usize,
                co: usize,
                dcol: &mut [f32],
                ps: usize,
            ) {
                dcol_image_tf(k, w, dy, p, co, dcol, ps)
            }
            unsafe fn flat_fold(starts: &[usize], rows: &[f32], p: usize, dx: &mut [f32]) {
                flat_fold_tf(starts, rows, p, dx)
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use thin_kernels_for;

/// Instantiates `$f::<$v, K>` for the run-time K (1 ..= `THIN_MAX_K`), so the tap loops
/// unroll.
macro_rules! by_k_for {
    ($k:expr, $v:ty, $f:ident($($arg:expr),*)) => {
        match $k {
            1 => <$v>::$f::<1>($($arg),*),
            2 => <$v>::$f::<2>($($arg),*),
            3 => <$v>::$f::<3>($($arg),*),
            4 => <$v>::$f::<4>($($arg),*),
            5 => <$v>::$f::<5>($($arg),*),
            6 => <$v>::$f::<6>($($arg),*),
            7 => <$v>::$f::<7>($($arg),*),
            8 => <$v>::$f::<8>($($arg),*),
            9 => <$v>::$f::<9>($($arg),*),
            10 => <$v>::$f::<10>($($arg),*),
            11 => <$v>::$f::<11>($($arg),*),
            12 => <$v>::$f::<12>($($arg),*),
            _ => unreachable!("thin conv kernel: K out of range"),
        }
    };
}
pub(crate) use by_k_for;

/// The sum of `lanes` (4, 8 or 16 of them) in a fixed pairwise order: lane `i` with lane
/// `i + n/2`, halving until one is left (for 8 lanes the AVX2 kernel's order).
pub(super) fn sum_lanes(lanes: &[f32]) -> f32 {
    match lanes.len() {
        4 => halve::<4>(lanes),
        8 => halve::<8>(lanes),
        16 => halve::<16>(lanes),
        n => unreachable!("sum_lanes: {n} lanes"),
    }
}

/// [`sum_lanes`] for `N` lanes (a fixed length, so that the halving unrolls and no copy
/// goes through `memcpy`).
fn halve<const N: usize>(lanes: &[f32]) -> f32 {
    let mut buf = [0.0f32; N];
    buf.copy_from_slice(lanes);
    let mut n = N;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            buf[i] += buf[i + n];
        }
    }
    buf[0]
}
