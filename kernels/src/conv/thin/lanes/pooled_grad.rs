//! The backward of the fused thin conv + 2×2/stride-2 max-pool (+ ReLU) over
//! [`Lanes`]: the weight and bias gradients from the gradient of the pooled
//! output, computed at the pooled resolution (the full-size gradient is never built).
//!
//! # Algorithm
//!
//! Each pooled output `i` sends its gradient `g_i` (zero where a ReLU output is not positive)
//! to one pixel of its window, the arg-max, at window position `d` ∈ {top left, top right,
//! bottom left, bottom right}. So the weight gradient of tap `t` is
//!
//! ```text
//! dW_t = Σ_d Σ_i [argmax_i = pixel(i, d)] · g_i · x_t(pixel(i, d))
//! ```
//!
//! where `x_t(p)` is the input tap `t` reads for conv pixel `p`. Per image the padded input
//! ([`pad_image`], one image ahead) is re-read once by window position ([`window_cols`]: for
//! each tap and each `d` a row of the pooled plane's size; for stride 1 the two positions of a
//! window row are the even and odd halves of one padded input row; for one input channel and
//! a 3-wide kernel only the `(kh+1)·4` distinct "phase" rows, [`uses_phases`]), and the four
//! pixels of every window are a table built once per call ([`window_targets`]). Then, two output channels at a time, per vector of
//! pooled outputs: load `g`, the arg-max (and y), and for each `d` keep the lanes whose
//! arg-max is that window's pixel `d` (a compare and a masked move) and run the K taps' FMAs
//! on them (`2·K` accumulators, one window-column load shared by the pair). The bias adds the
//! gated `g`, one more accumulator per channel. Lanes, then chunks, are summed as the thin
//! weight gradient's are.
//!
//! These are the sums of the composed path (relu_backward, max_pool2d_backward, the thin
//! weight gradient, the bias's plane sums) in another order, so the two agree to rounding,
//! not to the bit; each is deterministic whatever the thread count.
//!
//! # What bounds it
//!
//! The FMAs of the dense weight gradient over the full-size gradient (per `d` a quarter of
//! the lanes are kept), with no full-size plane written or read; per pair of channels and
//! vector of outputs `4·K` window-column loads (from L1) serve `8·K` FMAs, beside eight
//! compares and masked moves, all on the two ports that run 512-bit FMAs at AVX-512. The
//! window columns and the targets start on cache lines (a vector load that splits across two
//! lines costs two) and sit [`FIXED_Q`] floats apart where the plane fits, so their offsets
//! are constants. What reaches memory is the pooled gradient, the arg-max and y, three
//! streams of a quarter of the conv output's size each, prefetched a pair of channels ahead;
//! per image the window columns cost about as much as a few pairs of channels.

use rayon::prelude::*;

use super::{by_k_for, sum_lanes, Kernels, Lanes};
use crate::conv::thin::prefetch_next_input;
use crate::conv::{with_scratch, BatchChunks, Geo};

/// Window positions of a 2×2 pool: top left, top right, bottom left, bottom right.
const WINDOW: usize = 4;

/// Floats per cache line: window columns and targets start on a line, so that no vector
/// load of them splits across two lines (`q` is a multiple of the vector length).
const LINE: usize = 16;

/// How many floats from `p` the next cache line starts.
fn line_skip<T>(p: *const T) -> usize {
    (64 - p as usize % 64) % 64 / 4
}

/// The row stride of the window columns and targets wherever the pooled plane fits in it
/// (conv1 of 28×28 images: 196 outputs): a compile-time stride lets the kernel address its
/// rows as fixed offsets from one pointer; a run-time one costs an add per load.
const FIXED_Q: usize = 256;

/// The kernel width of the phase layout ([`uses_phases`]).
const PHASE_KW: usize = 3;

/// How many pairs of channels ahead the streams are prefetched.
const PAIRS_AHEAD: usize = 1;

/// One image's inputs to [`wgrad_pooled_image`].
pub(in crate::conv) struct PooledGradImage<'a> {
    /// The convolution.
    pub g: &'a Geo,
    /// Pooled rows and columns.
    pub poh: usize,
    pub pow: usize,
    /// Floats per window-column row: the pooled plane rounded up to whole vectors and one
    /// vector more, or [`FIXED_Q`] where that is not more.
    pub q: usize,
    /// [`uses_phases`].
    pub phases: bool,
    /// [`window_targets`].
    pub targets: &'a [u32],
    /// This image's pooled gradient, arg-max and (where a ReLU rectified it) output, `co`
    /// planes of `poh·pow` each.
    pub dy: &'a [f32],
    pub argmax: &'a [u32],
    pub relu_y: Option<&'a [f32]>,
}

