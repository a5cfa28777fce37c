// matmul rung 1 — naive: one invocation per output element, rows along x.
//
// C[m×n] = A[m×k]·B[k×n], row-major f32. Invocation (x, y) computes C[x, y] as a dot product
// over k, reading A and B straight from storage. Neighbouring invocations (consecutive x, the
// ones a GPU runs together in a warp/wave) work on different rows: their A reads are k floats
// apart and their C writes n floats apart, so every memory transaction carries one useful
// float. Bound by memory transactions; the baseline the other rungs are a multiple of.

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
    let i = gid.x;
    let j = gid.y;
    if (i >= p.m || j >= p.n) {
        return;
    }
    var sum = 0.0;
    for (var q = 0u; q < p.k; q++) {
        sum = fma(a[i * p.k + q], b[q * p.n + j], sum);
    }
    c[i * p.n + j] = sum;
}
