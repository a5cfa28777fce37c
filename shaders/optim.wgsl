// optim.wgsl — fused optimiser updates, the twins of kernels/src/optim.rs (PyTorch semantics).
//
// One invocation per parameter; each reads param, grad and its state once and writes them
// back once, so a step is a single memory-bound pass (no temporaries). Scalars that depend
// only on the step (bias corrections) are computed on the host and arrive in the uniform.
//
// sgd (torch.optim.SGD):   g = grad + wd·param
//                          buf = g on the first step, else momentum·buf + (1 − dampening)·g
//                          g = g + momentum·buf (nesterov) or buf;   param −= lr·g
// adam (torch.optim.Adam / AdamW):
//                          Adam: g = grad + wd·param      AdamW: param ·= 1 − lr·wd
//                          m = lerp(m, g, 1 − β1)   v = β2·v + (1 − β2)·g²
//                          param −= (lr / bc1) · m / (sqrt(v) / sqrt(bc2) + eps)
//
// Uses from shaders/common/ (appended when the module is built): grid.wgsl — `flat_id`.

struct Params {
    len: u32,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: u32,
    first_step: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decoupled: u32,
    bc1: f32,
    bc2_sqrt: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> s1: array<f32>;
@group(0) @binding(4) var<storage, read_write> s2: array<f32>;

@compute @workgroup_size(256)
fn sgd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    var g = grad[i];
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * param[i];
    }
    if (p.momentum != 0.0) {
        var buf: f32;
        if (p.first_step != 0u) {
            buf = g;
        } else {
            buf = p.momentum * s1[i] + (1.0 - p.dampening) * g;
        }
        s1[i] = buf;
        if (p.nesterov != 0u) {
            g = g + p.momentum * buf;
        } else {
            g = buf;
        }
    }
    param[i] = param[i] - p.lr * g;
}

@compute @workgroup_size(256)
fn adam(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i >= p.len) {
        return;
    }
    var w = param[i];
    var g = grad[i];
    if (p.weight_decay != 0.0) {
        if (p.decoupled != 0u) {
            w = w * (1.0 - p.lr * p.weight_decay);
        } else {
            g = g + p.weight_decay * w;
        }
    }
    let m = s1[i] + (1.0 - p.beta1) * (g - s1[i]);
    let v = p.beta2 * s2[i] + (1.0 - p.beta2) * g * g;
    s1[i] = m;
    s2[i] = v;
    let denom = sqrt(v) / p.bc2_sqrt + p.eps;
    param[i] = w - (p.lr / p.bc1) * (m / denom);
}
