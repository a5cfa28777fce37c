// conv2d_registers.wgsl — conv2d's three products with no workgroup memory, for adapters
// that run compute on a CPU (SwiftShader, lavapipe: backend/gpu/tiles.rs `Tile::REGISTERS`).
//
// The same implicit GEMMs as conv2d.wgsl, with the same bindings and parameters:
//   forward:      y[co, (n,oy,ox)]   = Σ_(ci,ky,kx) w[co, (ci,ky,kx)] · x̂[(ci,ky,kx), (n,oy,ox)] + bias[co]
//   input_grad:   dx[ci, (n,iy,ix)]  = Σ_(co,ky,kx) w[co, ci, ky, kx] · dŷ[(co,ky,kx), (n,iy,ix)]
//   weight_grad:  dw[co, (ci,ky,kx)] = Σ_(n,oy,ox)  dy[n, co, oy, ox] · x̂[(n,oy,ox), (ci,ky,kx)]
// On a CPU-run adapter conv2d.wgsl's tile loop is slow for two reasons: a barrier switches
// between invocations in software, and an array indexed in a loop lives in memory. Here an
// invocation owns a 4×4 block of the GEMM view (rows i0.., columns j0..) in a struct of four
// named vec4 accumulators (`Block`) and walks the reduction as nested loops over its natural
// indices, so the inner loop has no division: the four columns are decoded into image
// coordinates once, and each step is 4 loads of the image operand (one per column, 0 in the
// padding), 4 loads of the other and 16 FMAs (`rank1`). Workgroups of 16×16 invocations cover 64×64 blocks, launched as
// conv2d.wgsl's tiles are (launch.rs `tile_grid`). Rows and columns past the edge read the
// last ones and are never stored.
//
// What bounds it: the gathers (8 per 16 FMAs, each a separate load per lane on a CPU).
// The bias gradient stays in conv2d.wgsl (`bias_grad`).

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
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// forward: src0 = w, src1 = x. input_grad: src0 = w, src1 = dy. weight_grad: src0 = dy, src1 = x.
@group(0) @binding(1) var<storage, read> src0: array<f32>;
@group(0) @binding(2) var<storage, read> src1: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

const LANES = vec4<u32>(0u, 1u, 2u, 3u);