/// `targets[d·q + i]`: the conv pixel (index in its plane, as the arg-max gives it) at window
/// position `d` of pooled output `i`; `u32::MAX` past the plane (no arg-max equals it).
fn window_targets(t: &mut [u32], ow: usize, poh: usize, pow: usize, q: usize) {
    t.fill(u32::MAX);
    for (d, row) in t.chunks_exact_mut(q).enumerate() {
        let (dy, dx) = (d / 2, d % 2);
        for r in 0..poh {
            for c in 0..pow {
                row[r * pow + c] = ((2 * r + dy) * ow + 2 * c + dx) as u32;
            }
        }
    }
}

/// Whether the window columns are the phase rows of the padded input (one input channel,
/// stride 1, a kernel [`PHASE_KW`] wide, rows [`FIXED_Q`] apart: conv1 of both presets):
/// tap `(i, j)` at window position `(dy, dx)` reads `padded[2r + dy + i][2cc + dx + j]`, which
/// is phase row `(dy + i, dx + j)`, `phase[e][f][r, cc] = padded[2r + e][2cc + f]`. So
/// `(kh+1)·(kw+1)` rows (16 for 3×3) stand for the `4·K` (36) window columns, and the kernel
/// knows each one's offset at compile time.
fn uses_phases(g: &Geo, q: usize) -> bool {
    g.ci == 1 && g.sh == 1 && g.sw == 1 && g.kw == PHASE_KW && q == FIXED_Q
}

/// The row of `wcol` that tap `t` at window position `d` reads: `t·4 + d`, or in the phase
/// layout ([`uses_phases`]) phase row `(dy + i, dx + j)` of the `(kh+1)×(PHASE_KW+1)` rows.
#[inline(always)]
const fn window_row<const PHASES: bool>(t: usize, d: usize) -> usize {
    if PHASES {
        let (i, j, dy, dx) = (t / PHASE_KW, t % PHASE_KW, d / 2, d % 2);
        (dy + i) * (PHASE_KW + 1) + dx + j
    } else {
        t * WINDOW + d
    }
}

/// Floats between two padded planes ([`pad_image`]): the plane and two vectors' slack (what
/// [`split_row`] reads past a row).
fn pad_stride(g: &Geo, n: usize) -> usize {
    (g.h + 2 * g.ph) * (g.w + 2 * g.pw) + 2 * n
}

/// The `ci` planes of image `x` with their zero padding, [`pad_stride`] floats apart.
#[inline(always)]
pub(super) unsafe fn pad_image<V: Lanes>(g: &Geo, x: &[f32], out: &mut [f32]) {
    let wp = g.w + 2 * g.pw;
    for (plane, padded) in x
        .chunks_exact(g.h * g.w)
        .zip(out.chunks_exact_mut(pad_stride(g, V::N)))
    {
        padded.fill(0.0);
        for (y, row) in plane.chunks_exact(g.w).enumerate() {
            copy_row::<V>(row, &mut padded[(y + g.ph) * wp + g.pw..][..g.w]);
        }
    }
}

