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