// The 4×4 block of an invocation: row r of the GEMM view in `r{r}`, its four columns in the
// lanes. A struct of named vectors, never an indexed array (see the header).
struct Block {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

// acc + a·bᵀ: row r gains a[r] times the columns' b.
fn rank1(acc: Block, a: vec4<f32>, b: vec4<f32>) -> Block {
    return Block(
        fma(vec4<f32>(a.x), b, acc.r0),
        fma(vec4<f32>(a.y), b, acc.r1),
        fma(vec4<f32>(a.z), b, acc.r2),
        fma(vec4<f32>(a.w), b, acc.r3),
    );
}

// Four values of src0.
fn gather0(idx: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(src0[idx.x], src0[idx.y], src0[idx.z], src0[idx.w]);
}

// Four values of src1, 0 where `ok` is false (those read element 0 instead).
fn gather1(idx: vec4<u32>, ok: vec4<bool>) -> vec4<f32> {
    let i = select(vec4<u32>(0u), idx, ok);
    let v = vec4<f32>(src1[i.x], src1[i.y], src1[i.z], src1[i.w]);
    return select(vec4<f32>(0.0), v, ok);
}

// An image coordinate (maybe negative) as an offset, 0 where it is outside.
fn offset(c: vec4<i32>) -> vec4<u32> {
    return vec4<u32>(max(c, vec4<i32>(0)));
}

fn inside(c: vec4<i32>, size: u32) -> vec4<bool> {
    return (c >= vec4<i32>(0)) & (c < vec4<i32>(i32(size)));
}

// The block's first row (x) and column (y): the tile of conv2d.wgsl, 4×4 per invocation.
fn origin(wg: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> vec2<u32> {
    return vec2<u32>(wg.y * 64u + lid.y * 4u, (wg.z * nwg.x + wg.x) * 64u + lid.x * 4u);
}

// The four columns j0.. (past n: the last), each as an index into the GEMM view's columns.
fn columns(j0: u32) -> vec4<u32> {
    return min(vec4<u32>(j0) + LANES, vec4<u32>(p.n - 1u));
}

// The four rows i0.. (past m: the last).
fn rows(i0: u32) -> vec4<u32> {
    return min(vec4<u32>(i0) + LANES, vec4<u32>(p.m - 1u));
}

// Writes v[s] to dst[at[s]] for the columns j0 + s that exist.
fn store_row(j0: u32, at: vec4<u32>, v: vec4<f32>) {
    dst[at.x] = v.x;
    if (j0 + 1u < p.n) {
        dst[at.y] = v.y;
    }
    if (j0 + 2u < p.n) {
        dst[at.z] = v.z;
    }
    if (j0 + 3u < p.n) {
        dst[at.w] = v.w;
    }
}

@compute @workgroup_size(16, 16)
fn forward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let o = origin(wg, nwg, lid);
    let i0 = o.x;
    let j0 = o.y;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let ohw = p.oh * p.ow;
    let hw = p.h * p.w;
    // Columns: output pixels (image, oy, ox); their first input row and column.
    let j = columns(j0);
    let img = j / ohw;
    let pix = j % ohw;
    let iy0 = vec4<i32>((pix / p.ow) * p.sh) - vec4<i32>(i32(p.ph));
    let ix0 = vec4<i32>((pix % p.ow) * p.sw) - vec4<i32>(i32(p.pw));
    let image = img * (p.cin * hw);
    // Rows: output channels, each a row of k weights.
    let wrow = rows(i0) * p.k;
    var acc = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    var d = 0u;
    for (var ci = 0u; ci < p.cin; ci++) {
        let plane = image + vec4<u32>(ci * hw);
        for (var ky = 0u; ky < p.kh; ky++) {
            let iy = iy0 + vec4<i32>(i32(ky));
            let row_ok = inside(iy, p.h);
            let row = plane + offset(iy) * p.w;
            for (var kx = 0u; kx < p.kw; kx++) {
                let ix = ix0 + vec4<i32>(i32(kx));
                let xv = gather1(row + offset(ix), row_ok & inside(ix, p.w));
                let wv = gather0(wrow + vec4<u32>(d));
                acc = rank1(acc, wv, xv);
                d++;
            }
        }
    }
    let out = img * (p.cout * ohw) + pix;
    store_forward(i0, j0, out, acc.r0);
    store_forward(i0 + 1u, j0, out, acc.r1);
    store_forward(i0 + 2u, j0, out, acc.r2);
    store_forward(i0 + 3u, j0, out, acc.r3);
}

// Output channel co of the block (+ bias), at y[img, co, pix] = dst[out + co·oh·ow].
fn store_forward(co: u32, j0: u32, out: vec4<u32>, v: vec4<f32>) {
    if (co >= p.m) {
        return;
    }
    var b = 0.0;
    if (p.has_bias != 0u) {
        b = bias[co];
    }
    store_row(j0, out + vec4<u32>(co * p.oh * p.ow), v + vec4<f32>(b));
}

@compute @workgroup_size(16, 16)
fn input_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let o = origin(wg, nwg, lid);
    let i0 = o.x;
    let j0 = o.y;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let ohw = p.oh * p.ow;
    let hw = p.h * p.w;
    let taps = p.kh * p.kw;
    // Columns: input pixels (image, iy, ix), shifted by the padding.
    let j = columns(j0);
    let img = j / hw;
    let pix = j % hw;
    let ty0 = vec4<i32>(pix / p.w + p.ph);
    let tx0 = vec4<i32>(pix % p.w + p.pw);
    let image = img * (p.cout * ohw);
    // Rows: input channels; w[co, ci, ky, kx] is at co·cin·taps + ci·taps + ky·kw + kx.
    let wrow = rows(i0) * taps;
    var acc = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var co = 0u; co < p.cout; co++) {
        let plane = image + vec4<u32>(co * ohw);
        let wco = wrow + vec4<u32>(co * p.cin * taps);
        for (var ky = 0u; ky < p.kh; ky++) {
            // The output row whose tap ky lands on iy: oy·sh = iy + ph − ky.
            let ty = ty0 - vec4<i32>(i32(ky));
            var oy = ty;
            var row_ok = ty >= vec4<i32>(0);
            if (p.sh != 1u) {
                row_ok = row_ok & (ty % vec4<i32>(i32(p.sh)) == vec4<i32>(0));
                oy = ty / vec4<i32>(i32(p.sh));
            }
            row_ok = row_ok & (oy < vec4<i32>(i32(p.oh)));
            let row = plane + offset(oy) * p.ow;
            for (var kx = 0u; kx < p.kw; kx++) {
                let tx = tx0 - vec4<i32>(i32(kx));
                var ox = tx;
                var ok = row_ok & (tx >= vec4<i32>(0));
                if (p.sw != 1u) {
                    ok = ok & (tx % vec4<i32>(i32(p.sw)) == vec4<i32>(0));
                    ox = tx / vec4<i32>(i32(p.sw));
                }
                ok = ok & (ox < vec4<i32>(i32(p.ow)));
                let dv = gather1(row + offset(ox), ok);
                let wv = gather0(wco + vec4<u32>(ky * p.kw + kx));
                acc = rank1(acc, wv, dv);
            }
        }
    }
    // dx[img, ci, pix] = dst[img·cin·hw + ci·hw + pix].
    let out = img * (p.cin * hw) + pix;
    store_input_grad(i0, j0, out, acc.r0);
    store_input_grad(i0 + 1u, j0, out, acc.r1);
    store_input_grad(i0 + 2u, j0, out, acc.r2);
    store_input_grad(i0 + 3u, j0, out, acc.r3);
}

