// mse.wgsl — mean squared error and its gradient (kernels/src/mse.rs): the loss of feature
// (hint) distillation. `loss = Σ (a − b)² / n`, `grad = 2(a − b)/n` (∂loss/∂a).
//
// `partial` gives each workgroup a fixed chunk of CHUNK elements: its 256 invocations read
// the chunk with a stride of 256 (neighbouring invocations, neighbouring addresses), write the
// gradient when asked, and sum d² in f32; a fixed tree in workgroup memory folds the 256 sums
// into one partial per chunk. reduce.wgsl's `finish` then adds the partials the same way and
// divides by n (GpuBackend::mse_loss launches both). Chunks and trees depend only on the
// length, so the same input gives the same bits on every run; no float atomics. Bound by
// memory: 8 bytes read per element, 4 more written with the gradient.
//
// Uses from shaders/common/ (appended when the module is built): grid.wgsl — `flat_group`;
// tree.wgsl — `workgroup_sum`.

const CHUNK: u32 = 4096u;

struct Params {
    len: u32,
    // 2 / len, rounded to f32 once on the host (as the CPU kernel does).
    scale: f32,
    want_grad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

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
        let d = a[i] - b[i];
        if (p.want_grad != 0u) {
            grad[i] = d * p.scale;
        }
        s += d * d;
    }
    let total = workgroup_sum(li, s);
    if (li == 0u && start < p.len) {
        partials[g] = total;
    }
}
