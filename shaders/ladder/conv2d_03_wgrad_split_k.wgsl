// conv2d rung 3 (weight gradient) — split-K: cut the long reduction across workgroups.
//
// Change against rung 2: the weight gradient dW[cout×K] is a GEMM whose output is small
// (cout·K: 73,728 values for the teacher's conv2, 18 workgroups of 64×64) and whose
// reduction is long (batch·P = 25,088 products per value at batch 128). Rung 2 gives each
// workgroup the whole reduction, so a GPU with a hundred compute units runs 18 of them.
// Here the batch is cut into `chunks` ranges of images: conv2d_02's `weight_grad_gemm` runs
// with z = chunk, writing one partial dW per chunk (chunks × more workgroups, each with a
// chunks-times shorter loop), and this pass adds the partials in chunk order, so the result
// does not depend on scheduling. The cost is chunks × cout·K partials written and re-read,
// small next to the reduction. The production conv2d's weight gradient does the same with
// fixed batch chunks.

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
@group(0) @binding(4) var<storage, read> partials: array<f32>;
@group(0) @binding(6) var<storage, read_write> dw: array<f32>;

@compute @workgroup_size(256)
fn reduce(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let idx = (wg.y * nwg.x + wg.x) * 256u + li;
    let size = p.cout * p.kdim;
    if (idx >= size) {
        return;
    }
    var sum = 0.0;
    for (var c = 0u; c < p.chunks; c++) {
        sum += partials[c * size + idx];
    }
    dw[idx] = sum;
}
