// matmul rung 3 — workgroup-memory tiles.
//
// Change against rung 2: the 16×16 invocations of a workgroup compute a 16×16 tile of C
// together, so they need the same 16 rows of A and 16 columns of B. They stage them through
// workgroup (shared) memory 16 depths at a time: each invocation loads one float of A and one
// of B, a barrier, then every invocation runs 16 FMAs from the staged tiles. Global reads
// drop 16-fold (each element is read m/16 or n/16 times instead of m or n). Now bound by
// workgroup-memory reads: 2 of them per FMA.

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

const T: u32 = 16u;

var<workgroup> As: array<f32, 256>;
var<workgroup> Bs: array<f32, 256>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = wg.y * T + lid.y;
    let j = wg.x * T + lid.x;
    var sum = 0.0;
    // Uniform loop: every invocation reaches every barrier, even those outside C.
    for (var k0 = 0u; k0 < p.k; k0 += T) {
        var av = 0.0;
        if (i < p.m && k0 + lid.x < p.k) {
            av = a[i * p.k + k0 + lid.x];
        }
        var bv = 0.0;
        if (k0 + lid.y < p.k && j < p.n) {
            bv = b[(k0 + lid.y) * p.n + j];
        }
        As[lid.y * T + lid.x] = av;
        Bs[lid.y * T + lid.x] = bv;
        workgroupBarrier();
        for (var q = 0u; q < T; q++) {
            sum = fma(As[lid.y * T + q], Bs[q * T + lid.x], sum);
        }
        workgroupBarrier();
    }
    if (i < p.m && j < p.n) {
        c[i * p.n + j] = sum;
    }
}
