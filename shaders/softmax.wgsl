// softmax.wgsl — the row-wise softmax family and the losses, twin of kernels/src/softmax/.
//
// One workgroup of 256 invocations per row (rows on a 2-D grid): the invocations stride over
// the columns, and row maxima / sums are tree reductions in workgroup memory, four values at
// a time (vec4) so the KD loss needs as few barriers as plain softmax. Rows are independent,
// so results are bitwise reproducible. Memory-bound: a row is re-read from L1/L2 per phase.
//
// softmax / log_softmax (temperature T), their backward passes,
// cross_entropy: row_loss[r] = logsumexp(x) − x[label]; grad = (softmax(x) − onehot) / rows;
// kd_loss:       row_loss[r] = α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, label)·rows/labelled;
//                grad = α·T·(softmax(s/T) − softmax(t/T)) / rows + (1−α)·(softmax(s) − onehot) / labelled;
//                a row labelled NO_LABEL (soft targets only) has no CE part; `labelled` counts
//                the other rows, each workgroup on its own (in the spare lane of a reduction);
// the mean over rows is reduce.wgsl's `finish` (one workgroup, fixed order) — deterministic.
// count_correct: arg-max (first maximum) per row; rows whose arg-max equals the label add 1
// to a u32 with an integer atomic (exact, so order does not matter).
//
// Uses from shaders/common/ (appended when the module is built): grid.wgsl — `flat_group`
// (the row of a workgroup).

struct Params {
    rows: u32,
    cols: u32,
    t: f32,
    alpha: f32,
    want_grad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// x / y / logits / student
@group(0) @binding(1) var<storage, read> in0: array<f32>;
// dy / teacher
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
// y / dx / grad
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> correct: array<atomic<u32>>;

var<workgroup> red: array<vec4<f32>, 256>;
var<workgroup> redi: array<u32, 256>;

const NEG_INF: f32 = -0x1.fffffep+127f; // -f32::MAX, written exactly (browsers reject an inexact literal)
// A row without a label (kernels/src/softmax's NO_LABEL).
const NO_LABEL: u32 = 0xffffffffu;

fn wg_max4(li: u32, v: vec4<f32>) -> vec4<f32> {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] = max(red[li], red[li + s]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn wg_sum4(li: u32, v: vec4<f32>) -> vec4<f32> {
    red[li] = v;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            red[li] = red[li] + red[li + s];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// (max of in0[row]/T, Σ exp(in0[row]/T − max)) for the row starting at `base`: the shared
// first two passes of softmax and log-softmax. Called by the whole workgroup (barriers).
fn row_max_sum_exp(base: u32, li: u32) -> vec2<f32> {
    var mx = NEG_INF;
    for (var j = li; j < p.cols; j += 256u) {
        mx = max(mx, in0[base + j] / p.t);
    }
    let m = wg_max4(li, vec4<f32>(mx)).x;
    var s = 0.0;
    for (var j = li; j < p.cols; j += 256u) {
        s += exp(in0[base + j] / p.t - m);
    }
    return vec2<f32>(m, wg_sum4(li, vec4<f32>(s)).x);
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let stats = row_max_sum_exp(base, li);
    let m = stats.x;
    let total = stats.y;
    for (var j = li; j < p.cols; j += 256u) {
        out[base + j] = exp(in0[base + j] / p.t - m) / total;
    }
}

@compute @workgroup_size(256)
fn log_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let stats = row_max_sum_exp(base, li);
    let m = stats.x;
    let lse = log(stats.y);
    for (var j = li; j < p.cols; j += 256u) {
        out[base + j] = in0[base + j] / p.t - m - lse;
    }
}

// in0 = y = softmax(x/T), in1 = dy: dx = y ⊙ (dy − Σ dy⊙y) / T.
@compute @workgroup_size(256)
fn softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var s = 0.0;
    for (var j = li; j < p.cols; j += 256u) {
        s += in1[base + j] * in0[base + j];
    }
    let dot = wg_sum4(li, vec4<f32>(s)).x;
    for (var j = li; j < p.cols; j += 256u) {
        out[base + j] = in0[base + j] * (in1[base + j] - dot) / p.t;
    }
}

// in0 = y = log_softmax(x/T), in1 = dy: dx = (dy − exp(y) Σ dy) / T.
@compute @workgroup_size(256)
fn log_softmax_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    var s = 0.0;
    for (var j = li; j < p.cols; j += 256u) {
        s += in1[base + j];
    }
    let total = wg_sum4(li, vec4<f32>(s)).x;
    for (var j = li; j < p.cols; j += 256u) {
        out[base + j] = (in1[base + j] - exp(in0[base + j]) * total) / p.t;
    }
}

