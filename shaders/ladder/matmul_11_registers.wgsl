// matmul rung 11 — registers only: no workgroup memory, no barriers.
//
// Change against rung 6: nothing is staged. Each invocation reads its operands straight from
// storage, four depths at a time: one vec4 of A per row (A[i, k..k+4]) and one vec4 of B per
// depth (B[k+q, j..j+4]), 8 vec4 loads for 64 FMAs into 4 named vec4 accumulators. Every
// value lives in a named variable, never in an indexed array, so a compiler that neither
// unrolls loops nor promotes arrays to registers (a CPU's software rasteriser: SwiftShader,
// lavapipe) keeps the block in registers too. Rows past m read row m − 1 (the results are
// not stored), so the inner loop has no branches.
//
// What bounds it: on a GPU, the re-reads (each A vec4 is loaded by the 16 invocations of a
// row of the grid, each B vec4 by 16 down a column; the caches catch them). On a software
// adapter, the loads and the lane-by-lane address arithmetic, a quarter of rung 6's per FMA.
//
// Requires k and n to be multiples of 4 (whole vec4 rows): the host pads with zeros.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    let i0 = wg.y * 64u + lid.y * 4u;
    let jq = wg.x * 16u + lid.x;
    if (i0 >= p.m || jq >= n4) {
        return;
    }
    let last = p.m - 1u;
    let r0 = i0 * k4;
    let r1 = min(i0 + 1u, last) * k4;
    let r2 = min(i0 + 2u, last) * k4;
    let r3 = min(i0 + 3u, last) * k4;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var kq = 0u; kq < k4; kq++) {
        let bi = kq * 4u * n4 + jq;
        let b0 = b[bi];
        let b1 = b[bi + n4];
        let b2 = b[bi + 2u * n4];
        let b3 = b[bi + 3u * n4];
        let a0 = a[r0 + kq];
        let a1 = a[r1 + kq];
        let a2 = a[r2 + kq];
        let a3 = a[r3 + kq];
        c0 = fma(vec4(a0.x), b0, fma(vec4(a0.y), b1, fma(vec4(a0.z), b2, fma(vec4(a0.w), b3, c0))));
        c1 = fma(vec4(a1.x), b0, fma(vec4(a1.y), b1, fma(vec4(a1.z), b2, fma(vec4(a1.w), b3, c1))));
        c2 = fma(vec4(a2.x), b0, fma(vec4(a2.y), b1, fma(vec4(a2.z), b2, fma(vec4(a2.w), b3, c2))));
        c3 = fma(vec4(a3.x), b0, fma(vec4(a3.y), b1, fma(vec4(a3.z), b2, fma(vec4(a3.w), b3, c3))));
    }
    c[i0 * n4 + jq] = c0;
    if (i0 + 1u < p.m) {
        c[(i0 + 1u) * n4 + jq] = c1;
    }
    if (i0 + 2u < p.m) {
        c[(i0 + 2u) * n4 + jq] = c2;
    }
    if (i0 + 3u < p.m) {
        c[(i0 + 3u) * n4 + jq] = c3;
    }
}
