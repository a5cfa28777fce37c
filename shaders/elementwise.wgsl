// elementwise.wgsl — element-wise maps, the twin of kernels/src/elementwise.rs.
//
// One invocation per element, 256 per workgroup, on a 2-D grid of workgroups (x ≤ 65535) so
// tensors beyond 16M elements still dispatch. Purely memory-bound: each entry point reads
// one or two words and writes one.
//
// relu: y = max(0, x)          relu_backward: dx = dy where x > 0 else 0
// add:  y = a + b              scale: y = s·x         scale_by: y = x·s[0] (device scalar)
// axpy: y += alpha·x           fill: y = value
//
// Uses from shaders/common/ (appended when the module is built): grid.wgsl — `flat_id`.

struct Params {
    len: u32,
    s: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> z: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = max(x[i], 0.0);
    }
}

// x = forward input, z = dy
@compute @workgroup_size(256)
fn relu_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = select(0.0, z[i], x[i] > 0.0);
    }
}

@compute @workgroup_size(256)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = x[i] + z[i];
    }
}

@compute @workgroup_size(256)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = x[i] * p.s;
    }
}

// z[0] holds the scale (an upstream scalar gradient that never visits the host).
@compute @workgroup_size(256)
fn scale_by(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = x[i] * z[0];
    }
}

@compute @workgroup_size(256)
fn axpy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = y[i] + p.s * x[i];
    }
}

@compute @workgroup_size(256)
fn fill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let i = flat_id(wg, nwg, li);
    if (i < p.len) {
        y[i] = p.s;
    }
}
