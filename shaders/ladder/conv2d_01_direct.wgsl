// conv2d rung 1 — direct: one invocation per output element (forward and weight gradient).
//
// forward:     y[n,co,oh,ow]  = Σ_{ci,r,s} w[co,ci,r,s] · x[n,ci,oh·sh−ph+r, ow·sw−pw+s]
// weight_grad: dw[co,ci,r,s]  = Σ_{n,oh,ow} dy[n,co,oh,ow] · x[n,ci,oh·sh−ph+r, ow·sw−pw+s]
// Each invocation decodes its flat index into coordinates and runs the whole sum from
// storage, skipping taps in the zero padding. Nothing is shared between invocations: every
// weight is re-read for each output pixel, every input pixel kh·kw times per channel. The
// weight gradient is worse: only co·ci·kh·kw invocations (a few thousand), each summing
// batch·oh·ow products, so most of a large GPU idles. Bound by memory and, for dw,
// parallelism. The correctness baseline of the conv ladder.

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
    kdim: u32,
    pix: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;

// The flat index of this invocation over a (x, y) grid of 256-wide workgroups.
fn flat(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * nwg.x + wg.x) * 256u + li;
}

// Input row (or column) read by tap `r` at output position `o`, or -1 in the padding.
fn tap(o: u32, stride: u32, pad: u32, r: u32, size: u32) -> i32 {
    let i = i32(o * stride + r) - i32(pad);
    if (i < 0 || i >= i32(size)) {
        return -1;
    }
    return i;
}

@compute @workgroup_size(256)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = flat(wg, nwg, li);
    if (idx >= p.batch * p.cout * p.pix) {
        return;
    }
    let j = idx % p.ow;
    let i = (idx / p.ow) % p.oh;
    let co = (idx / p.pix) % p.cout;
    let n = idx / (p.pix * p.cout);
    var sum = 0.0;
    for (var ci = 0u; ci < p.cin; ci++) {
        let plane = (n * p.cin + ci) * p.h * p.w;
        let wk = (co * p.cin + ci) * p.kh * p.kw;
        for (var r = 0u; r < p.kh; r++) {
            let ih = tap(i, p.sh, p.ph, r, p.h);
            if (ih < 0) {
                continue;
            }
            for (var s = 0u; s < p.kw; s++) {
                let iw = tap(j, p.sw, p.pw, s, p.w);
                if (iw >= 0) {
                    sum = fma(wt[wk + r * p.kw + s], x[plane + u32(ih) * p.w + u32(iw)], sum);
                }
            }
        }
    }
    y[idx] = sum;
}

@compute @workgroup_size(256)
fn weight_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = flat(wg, nwg, li);
    if (idx >= p.cout * p.kdim) {
        return;
    }
    let s = idx % p.kw;
    let r = (idx / p.kw) % p.kh;
    let ci = (idx / (p.kw * p.kh)) % p.cin;
    let co = idx / p.kdim;
    var sum = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let plane = (n * p.cin + ci) * p.h * p.w;
        let g = (n * p.cout + co) * p.pix;
        for (var i = 0u; i < p.oh; i++) {
            let ih = tap(i, p.sh, p.ph, r, p.h);
            if (ih < 0) {
                continue;
            }
            for (var j = 0u; j < p.ow; j++) {
                let iw = tap(j, p.sw, p.pw, s, p.w);
                if (iw >= 0) {
                    sum = fma(dy[g + i * p.ow + j], x[plane + u32(ih) * p.w + u32(iw)], sum);
                }
            }
        }
    }
    dw[idx] = sum;
}
