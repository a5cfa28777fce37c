// common/tree.wgsl — a deterministic sum over a workgroup of 256 invocations.
//
// Each invocation puts its value in workgroup memory, then a fixed binary tree folds them:
// the order of additions depends only on the workgroup size, so results are bitwise
// reproducible from run to run (no float atomics anywhere).

var<workgroup> tree_red: array<f32, 256>;

// Σ of `v` over the workgroup, returned to every invocation. Call from uniform control flow
// (it has barriers); `li` is local_invocation_index.
fn workgroup_sum(li: u32, v: f32) -> f32 {
    tree_red[li] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (li < stride) {
            tree_red[li] += tree_red[li + stride];
        }
        workgroupBarrier();
    }
    let total = tree_red[0];
    // Nobody may overwrite tree_red[0] (a next call) before everyone has read it.
    workgroupBarrier();
    return total;
}
