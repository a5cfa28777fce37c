//! The machine's streaming memory bandwidth, measured in-process: a parallel copy between two
//! buffers far larger than the last-level cache, best of several passes. Kernels that report
//! GB/s are read against it (their roofline), as FLOP/s kernels are read against the FMA peak.

use std::time::Instant;

use rayon::prelude::*;

/// Bytes of each buffer: far beyond any L3 here (32 MiB), small enough for every CI machine.
const BUFFER_BYTES: usize = 256 << 20;
/// Passes; the best one counts (the others absorb page faults and neighbours' bursts).
const PASSES: usize = 7;

/// Bytes read plus bytes written per second, in GB/s (10^9), of a copy on all threads.
pub fn stream_copy_gbs() -> f64 {
    let n = BUFFER_BYTES / 4;
    let src: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut dst = vec![0.0f32; n];
    // One contiguous chunk per thread, as the kernels split their work.
    let chunk = n.div_ceil(rayon::current_num_threads()).max(1);
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let t0 = Instant::now();
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(&dst);
    }
    2.0 * BUFFER_BYTES as f64 / best / 1e9
}
