// matmul rung 9 — subgroup operations: share A through shuffles instead of workgroup memory.
//
// Change against rung 8 (a different design, not an increment): no workgroup memory and no
// barriers. A workgroup of 64 invocations owns an 8×64 tile of C; invocation j holds column
// j's 8 accumulators. For each chunk of `subgroup_size` depths, lane l of a subgroup loads
// A[row, k0 + l] for the 8 rows (coalesced along A's rows); then for each depth q of the
// chunk every lane takes A[row, k0 + q] from lane q with `subgroupShuffle` (a register-to-
// register exchange) and multiplies it with its own B[k0 + q, j], read straight from memory
// (coalesced along B's rows, and shared by the 8 rows). What it teaches: subgroups exchange
// registers without a round trip through workgroup memory and without barriers; what it
// gives up: B is re-read from cache by every row tile, so it is bound by cache bandwidth and
// is not faster than the tiled rungs by itself. Needs SUBGROUP and a subgroup size ≤ 64 (the
// workgroup must hold whole subgroups); every invocation runs every shuffle (uniform loops).
// (naga takes the subgroup built-ins from the device feature; no `enable` directive.)

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

const BM: u32 = 8u;
const BN: u32 = 64u;

@compute @workgroup_size(64)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    let row0 = wg.y * BM;
    let j = wg.x * BN + li;
    var acc: array<f32, 8>;
    for (var r = 0u; r < BM; r++) {
        acc[r] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 += sg_size) {
        var av: array<f32, 8>;
        for (var r = 0u; r < BM; r++) {
            av[r] = 0.0;
            if (row0 + r < p.m && k0 + lane < p.k) {
                av[r] = a[(row0 + r) * p.k + k0 + lane];
            }
        }
        for (var q = 0u; q < sg_size; q++) {
            var bv = 0.0;
            if (k0 + q < p.k && j < p.n) {
                bv = b[(k0 + q) * p.n + j];
            }
            for (var r = 0u; r < BM; r++) {
                acc[r] = fma(subgroupShuffle(av[r], q), bv, acc[r]);
            }
        }
    }
    if (j < p.n) {
        for (var r = 0u; r < BM; r++) {
            if (row0 + r < p.m) {
                c[(row0 + r) * p.n + j] = acc[r];
            }
        }
    }
}
