// matmul rung 6 — vec4 loads and stores.
//
// Change against rung 5: every global read and write moves four floats at once, and the A
// tile is stored transposed (depth-major) in workgroup memory so the inner loop also reads
// four consecutive floats of each operand as one vec4. Staging is one vec4 of A and one of B
// per invocation per step (it was 4 + 4 scalar loads), and the 4×4 block is 4 vec4
// accumulators updated by vec4 FMAs. Fewer, wider memory instructions: the instruction issue
// that bound rung 5 on wide GPUs drops about 4×.
//
// Requires k and n to be multiples of 4 (whole vec4 rows): the host pads A's rows and B's
// and C's rows with zeros to that width; the zero columns add nothing to the products.

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

// As[kk * 16 + i / 4][i % 4] = A[row0 + i, k0 + kk]; Bs[kk * 16 + j / 4][j % 4] = B[k0 + kk, col0 + j].
var<workgroup> As: array<vec4<f32>, 256>;
var<workgroup> Bs: array<vec4<f32>, 256>;

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
        // A: row li / 4, depths (li % 4) * 4 ..+4, scattered into the depth-major tile.
        let ar = li / 4u;
        let kq = (li % 4u) * 4u;
        var av = vec4<f32>(0.0);
        if (row0 + ar < p.m && k0 + kq < p.k) {
            av = a[(row0 + ar) * k4 + (k0 + kq) / 4u];
        }
        for (var q = 0u; q < 4u; q++) {
            As[(kq + q) * 16u + ar / 4u][ar % 4u] = av[q];
        }
        // B: depth li / 16, columns (li % 16) * 4 ..+4.
        let bk = li / 16u;
        let bc = li % 16u;
        var bv = vec4<f32>(0.0);
        if (k0 + bk < p.k && col0 + bc * 4u < p.n) {
            bv = b[(k0 + bk) * n4 + col0 / 4u + bc];
        }
        Bs[bk * 16u + bc] = bv;
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a4 = As[kk * 16u + lid.y];
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