/// Fills `wcol[(t·4 + d)·q + i]` with the input that tap `t = (c, i, j)` reads at the conv
/// pixel of window position `d = (dy, dx)` of pooled output `i = (r, cc)`,
/// `padded_c[(2r + dy)·sh + i][(2cc + dx)·sw + j]`, zero past the plane, from the padded
/// planes ([`pad_image`]). For stride 1 the two positions of a window row are the even and
/// odd halves of one padded row from column `j`, split a vector at a time; other strides
/// gather element by element.
#[inline(always)]
unsafe fn window_cols<V: Lanes>(img: &PooledGradImage, pads: &[f32], wcol: &mut [f32]) {
    let (g, n, q) = (img.g, V::N, img.q);
    let (poh, pow) = (img.poh, img.pow);
    let wp = g.w + 2 * g.pw;
    let taps = g.kh * g.kw;
    debug_assert!(wcol.len() >= g.k() * WINDOW * q && pads.len() >= g.ci * pad_stride(g, n));
    for (c, padded) in pads.chunks_exact(pad_stride(g, n)).take(g.ci).enumerate() {
        for line in padded.iter().step_by(LINE) {
            V::prefetch(line);
        }
        let padded = padded.as_ptr();
        if img.phases {
            // One input channel (uses_phases). Phase rows (e, f) and (e, f + 1): the halves
            // of padded rows from column f.
            debug_assert_eq!(g.ci, 1);
            let fw = PHASE_KW + 1;
            for e in 0..g.kh + 1 {
                for f in (0..fw).step_by(2) {
                    let even = wcol.as_mut_ptr().add((e * fw + f) * q);
                    let odd = even.add(q);
                    for r in 0..poh {
                        let src = padded.add((2 * r + e) * wp + f);
                        split_row::<V>(src, pow, even.add(r * pow), odd.add(r * pow));
                    }
                }
            }
            for row in wcol[..(g.kh + 1) * fw * q].chunks_exact_mut(q) {
                V::store(row.as_mut_ptr().add(poh * pow), V::zero());
            }
            continue;
        }
        let per = taps * WINDOW * q;
        let rows = &mut wcol[c * per..(c + 1) * per];
        for t in 0..taps {
            let (i, j) = (t / g.kw, t % g.kw);
            for dy in 0..2 {
                let left = rows.as_mut_ptr().add((t * WINDOW + 2 * dy) * q);
                let right = left.add(q);
                for r in 0..poh {
                    let src = padded.add(((2 * r + dy) * g.sh + i) * wp + j);
                    if g.sw == 1 {
                        split_row::<V>(src, pow, left.add(r * pow), right.add(r * pow));
                    } else {
                        for cc in 0..pow {
                            *left.add(r * pow + cc) = *src.add(2 * cc * g.sw);
                            *right.add(r * pow + cc) = *src.add((2 * cc + 1) * g.sw);
                        }
                    }
                }
            }
        }
        // The kernel reads the rows up to the plane's last whole vector: zero past the plane
        // (over split_row's writes there).
        for row in rows.chunks_exact_mut(q) {
            V::store(row.as_mut_ptr().add(poh * pow), V::zero());
        }
    }
}

/// `dst = src`, a vector at a time (a short row: a `memcpy` call would cost more).
#[inline(always)]
unsafe fn copy_row<V: Lanes>(src: &[f32], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len());
    let (n, len) = (V::N, src.len());
    let mut c = 0;
    while c + n <= len {
        V::store(dst.as_mut_ptr().add(c), V::load(src.as_ptr().add(c)));
        c += n;
    }
    if c < len {
        V::store_first(
            dst.as_mut_ptr().add(c),
            len - c,
            V::load_first(src.as_ptr().add(c), len - c),
        );
    }
}

/// The `2·m` floats at `src` split into their even and odd halves, `m` floats each at `even`
/// and `odd`, a vector of each at a time, in whole vectors: it reads up to `2N − 1` floats past
/// the `2·m` and writes up to `N − 1` floats (of no meaning) past the `m` of each half.
#[inline(always)]
unsafe fn split_row<V: Lanes>(src: *const f32, m: usize, even: *mut f32, odd: *mut f32) {
    let n = V::N;
    let mut c = 0;
    while c < m {
        let (e, o) = V::unzip(V::load(src.add(2 * c)), V::load(src.add(2 * c + n)));
        V::store(even.add(c), e);
        V::store(odd.add(c), o);
        c += n;
    }
}