@compute @workgroup_size(256)
fn cross_entropy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let label = labels[r];
    var mx = NEG_INF;
    for (var j = li; j < p.cols; j += 256u) {
        mx = max(mx, in0[base + j]);
    }
    let m = wg_max4(li, vec4<f32>(mx)).x;
    var s = 0.0;
    for (var j = li; j < p.cols; j += 256u) {
        s += exp(in0[base + j] - m);
    }
    let total = wg_sum4(li, vec4<f32>(s)).x;
    if (li == 0u) {
        row_loss[r] = m + log(total) - in0[base + label];
    }
    if (p.want_grad != 0u) {
        let inv_rows = 1.0 / f32(p.rows);
        for (var j = li; j < p.cols; j += 256u) {
            let onehot = select(0.0, 1.0, j == label);
            out[base + j] = (exp(in0[base + j] - m) / total - onehot) * inv_rows;
        }
    }
}

// in0 = student logits, in1 = teacher logits.
@compute @workgroup_size(256)
fn kd_loss(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
           @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let label = labels[r];
    let has_label = label != NO_LABEL;
    let t = p.t;
    // Maxima of (s/T, t/T, s): x, y, z lanes.
    var mx = vec4<f32>(NEG_INF);
    for (var j = li; j < p.cols; j += 256u) {
        let sv = in0[base + j];
        mx = max(mx, vec4<f32>(sv / t, in1[base + j] / t, sv, 0.0));
    }
    let m = wg_max4(li, mx);
    // Sums of exp in x, y, z; the number of labelled rows of the batch in w (exact in f32
    // below 2^24 rows).
    var se = vec4<f32>(0.0);
    for (var i = li; i < p.rows; i += 256u) {
        se.w += select(0.0, 1.0, labels[i] != NO_LABEL);
    }
    for (var j = li; j < p.cols; j += 256u) {
        let sv = in0[base + j];
        let e = exp(vec3<f32>(sv / t, in1[base + j] / t, sv) - m.xyz);
        se += vec4<f32>(e, 0.0);
    }
    let sums = wg_sum4(li, se);
    let lse_s = m.x + log(sums.x);
    let lse_t = m.y + log(sums.y);
    let lse_1 = m.z + log(sums.z);
    // The CE weight of a labelled row, scaled by rows / labelled so that the mean over rows
    // (reduce.wgsl's `finish`) gives the CE's mean over the labelled rows; 0 for other rows.
    let ce_w = select(0.0, (1.0 - p.alpha) * (f32(p.rows) / max(sums.w, 1.0)), has_label);
    // KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s).
    var kl = 0.0;
    for (var j = li; j < p.cols; j += 256u) {
        let log_pt = in1[base + j] / t - lse_t;
        let log_ps = in0[base + j] / t - lse_s;
        kl += exp(log_pt) * (log_pt - log_ps);
    }
    let kl_row = wg_sum4(li, vec4<f32>(kl, 0.0, 0.0, 0.0)).x;
    if (li == 0u) {
        var ce = 0.0;
        if (has_label) {
            ce = lse_1 - in0[base + label];
        }
        row_loss[r] = p.alpha * t * t * kl_row + ce_w * ce;
    }
    if (p.want_grad != 0u) {
        let inv_rows = 1.0 / f32(p.rows);
        for (var j = li; j < p.cols; j += 256u) {
            let sv = in0[base + j];
            let ps = exp(sv / t - lse_s);
            let pt = exp(in1[base + j] / t - lse_t);
            let p1 = exp(sv - lse_1);
            let onehot = select(0.0, 1.0, j == label);
            out[base + j] = p.alpha * t * (ps - pt) * inv_rows + ce_w * (p1 - onehot) * inv_rows;
        }
    }
}

@compute @workgroup_size(256)
fn count_correct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let r = flat_group(wg, nwg);
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    // Each invocation's first maximum over its strided columns, then a tree that prefers the
    // larger value and, on ties, the smaller column: the row's first maximum overall.
    var best = NEG_INF;
    var best_j = 0xffffffffu;
    for (var j = li; j < p.cols; j += 256u) {
        let v = in0[base + j];
        if (best_j == 0xffffffffu || v > best) {
            best = v;
            best_j = j;
        }
    }
    red[li] = vec4<f32>(best);
    redi[li] = best_j;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (li < s) {
            let ov = red[li + s].x;
            let oj = redi[li + s];
            let mv = red[li].x;
            let mj = redi[li];
            if (oj != 0xffffffffu && (mj == 0xffffffffu || ov > mv || (ov == mv && oj < mj))) {
                red[li] = vec4<f32>(ov);
                redi[li] = oj;
            }
        }
        workgroupBarrier();
    }
    if (li == 0u && redi[0] == labels[r]) {
        atomicAdd(&correct[0], 1u);
    }
}
