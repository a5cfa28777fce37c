//! `distill-kernels` GEMM against the peak: square sizes, the three transpose variants the
//! engine uses, on all threads; plus 1024³ NN on one thread against the one-thread peak.

use std::sync::Arc;

use distill_kernels::gemm::gemm;
use distill_kernels::{Epilogue, GemmShape, Trans};

use crate::output::Row;
use crate::{fill, Job, PeakRef};

/// Adds the GEMM jobs; `pool1` is a one-thread pool for the one-thread figure.
pub fn push_jobs(jobs: &mut Vec<Job>, cpu: &str, threads: usize, pool1: &Arc<rayon::ThreadPool>) {
    let row = |kernel: &str, shape: String, t: usize| Row::new(kernel, cpu, shape, Some(t));
    // A and B are shared per size.
    for size in [256, 512, 1024, 2048] {
        let a = Arc::new(fill(size * size, 1));
        let b = Arc::new(fill(size * size, 2));
        let variants = [
            ("gemm NN", Trans::N, Trans::N, threads),
            ("gemm NT", Trans::N, Trans::T, threads),
            ("gemm TN", Trans::T, Trans::N, threads),
            ("gemm NN", Trans::N, Trans::N, 1),
        ];
        for (name, ta, tb, t) in variants {
            if t == 1 && (size != 1024 || threads == 1) {
                continue;
            }
            let (a, b, pool1) = (a.clone(), b.clone(), pool1.clone());
            let mut c = vec![0.0f32; size * size];
            let mut call = move || {
                gemm(
                    GemmShape {
                        ta,
                        tb,
                        m: size,
                        n: size,
                        k: size,
                    },
                    &a,
                    &b,
                    &mut c,
                    Epilogue::default(),
                );
            };
            let run: Box<dyn FnMut()> = if t == 1 {
                Box::new(move || pool1.install(&mut call))
            } else {
                Box::new(call)
            };
            let headline = size == 1024 && name == "gemm NN";
            jobs.push(Job {
                row: row(name, format!("{size}x{size}x{size}"), t),
                flops: 2.0 * (size * size * size) as f64,
                peak: if t == 1 { PeakRef::One } else { PeakRef::All },
                // Small sizes and the headline figure get more calls per round.
                per_round: if size <= 512 || headline { 4 } else { 1 },
                run: Some(run),
                best: f64::INFINITY,
            });
        }
    }
}
