// pool.wgsl — 2-D max pooling over NCHW, the twin of kernels/src/pool.rs.
//
// forward:  one invocation per output element scans its window; the arg-max (u32) is the
//           winner's index inside its input plane (ih·in_w + iw), first maximum on ties
//           (strict `>` while scanning in row-major order).
// backward: one invocation per *input* element gathers dy from every window that covers it
//           and whose arg-max is this element. A gather instead of a scatter needs no atomics,
//           and visiting windows in row-major order adds in the same order as the CPU kernel,
//           so overlapping windows give the same bits on every run.
// Both are memory-bound. Grids are 2-D (x ≤ 65535 workgroups) so any tensor fits.
//
// Uses from shaders/common/ (appended when the module is built): grid.wgsl — `flat_id`.

struct Params {
    planes: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    oh: u32,
    ow: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// forward: src = x, out = y, idx = argmax (written). backward: src = dy, out = dx, idx = argmax.
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> idx: array<u32>;

@compute @workgroup_size(256)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let e = flat_id(wg, nwg, li);
    let ohw = p.oh * p.ow;
    if (e >= p.planes * ohw) {
        return;
    }
    let plane = e / ohw;
    let oy = (e % ohw) / p.ow;
    let ox = e % p.ow;
    let base = plane * p.h * p.w;
    var best_i = (oy * p.sh) * p.w + ox * p.sw;
    var best = src[base + best_i];
    for (var dy = 0u; dy < p.kh; dy++) {
        for (var dx = 0u; dx < p.kw; dx++) {
            let i = (oy * p.sh + dy) * p.w + ox * p.sw + dx;
            let v = src[base + i];
            if (v > best) {
                best = v;
                best_i = i;
            }
        }
    }
    out[e] = best;
    idx[e] = best_i;
}

@compute @workgroup_size(256)
fn backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let e = flat_id(wg, nwg, li);
    let hw = p.h * p.w;
    if (e >= p.planes * hw) {
        return;
    }
    let plane = e / hw;
    let i = e % hw;
    let iy = i / p.w;
    let ix = i % p.w;
    // Windows oy with oy·sh ≤ iy < oy·sh + kh, i.e. oy in [ceil((iy−kh+1)/sh), iy/sh].
    var oy0 = 0u;
    if (iy + 1u > p.kh) {
        oy0 = (iy + 1u - p.kh + p.sh - 1u) / p.sh;
    }
    let oy1 = min(iy / p.sh + 1u, p.oh);
    var ox0 = 0u;
    if (ix + 1u > p.kw) {
        ox0 = (ix + 1u - p.kw + p.sw - 1u) / p.sw;
    }
    let ox1 = min(ix / p.sw + 1u, p.ow);
    var acc = 0.0;
    let obase = plane * p.oh * p.ow;
    for (var oy = oy0; oy < oy1; oy++) {
        for (var ox = ox0; ox < ox1; ox++) {
            let o = obase + oy * p.ow + ox;
            if (idx[o] == i) {
                acc += src[o];
            }
        }
    }
    out[e] = acc;
}
