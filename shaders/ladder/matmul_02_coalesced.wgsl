// matmul rung 2 — coalesced: columns along x.
//
// Change against rung 1: invocation (x, y) computes C[y, x] instead of C[x, y]. Consecutive
// invocations now share the row of A (one broadcast read) and read consecutive floats of B's
// row and write consecutive floats of C, so a warp's 32 reads of B are one 128-byte
// transaction instead of 32. Same arithmetic, same dot product per invocation; only the
// mapping of invocations to outputs changed. Still bound by memory: every FMA reads B from
// L1/L2, and each B element is read m times, each A element n times.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

@compute @workgroup_size(16, 16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i = gid.y;
    if (i >= p.m || j >= p.n) {
        return;
    }
    var sum = 0.0;
    for (var q = 0u; q < p.k; q++) {
        sum = fma(a[i * p.k + q], b[q * p.n + j], sum);
    }
    c[i * p.n + j] = sum;
}
