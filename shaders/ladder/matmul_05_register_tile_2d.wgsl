// matmul rung 5 — 2-D register tile: a 4×4 block of outputs per invocation.
//
// Change against rung 4: each of the 16×16 invocations owns a 4×4 block of the 64×64 tile.
// Per staged depth it loads 4 A and 4 B values into registers and does their 16 products
// (an outer product): 16 FMAs per 8 workgroup-memory reads, against 16 per 17 in rung 4.
// The 16 accumulators stay in registers for the whole k loop. This is the shape of the
// production tile (shaders/common/tile.wgsl); the next rungs change how the tiles are moved.

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

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [BM][BK]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    var acc: array<f32, 16>;
    for (var q = 0u; q < 16u; q++) {
        acc[q] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        for (var q = 0u; q < 4u; q++) {
            let e = li + q * 256u;
            let ar = e / BK;
            let ak = e % BK;
            var av = 0.0;
            if (row0 + ar < p.m && k0 + ak < p.k) {
                av = a[(row0 + ar) * p.k + k0 + ak];
            }
            As[e] = av;
            let bk = e / BN;
            let bc = e % BN;
            var bv = 0.0;
            if (k0 + bk < p.k && col0 + bc < p.n) {
                bv = b[(k0 + bk) * p.n + col0 + bc];
            }
            Bs[e] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var q = 0u; q < 4u; q++) {
                ar[q] = As[(lid.y * 4u + q) * BK + kk];
                br[q] = Bs[kk * BN + lid.x * 4u + q];
            }
            for (var r = 0u; r < 4u; r++) {
                for (var s = 0u; s < 4u; s++) {
                    acc[r * 4u + s] = fma(ar[r], br[s], acc[r * 4u + s]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        for (var s = 0u; s < 4u; s++) {
            let j = col0 + lid.x * 4u + s;
            if (i < p.m && j < p.n) {
                c[i * p.n + j] = acc[r * 4u + s];
            }
        }
    }
}
