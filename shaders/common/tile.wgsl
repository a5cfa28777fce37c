// common/tile.wgsl — the 64×64 register-tiled GEMM loop shared by matmul.wgsl and conv2d.wgsl.
//
// One workgroup of 16×16 invocations owns a 64×64 tile of the m×n output; each invocation
// keeps a 4×4 block of accumulators in registers. K advances in steps of BK = 16: the
// workgroup stages a 64×16 slice of the A operand in `As` and a 16×64 slice of B in `Bs`
// (8 KiB of workgroup memory), then every invocation does 16 rank-1 updates of its 4×4 block
// (16 FMAs per 8 shared loads). Column tiles run over x and, past 65535 tiles, over z; row
// tiles over y (kernels.rs `tile_grid`).
//
// The shader that uses this loop defines how operands arrive and where results go:
//   fn stage_tiles(row0: u32, col0: u32, k0: u32, li: u32)
//       fills As[kk * BM + i] = A[row0 + i, k0 + kk] and Bs[kk * BN + j] = B[k0 + kk, col0 + j]
//       for kk < BK, i < BM, j < BN (0 outside the problem); invocation `li` fills 4 + 4 of them;
//   fn store_c(i: u32, j: u32, v: f32)
//       writes output element (i, j) (i < m, j < n are checked here).

const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;

// Both are k-major so the inner loop reads 4 consecutive floats per operand.
var<workgroup> As: array<f32, 1024>;
var<workgroup> Bs: array<f32, 1024>;

// C[m×n] = A[m×k]·B[k×n] for this workgroup's tile, handed to store_c element by element.
fn tile_gemm(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, li: u32, m: u32, n: u32, k: u32) {
    let row0 = wg.y * BM;
    let col0 = (wg.z * nwg.x + wg.x) * BN;
    var acc: array<f32, 16>;
    for (var q = 0u; q < 16u; q++) {
        acc[q] = 0.0;
    }
    for (var k0 = 0u; k0 < k; k0 += BK) {
        stage_tiles(row0, col0, k0, li);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, 4>;
            var br: array<f32, 4>;
            for (var q = 0u; q < 4u; q++) {
                ar[q] = As[kk * BM + lid.y * 4u + q];
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
        if (i >= m) {
            break;
        }
        for (var s = 0u; s < 4u; s++) {
            let j = col0 + lid.x * 4u + s;
            if (j >= n) {
                break;
            }
            store_c(i, j, acc[r * 4u + s]);
        }
    }
}
