// conv2d.wgsl — 2-D convolution over NCHW, the twin of kernels/src/conv/.
//
// All three products are implicit GEMMs: the tile loop matmul.wgsl uses, but operands are
// gathered from the image on the fly instead of from an im2col buffer (no extra memory):
//   MODE 0, forward:       y[co, (n,oh,ow)]   = Σ_(ci,kh,kw) w[co, (ci,kh,kw)] · x̂[(ci,kh,kw), (n,oh,ow)] + bias[co]
//   MODE 1, input grad:    dx[ci, (n,ih,iw)]  = Σ_(co,kh,kw) w[co, ci, kh, kw] · dŷ[(co,kh,kw), (n,ih,iw)]
//   MODE 2, weight grad:   dw[co, (ci,kh,kw)] = Σ_(n,oh,ow)  dy[n, co, oh, ow] · x̂[(n,oh,ow), (ci,kh,kw)]
// where x̂ reads the input pixel under a kernel tap (0 in the padding) and dŷ reads the output
// pixel that a tap maps an input pixel to (0 where the stride skips it).
//
// Uses from shaders/common/ (appended when the module is built):
//   tile.wgsl — `tile_gemm`, the register-tiled loop (16×16 invocations, TM×TN accumulators
//   each, 64×64 tiles unless the device's autotune chose another shape; K in steps of BK = 16
//   through the workgroup tiles As and Bs);
//   grid.wgsl — `flat_group`; tree.wgsl — `workgroup_sum` (bias_grad).
// This file supplies the loop's `stage_tiles` (gathers from the image) and `store_c` (the
// scatter to NCHW, + bias).
//
// `bias_grad` sums dy over batch and pixels per output channel: one workgroup per channel,
// a fixed-order tree reduction, so the result is deterministic.

override MODE: u32 = 0u;

struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// MODE 0: src0 = w, src1 = x. MODE 1: src0 = w, src1 = dy. MODE 2: src0 = dy, src1 = x.
@group(0) @binding(1) var<storage, read> src0: array<f32>;
@group(0) @binding(2) var<storage, read> src1: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// x[n, ci, oh·sh − ph + kh, ow·sw − pw + kw], 0 in the padding.
fn x_tap(n: u32, ci: u32, oh: u32, ow: u32, kh: u32, kw: u32) -> f32 {
    let ih = i32(oh * p.sh + kh) - i32(p.ph);
    let iw = i32(ow * p.sw + kw) - i32(p.pw);
    if (ih < 0 || iw < 0 || ih >= i32(p.h) || iw >= i32(p.w)) {
        return 0.0;
    }
    return src1[((n * p.cin + ci) * p.h + u32(ih)) * p.w + u32(iw)];
}

// A operand: row i, reduction index kk (already bounds-checked).
fn gather_a(i: u32, kk: u32) -> f32 {
    let taps = p.kh * p.kw;
    if (MODE == 0u) {
        return src0[i * p.k + kk];
    } else if (MODE == 1u) {
        // w[co, ci = i, tap]
        let co = kk / taps;
        return src0[(co * p.cin + i) * taps + kk % taps];
    }
    // dy[n, co = i, pixel]
    let ohw = p.oh * p.ow;
    let n = kk / ohw;
    return src0[(n * p.cout + i) * ohw + kk % ohw];
}

// B operand: reduction index kk, column j (already bounds-checked).
fn gather_b(kk: u32, j: u32) -> f32 {
    let taps = p.kh * p.kw;
    if (MODE == 0u) {
        let ci = kk / taps;
        let t = kk % taps;
        let ohw = p.oh * p.ow;
        let n = j / ohw;
        let pix = j % ohw;
        return x_tap(n, ci, pix / p.ow, pix % p.ow, t / p.kw, t % p.kw);
    } else if (MODE == 1u) {
        // The output pixel (oh, ow) whose tap (kh, kw) lands on input pixel (ih, iw).
        let co = kk / taps;
        let t = kk % taps;
        let hw = p.h * p.w;
        let n = j / hw;
        let pix = j % hw;
        let th = i32(pix / p.w + p.ph) - i32(t / p.kw);
        let tw = i32(pix % p.w + p.pw) - i32(t % p.kw);
        if (th < 0 || tw < 0) {
            return 0.0;
        }
        let uh = u32(th);
        let uw = u32(tw);
        if (uh % p.sh != 0u || uw % p.sw != 0u) {
            return 0.0;
        }
        let oh = uh / p.sh;
        let ow = uw / p.sw;
        if (oh >= p.oh || ow >= p.ow) {
            return 0.0;
        }
        return src1[((n * p.cout + co) * p.oh + oh) * p.ow + ow];
    }
    // MODE 2: kk = (n, oh, ow), j = (ci, kh, kw)
    let ohw = p.oh * p.ow;
    let n = kk / ohw;
    let pix = kk % ohw;
    let ci = j / taps;
    let t = j % taps;
    return x_tap(n, ci, pix / p.ow, pix % p.ow, t / p.kw, t % p.kw);
}

fn store_c(i: u32, j: u32, v: f32) {
    if (MODE == 0u) {
        let ohw = p.oh * p.ow;
        var out = v;
        if (p.has_bias != 0u) {
            out += bias[i];
        }
        dst[((j / ohw) * p.cout + i) * ohw + j % ohw] = out;
    } else if (MODE == 1u) {
        let hw = p.h * p.w;
        dst[((j / hw) * p.cin + i) * hw + j % hw] = v;
    } else {
        dst[i * p.n + j] = v;
    }
}

// Output rows row0.., columns col0.., reduction indices k0..k0+BK gathered into As and Bs,
// one quad of 4 elements per invocation per pass.
fn stage_tiles(row0: u32, col0: u32, k0: u32, li: u32) {
    // A tile BM×16: quad q gathers row q/4, reduction indices 4·(q%4)..+4.
    for (var q = li; q < QUADS_A; q += INVOCATIONS) {
        let ai = row0 + q / 4u;
        let ak = (q % 4u) * 4u;
        for (var e = 0u; e < 4u; e++) {
            var v = 0.0;
            if (ai < p.m && k0 + ak + e < p.k) {
                v = gather_a(ai, k0 + ak + e);
            }
            As[(ak + e) * BM + q / 4u] = v;
        }
    }
    // B tile 16×BN: quad q gathers reduction index q/(BN/4), 4 columns from 4·(q%(BN/4)).
    for (var q = li; q < QUADS_B; q += INVOCATIONS) {
        let bk = q / (BN / 4u);
        let bj = (q % (BN / 4u)) * 4u;
        for (var e = 0u; e < 4u; e++) {
            var v = 0.0;
            if (k0 + bk < p.k && col0 + bj + e < p.n) {
                v = gather_b(k0 + bk, col0 + bj + e);
            }
            Bs[bk * BN + bj + e] = v;
        }
    }
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    tile_gemm(wg, nwg, lid, li, p.m, p.n, p.k);
}

// db[co] = Σ_(n, pixel) dy[n, co, pixel]; src0 = dy, dst = db. One workgroup per channel
// (co = workgroup index over a 2-D grid, as channel counts may exceed 65535 in principle).
@compute @workgroup_size(256)
fn bias_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let co = flat_group(wg, nwg);
    if (co >= p.cout) {
        return;
    }
    let ohw = p.oh * p.ow;
    let total = p.batch * ohw;
    var s = 0.0;
    for (var e = li; e < total; e += 256u) {
        s += src0[((e / ohw) * p.cout + co) * ohw + e % ohw];
    }
    let sum = workgroup_sum(li, s);
    if (li == 0u) {
        dst[co] = sum;
    }
}
