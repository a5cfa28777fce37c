// matmul rung 4 — 1-D register tile: 16 outputs per invocation, down a column.
//
// Change against rung 3: a workgroup of 256 invocations owns a 64×64 tile of C, each
// invocation 16 consecutive rows of one column, accumulated in registers. Per staged depth,
// an invocation reads one B value into a register and reuses it for 16 FMAs with 16 A values
// (which all invocations of a warp read at the same address: a broadcast). Workgroup-memory
// reads per FMA fall from 2 to ~1, and the tile is 4× taller and 4× wider than rung 3's, so
// each global element is loaded 4× less often. BK = 16 depths are staged per step (4 A and 4 B floats per invocation).

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
const TM: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [BM][BK]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let jj = li % BN;
    let ty = li / BN;
    var acc: array<f32, 16>;
    for (var r = 0u; r < TM; r++) {
        acc[r] = 0.0;
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
            let bv = Bs[kk * BN + jj];
            for (var r = 0u; r < TM; r++) {
                acc[r] = fma(As[(ty * TM + r) * BK + kk], bv, acc[r]);
            }
        }
        workgroupBarrier();
    }
    let j = col0 + jj;
    for (var r = 0u; r < TM; r++) {
        let i = row0 + ty * TM + r;
        if (i < p.m && j < p.n) {
            c[i * p.n + j] = acc[r];
        }
    }
}
