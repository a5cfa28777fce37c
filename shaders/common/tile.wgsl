// common/tile.wgsl — the register-tiled GEMM loop shared by matmul.wgsl and conv2d.wgsl.
//
// One workgroup of 16×16 invocations owns a BM×BN tile of the m×n output; each invocation
// keeps a TM×TN block of accumulators in registers (BM = 16·TM, BN = 16·TN). K advances in
// steps of BK = 16: the workgroup stages a BM×16 slice of the A operand in `As` and a 16×BN
// slice of B in `Bs`, then every invocation does 16 rank-1 updates of its TM×TN block
// (TM·TN FMAs per TM + TN shared loads). Column tiles run over x and, past 65535 tiles, over
// z; row tiles over y (launch.rs `tile_grid`).
//
// TM and TN are not in this file: the module builder (backend/gpu/tune.rs, `Tile::wgsl`)
// writes them above it, 4×4 (a 64×64 tile) unless the device's autotune chose another.
// Bigger blocks reuse each shared load more and need fewer workgroups; smaller ones keep
// more workgroups in flight on small problems and fewer registers per invocation.
//
// The shader that uses this loop defines how operands arrive and where results go:
//   fn stage_tiles(row0: u32, col0: u32, k0: u32, li: u32)
//       fills As[kk * BM + i] = A[row0 + i, k0 + kk] and Bs[kk * BN + j] = B[k0 + kk, col0 + j]
//       for kk < BK, i < BM, j < BN (0 outside the problem), in quads of 4 elements: quad q
//       of A is staged by invocation q mod 256 (`QUADS_A` quads, `QUADS_B` for B);
//   fn store_c(i: u32, j: u32, v: f32)
//       writes output element (i, j) (i < m, j < n are checked here).

const BM: u32 = 16u * TM;
const BN: u32 = 16u * TN;
const BK: u32 = 16u;
const INVOCATIONS: u32 = 256u;
const QUADS_A: u32 = BM * BK / 4u;
const QUADS_B: u32 = BN * BK / 4u;

// Both are k-major so the inner loop reads consecutive floats per operand.
var<workgroup> As: array<f32, BM * BK>;
var<workgroup> Bs: array<f32, BN * BK>;

// C[m×n] = A[m×k]·B[k×n] for this workgroup's tile, handed to store_c element by element.
fn tile_gemm(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>, li: u32, m: u32, n: u32, k: u32) {
    let row0 = wg.y * BM;
    let col0 = (wg.z * nwg.x + wg.x) * BN;
    var acc: array<f32, TM * TN>;
    for (var q = 0u; q < TM * TN; q++) {
        acc[q] = 0.0;
    }
    for (var k0 = 0u; k0 < k; k0 += BK) {
        stage_tiles(row0, col0, k0, li);
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var ar: array<f32, TM>;
            var br: array<f32, TN>;
            for (var r = 0u; r < TM; r++) {
                ar[r] = As[kk * BM + lid.y * TM + r];
            }
            for (var s = 0u; s < TN; s++) {
                br[s] = Bs[kk * BN + lid.x * TN + s];
            }
            for (var r = 0u; r < TM; r++) {
                for (var s = 0u; s < TN; s++) {
                    acc[r * TN + s] = fma(ar[r], br[s], acc[r * TN + s]);
                }
            }
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < TM; r++) {
        let i = row0 + lid.y * TM + r;
        if (i >= m) {
            break;
        }
        for (var s = 0u; s < TN; s++) {
            let j = col0 + lid.x * TN + s;
            if (j >= n) {
                break;
            }
            store_c(i, j, acc[r * TN + s]);
        }
    }
}
