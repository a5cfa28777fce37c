// conv2d rung 2 — im2col + GEMM: unfold the input, then run tiled matrix products.
//
// Change against rung 1: two passes instead of one. `im2col` writes, for every image n,
// the column matrix col_n[K×P] (K = cin·kh·kw, P = oh·ow; taps in the padding become zeros),
// so the convolution's irregular indexing happens once, in a pass bound by memory. Then
//   forward_gemm:      y_n[cout×P] = W[cout×K] · col_n[K×P]          (one GEMM per image, z = n)
//   weight_grad_gemm:  dW[cout×K]  = Σ_n dy_n[cout×P] · col_n[K×P]ᵀ (z = chunk of images)
// run the 64×64 register-tiled GEMM of the matmul ladder (rung 5), so every loaded weight and
// input value is reused from workgroup memory and registers. The price is col: K/(sh·sw)
// times the input's size written and read back. The weight gradient's output is small
// (cout×K), so with one chunk it has few workgroups each summing batch·P products: rung 3
// splits that reduction. With `chunks` > 1, chunk z writes its partial sum to dw[z·cout·K ..].

struct Params {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
    kdim: u32,
    pix: u32,
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> col: array<f32>;
@group(0) @binding(5) var<storage, read_write> y: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

var<workgroup> As: array<f32, 1024>; // [BM][BK]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]

@compute @workgroup_size(256)
fn im2col(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.y * nwg.x + wg.x) * 256u + li;
    if (idx >= p.batch * p.kdim * p.pix) {
        return;
    }
    let q = idx % p.pix;
    let kidx = (idx / p.pix) % p.kdim;
    let n = idx / (p.pix * p.kdim);
    let s = kidx % p.kw;
    let r = (kidx / p.kw) % p.kh;
    let ci = kidx / (p.kw * p.kh);
    let ih = i32((q / p.ow) * p.sh + r) - i32(p.ph);
    let iw = i32((q % p.ow) * p.sw + s) - i32(p.pw);
    var v = 0.0;
    if (ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w)) {
        v = x[((n * p.cin + ci) * p.h + u32(ih)) * p.w + u32(iw)];
    }
    col[idx] = v;
}

// One 16-deep step of the 4×4-per-invocation outer products (rung 5 of the matmul ladder).
fn tile_step(lid: vec3<u32>, acc: ptr<function, array<f32, 16>>) {
    for (var kk = 0u; kk < BK; kk++) {
        var ar: array<f32, 4>;
        var br: array<f32, 4>;
        for (var q = 0u; q < 4u; q++) {
            ar[q] = As[(lid.y * 4u + q) * BK + kk];
            br[q] = Bs[kk * BN + lid.x * 4u + q];
        }
        for (var r = 0u; r < 4u; r++) {
            for (var s = 0u; s < 4u; s++) {
                (*acc)[r * 4u + s] = fma(ar[r], br[s], (*acc)[r * 4u + s]);
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn forward_gemm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM; // output channels
    let col0 = wg.x * BN; // pixels
    let n = wg.z;
    let cbase = n * p.kdim * p.pix;
    var acc: array<f32, 16>;
    for (var q = 0u; q < 16u; q++) {
        acc[q] = 0.0;
    }
    for (var k0 = 0u; k0 < p.kdim; k0 += BK) {
        for (var q = 0u; q < 4u; q++) {
            let e = li + q * 256u;
            let ar = e / BK;
            let ak = e % BK;
            var av = 0.0;
            if (row0 + ar < p.cout && k0 + ak < p.kdim) {
                av = wt[(row0 + ar) * p.kdim + k0 + ak];
            }
            As[e] = av;
            let bk = e / BN;
            let bc = e % BN;
            var bv = 0.0;
            if (k0 + bk < p.kdim && col0 + bc < p.pix) {
                bv = col[cbase + (k0 + bk) * p.pix + col0 + bc];
            }
            Bs[e] = bv;
        }
        workgroupBarrier();
        tile_step(lid, &acc);
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        for (var s = 0u; s < 4u; s++) {
            let j = col0 + lid.x * 4u + s;
            if (i < p.cout && j < p.pix) {
                y[(n * p.cout + i) * p.pix + j] = acc[r * 4u + s];
            }
        }
    }
}

@compute @workgroup_size(16, 16)
fn weight_grad_gemm(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM; // output channels
    let col0 = wg.x * BN; // reduction rows of col (ci, r, s)
    let per = (p.batch + p.chunks - 1u) / p.chunks;
    let n_end = min((wg.z + 1u) * per, p.batch);
    var acc: array<f32, 16>;
    for (var q = 0u; q < 16u; q++) {
        acc[q] = 0.0;
    }
    for (var n = wg.z * per; n < n_end; n++) {
        for (var p0 = 0u; p0 < p.pix; p0 += BK) {
            for (var q = 0u; q < 4u; q++) {
                let e = li + q * 256u;
                // A = dy_n [cout×P], B = col_nᵀ: both read along pixels.
                let ar = e / BK;
                let ak = e % BK;
                var av = 0.0;
                if (row0 + ar < p.cout && p0 + ak < p.pix) {
                    av = dy[(n * p.cout + row0 + ar) * p.pix + p0 + ak];
                }
                As[e] = av;
                var bv = 0.0;
                if (col0 + ar < p.kdim && p0 + ak < p.pix) {
                    bv = col[(n * p.kdim + col0 + ar) * p.pix + p0 + ak];
                }
                Bs[ak * BN + ar] = bv;
            }
            workgroupBarrier();
            tile_step(lid, &acc);
            workgroupBarrier();
        }
    }
    let out = wg.z * p.cout * p.kdim;
    for (var r = 0u; r < 4u; r++) {
        let i = row0 + lid.y * 4u + r;
        for (var s = 0u; s < 4u; s++) {
            let j = col0 + lid.x * 4u + s;
            if (i < p.cout && j < p.kdim) {
                dw[out + i * p.kdim + j] = acc[r * 4u + s];
            }
        }
    }
}