/// One image's weight- and bias-gradient lanes, `acc[co×(K+1)×N] +=` (per channel its K taps,
/// then its bias), from the pooled gradient: [`window_cols`] into `wcol`, then the channels
/// two at a time ([`pooled_channels`]). `padded`: the image's padded planes ([`pad_image`]).
#[inline(always)]
pub(super) unsafe fn wgrad_pooled_image<V: Lanes, const K: usize>(
    img: &PooledGradImage,
    padded: &[f32],
    wcol: &mut [f32],
    acc: &mut [f32],
) {
    let plane = img.poh * img.pow;
    let co = img.dy.len() / plane;
    debug_assert!(
        img.argmax.len() == co * plane && img.relu_y.is_none_or(|y| y.len() == co * plane)
    );
    debug_assert!(acc.len() >= co * (K + 1) * V::N && img.targets.len() >= WINDOW * img.q);
    window_cols::<V>(img, padded, wcol);
    let mut c = 0;
    while c < co {
        let (at, ap) = (c * plane, acc.as_mut_ptr().add(c * (K + 1) * V::N));
        match (co - c >= 2, img.relu_y.is_some(), img.phases) {
            (true, false, true) => pooled_channels::<V, 2, K, false, true>(img, wcol, at, ap),
            (true, true, true) => pooled_channels::<V, 2, K, true, true>(img, wcol, at, ap),
            (true, false, false) => pooled_channels::<V, 2, K, false, false>(img, wcol, at, ap),
            (true, true, false) => pooled_channels::<V, 2, K, true, false>(img, wcol, at, ap),
            (false, false, true) => pooled_channels::<V, 1, K, false, true>(img, wcol, at, ap),
            (false, true, true) => pooled_channels::<V, 1, K, true, true>(img, wcol, at, ap),
            (false, false, false) => pooled_channels::<V, 1, K, false, false>(img, wcol, at, ap),
            (false, true, false) => pooled_channels::<V, 1, K, true, false>(img, wcol, at, ap),
        }
        c += 2;
    }
}

/// Channels `c..c+CH` of one image (their planes from float `at` of the image's dY, arg-max
/// and y; accumulators at `ap`, K + 1 per channel): all K taps' lanes, and the gated
/// gradient's lanes for the bias.
/// `GATE`: pass the gradient only where y > 0 (the rule of [`crate::elementwise::relu_backward`]).
/// `PHASES`: `img.phases` ([`uses_phases`]: rows [`FIXED_Q`] apart, [`window_row`]).
#[inline(always)]
unsafe fn pooled_channels<
    V: Lanes,
    const CH: usize,
    const K: usize,
    const GATE: bool,
    const PHASES: bool,
>(
    img: &PooledGradImage,
    wcol: &[f32],
    at: usize,
    ap: *mut f32,
) {
    let (n, q) = (V::N, if PHASES { FIXED_Q } else { img.q });
    debug_assert!(PHASES == img.phases);
    let plane = img.poh * img.pow;
    // Without a gate y is never read (dY stands in for it).
    let yp = img.relu_y.unwrap_or(img.dy).as_ptr().add(at);
    let (dp, xp) = (img.dy.as_ptr().add(at), img.argmax.as_ptr().add(at));
    let (wp, tp) = (wcol.as_ptr(), img.targets.as_ptr());

    let mut a = [[V::zero(); K]; CH];
    let mut bias = [V::zero(); CH];
    for ch in 0..CH {
        for (j, v) in a[ch].iter_mut().enumerate() {
            *v = V::load(ap.add((ch * (K + 1) + j) * n));
        }
        bias[ch] = V::load(ap.add((ch * (K + 1) + K) * n));
    }
    let mut o = 0;
    while o < plane {
        let left = plane - o;
        let load = |p: *const f32| {
            if left >= n {
                V::load(p)
            } else {
                V::load_first(p, left)
            }
        };
        let load_index = |p: *const u32| {
            if left >= n {
                V::load_index(p)
            } else {
                V::load_index_first(p, left)
            }
        };
        let g: [V; CH] = std::array::from_fn(|ch| {
            let off = ch * plane + o;
            let g = load(dp.add(off));
            if GATE {
                V::keep(g, V::positive(load(yp.add(off))))
            } else {
                g
            }
        });
        let arg: [V::Index; CH] = std::array::from_fn(|ch| load_index(xp.add(ch * plane + o)));
        // The next pair's lines of the three streams (past the image's last pair: the next
        // image's, which follows it in memory).
        for ch in 0..CH {
            let ahead = (ch + 2 * PAIRS_AHEAD) * plane + o;
            V::prefetch(dp.wrapping_add(ahead));
            V::prefetch(xp.wrapping_add(ahead).cast());
            if GATE {
                V::prefetch(yp.wrapping_add(ahead));
            }
        }
        for ch in 0..CH {
            bias[ch] = V::add(bias[ch], g[ch]);
        }
        for d in 0..WINDOW {
            let target = V::load_index(tp.add(d * q + o));
            let gd: [V; CH] = std::array::from_fn(|ch| V::keep(g[ch], V::eq(arg[ch], target)));
            for j in 0..K {
                let cv = V::load(wp.add(window_row::<PHASES>(j, d) * q + o));
                for ch in 0..CH {
                    a[ch][j] = V::mul_add(gd[ch], cv, a[ch][j]);
                }
            }
        }
        o += n;
    }
    for ch in 0..CH {
        for (j, v) in a[ch].iter().enumerate() {
            V::store(ap.add((ch * (K + 1) + j) * n), *v);
        }
        V::store(ap.add((ch * (K + 1) + K) * n), bias[ch]);
    }
}

