// reduce.wgsl — deterministic reductions: sum and column_sums (kernels/src/elementwise.rs),
// and the cross-row mean that finishes the losses of softmax.wgsl.
//
// sum is two passes: `partial` gives each workgroup a fixed chunk of CHUNK elements (256
// invocations, strided reads, then a tree in workgroup memory) and writes one partial per
// chunk; `finish` is a single workgroup that folds the partials the same way and divides by
// `div` (1 for a sum, rows for a mean loss). Chunking and tree shape depend only on the length,
// never on timing, so the same input gives the same bits on every run. No float atomics.
// column_sums: a 64×4 workgroup covers 64 columns; the 4 row-lanes each sum every 4th row,
// then combine in a fixed order. All three are memory-bound.
//
// Uses from shaders/common/ (appended when the module is built): grid.wgsl — `flat_group`;
// tree.wgsl — `workgroup_sum`.

const CHUNK: u32 = 4096u;

struct Params {
    len: u32,
    rows: u32,
    cols: u32,
    div: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn partial(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let g = flat_group(wg, nwg);
    let start = g * CHUNK;
    let end = min(start + CHUNK, p.len);
    var s = 0.0;
    for (var i = start + li; i < end; i += 256u) {
        s += x[i];
    }
    let total = workgroup_sum(li, s);
    if (li == 0u && start < p.len) {
        out[g] = total;
    }
}

// x holds `len` partials; out[0] = Σ x / div.
@compute @workgroup_size(256)
fn finish(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var i = li; i < p.len; i += 256u) {
        s += x[i];
    }
    let total = workgroup_sum(li, s);
    if (li == 0u) {
        out[0] = total / p.div;
    }
}

var<workgroup> cols4: array<f32, 256>;

@compute @workgroup_size(64, 4)
fn column_sums(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let j = flat_group(wg, nwg) * 64u + lid.x;
    var s = 0.0;
    if (j < p.cols) {
        for (var i = lid.y; i < p.rows; i += 4u) {
            s += x[i * p.cols + j];
        }
    }
    cols4[lid.y * 64u + lid.x] = s;
    workgroupBarrier();
    if (lid.y == 0u && j < p.cols) {
        out[j] = ((cols4[lid.x] + cols4[64u + lid.x]) + cols4[128u + lid.x]) + cols4[192u + lid.x];
    }
}
