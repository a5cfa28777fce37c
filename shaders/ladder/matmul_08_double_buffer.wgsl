// matmul rung 8 — double-buffered tiles: load the next step while computing this one.
//
// Change against rung 7: two copies of each workgroup tile. At each step an invocation first
// issues its global loads for the *next* depth step into registers, then runs the 16 FMA
// rounds on the current tile, then writes the registers into the other copy. The global-load
// latency is hidden behind the arithmetic instead of waited out at a barrier, and one barrier
// per step suffices (it was two): a copy is only overwritten one step after everyone finished
// reading it. Costs twice the workgroup memory (16 KiB), which can lower occupancy. Same vec4
// padding contract as rung 6.

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

var<workgroup> As: array<vec4<f32>, 512>; // two 256-slot copies
var<workgroup> Bs: array<vec4<f32>, 512>;

fn a_slot(kk: u32, g: u32) -> u32 {
    return kk * 16u + (g ^ ((kk >> 2u) << 1u));
}

// This invocation's vec4 of A and of B for depth step k0 (zero outside the problem).
fn load_a(row0: u32, k0: u32, li: u32) -> vec4<f32> {
    let ar = li / 4u;
    let kq = (li % 4u) * 4u;
    if (row0 + ar < p.m && k0 + kq < p.k) {
        return a[(row0 + ar) * (p.k / 4u) + (k0 + kq) / 4u];
    }
    return vec4<f32>(0.0);
}

fn load_b(col0: u32, k0: u32, li: u32) -> vec4<f32> {
    let bk = li / 16u;
    let bc = li % 16u;
    if (k0 + bk < p.k && col0 + bc * 4u < p.n) {
        return b[(k0 + bk) * (p.n / 4u) + col0 / 4u + bc];
    }
    return vec4<f32>(0.0);
}

fn store_tiles(copy: u32, li: u32, av: vec4<f32>, bv: vec4<f32>) {
    let ar = li / 4u;
    let kq = (li % 4u) * 4u;
    for (var q = 0u; q < 4u; q++) {
        As[copy * 256u + a_slot(kq + q, ar / 4u)][ar % 4u] = av[q];
    }
    Bs[copy * 256u + (li / 16u) * 16u + li % 16u] = bv;
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r++) {
        acc[r] = vec4<f32>(0.0);
    }
    store_tiles(0u, li, load_a(row0, 0u, li), load_b(col0, 0u, li));
    workgroupBarrier();
    var cur = 0u;
    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        let next = k0 + BK;
        var av = vec4<f32>(0.0);
        var bv = vec4<f32>(0.0);
        if (next < p.k) {
            av = load_a(row0, next, li);
            bv = load_b(col0, next, li);
        }
        for (var kk = 0u; kk < BK; kk++) {
            let a4 = As[cur * 256u + a_slot(kk, lid.y)];
            let b4 = Bs[cur * 256u + kk * 16u + lid.x];
            for (var r = 0u; r < 4u; r++) {
                acc[r] = fma(vec4<f32>(a4[r]), b4, acc[r]);
            }
        }
        if (next < p.k) {
            store_tiles(1u - cur, li, av, bv);
        }
        workgroupBarrier();
        cur = 1u - cur;
    }
    let n4 = p.n / 4u;
    let j4 = col0 / 4u + lid.x;
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        if (i < p.m && j4 * 4u < p.n) {
            c[i * n4 + j4] = acc[r];
        }
    }
}
