// bench.wgsl — the device's own peaks, measured by `distill bench` (src/bench/peak.rs and
// bandwidth.rs); no op of the engine runs these.
//
// Every figure of the bench is read as a % of what the device can do, and vendor sheets are
// not what a WGSL kernel can reach through a given driver: so the bench measures the peaks
// itself, with the two simplest kernels that saturate the ALUs and the memory.
//
// fma_chain: each invocation runs CHAINS independent chains of vec4 FMAs (`acc = acc·x + y`)
//   for `iters` steps, then stores its sum so the compiler keeps the work. CHAINS × 4 lanes
//   of independent work hide the FMA latency; no memory traffic in the loop, so it is bound
//   by FP32 throughput only. 2 flops per lane per FMA. The operands come from the params, so
//   nothing folds at compile time; x < 1 and y tiny keep the values finite.
// copy: `dst = src` over `len` vec4s, grid-stride (each invocation copies every
//   `stride`-th vec4), so any length runs in a fixed grid; bound by DRAM bandwidth for
//   buffers far larger than the caches. Bytes read + bytes written count.
//
// Workgroups of 256 on a 1-D grid (the host keeps x ≤ 65535). Uses nothing from common/.

struct Params {
    // copy: vec4s to copy; fma_chain: unused.
    len: u32,
    // fma_chain: FMA steps per chain.
    iters: u32,
    // fma_chain: the multiplier x (just below 1) and the addend y.
    x: f32,
    y: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;

@compute @workgroup_size(256)
fn fma_chain(@builtin(global_invocation_id) gid: vec3<u32>) {
    let x = vec4<f32>(p.x);
    let y = vec4<f32>(p.y);
    let seed = f32(gid.x & 7u);
    // CHAINS = 8 independent accumulators.
    var a0 = vec4<f32>(seed);
    var a1 = a0 + 1.0;
    var a2 = a0 + 2.0;
    var a3 = a0 + 3.0;
    var a4 = a0 + 4.0;
    var a5 = a0 + 5.0;
    var a6 = a0 + 6.0;
    var a7 = a0 + 7.0;
    for (var i = 0u; i < p.iters; i++) {
        a0 = fma(a0, x, y);
        a1 = fma(a1, x, y);
        a2 = fma(a2, x, y);
        a3 = fma(a3, x, y);
        a4 = fma(a4, x, y);
        a5 = fma(a5, x, y);
        a6 = fma(a6, x, y);
        a7 = fma(a7, x, y);
    }
    let s = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    // Every invocation stores its sum (a conditional store would let the compiler sink the
    // loop into the branch); dst may be shorter than the grid, so invocations share slots.
    dst[gid.x % arrayLength(&dst)] = s;
}

@compute @workgroup_size(256)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * 256u;
    for (var i = gid.x; i < p.len; i += stride) {
        dst[i] = src[i];
    }
}
