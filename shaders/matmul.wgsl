// matmul.wgsl — GEMM, the twin of kernels/src/gemm/.
//
// Computes C[m×n] = op(A)·op(B) (+ C if accumulate) (+ bias per row or per column), then ReLU.
// A is stored m×k (TRANS_A = false) or k×m (true); B as k×n or n×k. Transposes are pipeline
// override constants, so backward passes read the operands in place (no transpose copies).
//
// Uses from shaders/common/ (appended when the module is built):
//   tile.wgsl — `tile_gemm`, the register-tiled loop (16×16 invocations, TM×TN accumulators
//   each, 64×64 tiles unless the device's autotune chose another shape; K in steps of BK = 16
//   through the workgroup tiles As and Bs).
// This file supplies the loop's `stage_tiles` (slices of op(A), op(B) read from memory) and
// `store_c` (the epilogue). Where the contiguous dimension of an operand is a multiple of 4,
// its slice is loaded with vec4 reads (the same buffer is bound a second time as
// array<vec4<f32>>).
//
// Bound: arithmetic for large square problems (register blocking gives 2 FMAs per shared
// load); memory for skinny ones (k or n small), where the tile is mostly padding.
//
// `main_registers` is the same product without workgroup memory or barriers, for adapters
// that run compute on a CPU (SwiftShader, lavapipe: tiles.rs `Tile::REGISTERS`). There a
// barrier switches between invocations in software and an array indexed in a loop lives in
// memory, so `tile_gemm` runs at a few % of the adapter's FMA rate. Each invocation instead
// reads a 4×4 block of op(A) and of op(B) per 4 depths straight from storage (8 quads, vec4
// loads where aligned), multiplies them as mat4x4 (64 FMAs) into one mat4x4 accumulator, and
// keeps every value in a named variable. Rows and columns past the edge read the last ones
// (never stored), so only the depth tail needs zeros.

override TRANS_A: bool = false;
override TRANS_B: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    // 0 = none, 1 = per row (length m), 2 = per column (length n)
    bias_mode: u32,
    accumulate: u32,
    relu: u32,
    vec_a: u32,
    vec_b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read> b4: array<vec4<f32>>;

// Four consecutive elements along the operand's contiguous (stored) dimension.
// `base` is the flat index of the first; `avail` how many of the four are in range.
fn quad_a(base: u32, avail: u32) -> vec4<f32> {
    if (p.vec_a != 0u && avail >= 4u) {
        return a4[base / 4u];
    }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < min(avail, 4u); q++) {
        v[q] = a[base + q];
    }
    return v;
}

fn quad_b(base: u32, avail: u32) -> vec4<f32> {
    if (p.vec_b != 0u && avail >= 4u) {
        return b4[base / 4u];
    }
    var v = vec4<f32>(0.0);
    for (var q = 0u; q < min(avail, 4u); q++) {
        v[q] = b[base + q];
    }
    return v;
}

fn remaining(start: u32, end: u32) -> u32 {
    if (start >= end) {
        return 0u;
    }
    return end - start;
}

// op(A) rows row0.., op(B) columns col0.., reduction indices k0..k0+BK into As and Bs, one
// quad (4 elements along the operand's stored rows) per invocation per pass.
fn stage_tiles(row0: u32, col0: u32, k0: u32, li: u32) {
    for (var q = li; q < QUADS_A; q += INVOCATIONS) {
        stage_a(row0, k0, q);
    }
    for (var q = li; q < QUADS_B; q += INVOCATIONS) {
        stage_b(col0, k0, q);
    }
}

fn stage_a(row0: u32, k0: u32, q: u32) {
    if (TRANS_A) {
        // A is k×m: stored rows run along i, BM / 4 quads per reduction index.
        let kk = q / (BM / 4u);
        let i = (q % (BM / 4u)) * 4u;
        var v = vec4<f32>(0.0);
        if (k0 + kk < p.k) {
            v = quad_a((k0 + kk) * p.m + row0 + i, remaining(row0 + i, p.m));
        }
        for (var e = 0u; e < 4u; e++) {
            As[kk * BM + i + e] = v[e];
        }
    } else {
        // A is m×k: stored rows run along k, BK / 4 = 4 quads per row.
        let i = q / 4u;
        let kk = (q % 4u) * 4u;
        var v = vec4<f32>(0.0);
        if (row0 + i < p.m) {
            v = quad_a((row0 + i) * p.k + k0 + kk, remaining(k0 + kk, p.k));
        }
        for (var e = 0u; e < 4u; e++) {
            As[(kk + e) * BM + i] = v[e];
        }
    }
}

fn stage_b(col0: u32, k0: u32, q: u32) {
    if (TRANS_B) {
        // B is n×k: stored rows run along k, 4 quads per column.
        let j = q / 4u;
        let kk = (q % 4u) * 4u;
        var v = vec4<f32>(0.0);
        if (col0 + j < p.n) {
            v = quad_b((col0 + j) * p.k + k0 + kk, remaining(k0 + kk, p.k));
        }
        for (var e = 0u; e < 4u; e++) {
            Bs[(kk + e) * BN + j] = v[e];
        }
    } else {
        // B is k×n: stored rows run along j, BN / 4 quads per reduction index.
        let kk = q / (BN / 4u);
        let j = (q % (BN / 4u)) * 4u;
        var v = vec4<f32>(0.0);
        if (k0 + kk < p.k) {
            v = quad_b((k0 + kk) * p.n + col0 + j, remaining(col0 + j, p.n));
        }
        for (var e = 0u; e < 4u; e++) {
            Bs[kk * BN + j + e] = v[e];
        }
    }
}