/// Weight gradient (overwritten) and, if asked, bias gradient at level `V` from `dy`, the
/// gradient of the fused forward's output, and its arg-max, over the fixed chunk partition
/// `parts`; `relu_y`: the forward's output where it rectified (its gradient passes where
/// `y > 0`).
#[allow(clippy::too_many_arguments)]
pub(in crate::conv) fn backward_params_pool<V: Kernels>(
    g: &Geo,
    x: &[f32],
    dy: &[f32],
    argmax: &[u32],
    relu_y: Option<&[f32]>,
    dw: &mut [f32],
    mut db: Option<&mut [f32]>,
    parts: BatchChunks,
) {
    let k = g.k();
    let (poh, pow) = (g.oh / 2, g.ow / 2);
    let plane = poh * pow;
    // Whole vectors, and one more: room for split_row's writes past the plane.
    let q = ((plane.div_ceil(V::N) + 1) * V::N).max(FIXED_Q);
    let phases = uses_phases(g, q);
    let pooled = g.co * plane;
    let mut target_buf = vec![0u32; WINDOW * q + LINE];
    let skip = line_skip(target_buf.as_ptr());
    let targets = &mut target_buf[skip..skip + WINDOW * q];
    window_targets(targets, g.ow, poh, pow, q);
    let (pads, cols) = (g.ci * pad_stride(g, V::N), k * WINDOW * q);
    let targets = &*targets;
    // Per chunk: per channel its K weights' sums, then its bias's.
    let chunks: Vec<Vec<f32>> = (0..parts.count)
        .into_par_iter()
        .map(|ch| {
            let images = parts.images(ch);
            let acc_len = g.co * (k + 1) * V::N;
            // One scratch for the chunk: the accumulators (line-aligned, as are the window
            // columns after them), then two sets of padded planes (this image's, the next's).
            with_scratch(LINE + acc_len + cols + 2 * pads, |buf| {
                let skip = line_skip(buf.as_ptr());
                let (acc, rest) = buf[skip..].split_at_mut(acc_len);
                let (wcol, rest) = rest.split_at_mut(cols);
                let (mut this, mut next) = rest.split_at_mut(pads);
                acc.fill(0.0);
                let image = |n: usize| &x[n * g.in_image()..(n + 1) * g.in_image()];
                // Each image's planes are padded one image ahead (the first of the chunk just
                // before): loads right after the stores to the same lines, of other widths,
                // would wait for those stores to reach L1.
                // SAFETY (both): the caller checked the level; the pads hold ci planes.
                unsafe { V::pad_image(g, image(images.start), this) };
                for n in images.clone() {
                    if n + 1 < images.end {
                        prefetch_next_input(g, x, n);
                        unsafe { V::pad_image(g, image(n + 1), next) };
                    }
                    let at = n * pooled..(n + 1) * pooled;
                    let img = PooledGradImage {
                        g,
                        poh,
                        pow,
                        q,
                        phases,
                        targets,
                        dy: &dy[at.clone()],
                        argmax: &argmax[at.clone()],
                        relu_y: relu_y.map(|y| &y[at.clone()]),
                    };
                    // SAFETY: the caller checked the level; this holds the padded planes,
                    // wcol K·4·q floats, acc co·(K+1)·N, the image's planes co·poh·pow each.
                    unsafe { by_k_for!(k, V, wgrad_pooled_image(&img, this, wcol, acc)) }
                    std::mem::swap(&mut this, &mut next);
                }
                acc.chunks_exact(V::N).map(sum_lanes).collect::<Vec<f32>>()
            })
        })
        .collect();
    // Chunks in chunk order.
    let mut total = chunks[0].clone();
    for part in &chunks[1..] {
        for (t, s) in total.iter_mut().zip(part) {
            *t += *s;
        }
    }
    for (c, sums) in total.chunks_exact(k + 1).enumerate() {
        dw[c * k..(c + 1) * k].copy_from_slice(&sums[..k]);
        if let Some(db) = db.as_deref_mut() {
            db[c] = sums[k];
        }
    }
}
