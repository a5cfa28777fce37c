// matmul.wgsl — GEMM, the twin of kernels/src/gemm/.
//
// Computes C[m×n] = op(A)·op(B) (+ C if accumulate) (+ bias per row or per column), then ReLU.
// A is stored m×k (TRANS_A = false) or k×m (true); B as k×n or n×k. Transposes are pipeline
// override constants, so backward passes read the operands in place (no transpose copies).
//
// Uses from shaders/common/ (appended when the module is built):
//   tile.wgsl — `tile_gemm`, the 64×64 register-tiled loop (16×16 invocations, 4×4
//   accumulators each, K in steps of BK = 16 through the workgroup tiles As and Bs).
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

// op(A) rows row0.., op(B) columns col0.., reduction indices k0..k0+BK into As and Bs.
fn stage_tiles(row0: u32, col0: u32, k0: u32, li: u32) {
    // Stage A: 1024 elements, 4 per invocation, read along A's stored rows.
    if (TRANS_A) {
        // A is k×m: stored rows run along i.
        let kk = li / 16u;
        let i = (li % 16u) * 4u;
        var v = vec4<f32>(0.0);
        if (k0 + kk < p.k) {
            v = quad_a((k0 + kk) * p.m + row0 + i, remaining(row0 + i, p.m));
        }
        for (var q = 0u; q < 4u; q++) {
            As[kk * BM + i + q] = v[q];
        }
    } else {
        // A is m×k: stored rows run along k.
        let i = li / 4u;
        let kk = (li % 4u) * 4u;
        var v = vec4<f32>(0.0);
        if (row0 + i < p.m) {
            v = quad_a((row0 + i) * p.k + k0 + kk, remaining(k0 + kk, p.k));
        }
        for (var q = 0u; q < 4u; q++) {
            As[(kk + q) * BM + i] = v[q];
        }
    }
    // Stage B likewise.
    if (TRANS_B) {
        // B is n×k: stored rows run along k.
        let j = li / 4u;
        let kk = (li % 4u) * 4u;
        var v = vec4<f32>(0.0);
        if (col0 + j < p.n) {
            v = quad_b((col0 + j) * p.k + k0 + kk, remaining(k0 + kk, p.k));
        }
        for (var q = 0u; q < 4u; q++) {
            Bs[(kk + q) * BN + j] = v[q];
        }
    } else {
        // B is k×n: stored rows run along j.
        let kk = li / 16u;
        let j = (li % 16u) * 4u;
        var v = vec4<f32>(0.0);
        if (k0 + kk < p.k) {
            v = quad_b((k0 + kk) * p.n + col0 + j, remaining(col0 + j, p.n));
        }
        for (var q = 0u; q < 4u; q++) {
            Bs[kk * BN + j + q] = v[q];
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