fn store_input_grad(ci: u32, j0: u32, out: vec4<u32>, v: vec4<f32>) {
    if (ci < p.m) {
        store_row(j0, out + vec4<u32>(ci * p.h * p.w), v);
    }
}

@compute @workgroup_size(16, 16)
fn weight_grad(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
) {
    let o = origin(wg, nwg, lid);
    let i0 = o.x;
    let j0 = o.y;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let ohw = p.oh * p.ow;
    let hw = p.h * p.w;
    let taps = p.kh * p.kw;
    // Columns: weights (ci, ky, kx); the input plane and the tap's offset from a pixel.
    let j = columns(j0);
    let ci = j / taps;
    let t = j % taps;
    let dy0 = vec4<i32>(t / p.kw) - vec4<i32>(i32(p.ph));
    let dx0 = vec4<i32>(t % p.kw) - vec4<i32>(i32(p.pw));
    let plane = ci * hw;
    // Rows: output channels, each an oh×ow plane of dy per image.
    let grow = rows(i0) * ohw;
    var acc = Block(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    for (var img = 0u; img < p.batch; img++) {
        let xb = plane + vec4<u32>(img * p.cin * hw);
        let gb = grow + vec4<u32>(img * p.cout * ohw);
        for (var oy = 0u; oy < p.oh; oy++) {
            let iy = vec4<i32>(i32(oy * p.sh)) + dy0;
            let row_ok = inside(iy, p.h);
            let row = xb + offset(iy) * p.w;
            let grad = gb + vec4<u32>(oy * p.ow);
            for (var ox = 0u; ox < p.ow; ox++) {
                let ix = vec4<i32>(i32(ox * p.sw)) + dx0;
                let xv = gather1(row + offset(ix), row_ok & inside(ix, p.w));
                let gv = gather0(grad + vec4<u32>(ox));
                acc = rank1(acc, gv, xv);
            }
        }
    }
    store_weight_grad(i0, j0, acc.r0);
    store_weight_grad(i0 + 1u, j0, acc.r1);
    store_weight_grad(i0 + 2u, j0, acc.r2);
    store_weight_grad(i0 + 3u, j0, acc.r3);
}

// dw[co, j] = dst[co·k + j]: the columns are consecutive.
fn store_weight_grad(co: u32, j0: u32, v: vec4<f32>) {
    if (co < p.m) {
        store_row(j0, vec4<u32>(co * p.n + j0) + LANES, v);
    }
}