// Epilogue, in the CPU kernel's order: (+C) then (+bias) then ReLU.
fn store_c(i: u32, j: u32, acc: f32) {
    let idx = i * p.n + j;
    var v = acc;
    if (p.accumulate != 0u) {
        v = c[idx] + v;
    }
    if (p.bias_mode == 1u) {
        v += bias[i];
    } else if (p.bias_mode == 2u) {
        v += bias[j];
    }
    if (p.relu != 0u && v < 0.0) {
        v = 0.0;
    }
    c[idx] = v;
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    tile_gemm(wg, nwg, lid, li, p.m, p.n, p.k);
}

// ---- main_registers: the product with no workgroup memory (see the header) ----

// op(A)[i0..i0+4, k0..k0+4] as a mat4x4 whose column r is row r of the block, transposed:
// column r holds op(A)[i0 + r, k0 + q] at q. Depths past k are 0; rows past m repeat m − 1.
fn a_block_t(i0: u32, k0: u32) -> mat4x4<f32> {
    let last = p.m - 1u;
    if (TRANS_A) {
        // A is k×m: one quad per depth runs along i (rows i0.. are a multiple of 4 apart).
        let avail = remaining(i0, p.m);
        let v0 = depth_quad_a(k0, i0, avail);
        let v1 = depth_quad_a(k0 + 1u, i0, avail);
        let v2 = depth_quad_a(k0 + 2u, i0, avail);
        let v3 = depth_quad_a(k0 + 3u, i0, avail);
        return transpose(mat4x4<f32>(v0, v1, v2, v3));
    }
    // A is m×k: one quad per row runs along k.
    let avail = remaining(k0, p.k);
    return mat4x4<f32>(
        quad_a(min(i0, last) * p.k + k0, avail),
        quad_a(min(i0 + 1u, last) * p.k + k0, avail),
        quad_a(min(i0 + 2u, last) * p.k + k0, avail),
        quad_a(min(i0 + 3u, last) * p.k + k0, avail),
    );
}

// A stored k×m: row kk, the quad of columns from i0 (0 past depth k).
fn depth_quad_a(kk: u32, i0: u32, avail: u32) -> vec4<f32> {
    if (kk >= p.k) {
        return vec4<f32>(0.0);
    }
    return quad_a(kk * p.m + i0, avail);
}

// op(B)[k0..k0+4, j0..j0+4] transposed: column q holds op(B)[k0 + q, j0 + s] at s. Depths
// past k are 0; columns past n repeat n − 1.
fn b_block_t(k0: u32, j0: u32) -> mat4x4<f32> {
    let last = p.n - 1u;
    if (TRANS_B) {
        // B is n×k: one quad per column runs along k.
        let avail = remaining(k0, p.k);
        return transpose(mat4x4<f32>(
            quad_b(min(j0, last) * p.k + k0, avail),
            quad_b(min(j0 + 1u, last) * p.k + k0, avail),
            quad_b(min(j0 + 2u, last) * p.k + k0, avail),
            quad_b(min(j0 + 3u, last) * p.k + k0, avail),
        ));
    }
    // B is k×n: one quad per depth runs along j.
    let avail = remaining(j0, p.n);
    return mat4x4<f32>(
        depth_quad_b(k0, j0, avail),
        depth_quad_b(k0 + 1u, j0, avail),
        depth_quad_b(k0 + 2u, j0, avail),
        depth_quad_b(k0 + 3u, j0, avail),
    );
}

fn depth_quad_b(kk: u32, j0: u32, avail: u32) -> vec4<f32> {
    if (kk >= p.k) {
        return vec4<f32>(0.0);
    }
    return quad_b(kk * p.n + j0, avail);
}

// Invocation (x, y) of a 16×16 workgroup owns C[i0..i0+4, j0..j0+4]; workgroups tile C in
// 64×64 blocks exactly as `main` does (launch.rs `tile_grid`).
@compute @workgroup_size(16, 16)
fn main_registers(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let i0 = wg.y * 64u + lid.y * 4u;
    let j0 = (wg.z * nwg.x + wg.x) * 64u + lid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    // acc[r][s] = C[i0 + r, j0 + s].
    var acc = mat4x4<f32>(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var k0 = 0u; k0 < p.k; k0 += 4u) {
        acc += b_block_t(k0, j0) * a_block_t(i0, k0);
    }
    store_row(i0, j0, acc[0]);
    store_row(i0 + 1u, j0, acc[1]);
    store_row(i0 + 2u, j0, acc[2]);
    store_row(i0 + 3u, j0, acc[3]);
}

// Row i of the block through the epilogue, the columns that exist.
fn store_row(i: u32, j0: u32, v: vec4<f32>) {
    if (i >= p.m) {
        return;
    }
    store_c(i, j0, v.x);
    if (j0 + 1u < p.n) {
        store_c(i, j0 + 1u, v.y);
    }
    if (j0 + 2u < p.n) {
        store_c(i, j0 + 2u, v.z);
    }
    if (j0 + 3u < p.n) {
        store_c(i, j0 + 3u, v.w);
    }
}
