// common/grid.wgsl — workgroup indexing on a 2-D grid, appended to every shader.
//
// A dispatch may hold at most 65535 workgroups per dimension, so the host spreads long 1-D
// ranges over x and y (kernels.rs `grid`). These helpers flatten that grid back.

// Index of this workgroup in the flattened x·y grid.
fn flat_group(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// Index of this invocation in the flattened grid, for workgroups of 256 invocations.
fn flat_id(wg: vec3<u32>, nwg: vec3<u32>, li: u32) -> u32 {
    return flat_group(wg, nwg) * 256u + li;
}
