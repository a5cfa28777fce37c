// matmul rung 7 — a conflict-free workgroup-memory layout (XOR swizzle).
//
// Change against rung 6: where each A value lands in the transposed tile. Workgroup memory is
// split into 32 banks of 4 bytes; accesses by one warp to different addresses in the same
// bank are serialised. In rung 6 a warp's 32 scattered writes of A go to 8 rows × 4 depth
// groups whose addresses differ by multiples of 64 floats, so they fall into 8 banks: 4-way
// conflicts. Here the vec4 slot of row group g at depth kk is `g ^ ((kk / 4) * 2)`, which
// sends the 4 depth groups to different 8-bank quarters: 32 writes, 32 banks. The reads
// apply the same XOR (every invocation of a warp still reads one broadcast vec4 per operand),
// so nothing else changes. Padding rows (stride 64 + x) cannot do this without breaking the
// 16-byte alignment the vec4 reads need. Same vec4 padding contract as rung 6.

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

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

// The vec4 slot of row group g (rows 4g..4g+3) at depth kk.
fn a_slot(kk: u32, g: u32) -> u32 {
    return kk * 16u + (g ^ ((kk >> 2u) << 1u));
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let k4 = p.k / 4u;
    let n4 = p.n / 4u;
    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let ar = li / 4u;
        let kq = (li % 4u) * 4u;
        var av = vec4<f32>(0.0);
        if (row0 + ar < p.m && k0 + kq < p.k) {
            av = a[(row0 + ar) * k4 + (k0 + kq) / 4u];
        }
        for (var q = 0u; q < 4u; q++) {
            As[a_slot(kq + q, ar / 4u)][ar % 4u] = av[q];
        }
        let bk = li / 16u;
        let bc = li % 16u;
        var bv = vec4<f32>(0.0);
        if (k0 + bk < p.k && col0 + bc * 4u < p.n) {
            bv = b[(k0 + bk) * n4 + col0 / 4u + bc];
        }
        Bs[bk * 16u + bc] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a4 = As[a_slot(kk, lid.y)];
            let b4 = Bs[kk * 16u + lid.x];
            for (var r = 0u; r < 4u; r++) {
                acc[r] = fma(vec4<f32>(a4[r]), b4, acc[r]);
            }
        }
        workgroupBarrier();
    }
    let j4 = col0 / 4u + lid.x;
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        if (i < p.m && j4 * 4u < p.n) {
            c[i * n4 + j4] = acc[r];
        }
    }
}
