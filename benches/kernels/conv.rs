//! `distill-kernels` conv2d against the peak: forward, input grad and weight grad of the
//! teacher's and the student's conv layers at batch 128 on 28×28×1 input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use distill_kernels::{conv, Conv2dShape};

use crate::output::Row;
use crate::{fill, Job, PeakRef};

fn conv_shape(batch: usize, cin: usize, cout: usize, hw: usize) -> Conv2dShape {
    Conv2dShape {
        batch,
        in_channels: cin,
        in_h: hw,
        in_w: hw,
        out_channels: cout,
        kernel_h: 3,
        kernel_w: 3,
        stride_h: 1,
        stride_w: 1,
        pad_h: 1,
        pad_w: 1,
    }
}

/// The four conv layers: (name, shape).
pub fn conv_layers(batch: usize) -> [(&'static str, Conv2dShape); 4] {
    [
        ("teacher conv1", conv_shape(batch, 1, 64, 28)),
        ("teacher conv2", conv_shape(batch, 64, 128, 14)),
        ("student conv1", conv_shape(batch, 1, 32, 28)),
        ("student conv2", conv_shape(batch, 32, 64, 14)),
    ]
}

/// Adds the conv2d jobs. A kernel that panics on its probe call (not implemented yet) gets a
/// row marked "n/a"; the caller silences the panic messages.
pub fn push_jobs(jobs: &mut Vec<Job>, cpu: &str, threads: usize) {
    let row = |kernel: &str, shape: String, t: usize| Row::new(kernel, cpu, shape, Some(t));
    let layers = conv_layers(128);
    for (layer, s) in layers {
        let x = Arc::new(fill(s.input_len(), 3));
        let w = Arc::new(fill(s.weight_len(), 4));
        let dy = Arc::new(fill(s.output_len(), 6));
        for (which, kname) in ["conv fwd", "conv bwd-input", "conv bwd-weight"]
            .into_iter()
            .enumerate()
        {
            let (x, w, dy) = (x.clone(), w.clone(), dy.clone());
            let bias = fill(s.out_channels, 5);
            let mut out = vec![0.0f32; [s.output_len(), s.input_len(), s.weight_len()][which]];
            let mut run: Box<dyn FnMut()> = Box::new(move || match which {
                0 => conv::conv2d_forward(&s, &x, &w, Some(&bias), &mut out),
                1 => conv::conv2d_backward_input(&s, &w, &dy, &mut out),
                _ => conv::conv2d_backward_weight(&s, &x, &dy, &mut out),
            });
            // The probe call doubles as the warm-up.
            let ok = catch_unwind(AssertUnwindSafe(&mut run)).is_ok();
            let mut r = row(
                kname,
                format!(
                    "{layer}: b{} {}->{} {}x{} k3 p1",
                    s.batch, s.in_channels, s.out_channels, s.in_h, s.in_w
                ),
                threads,
            );
            if !ok {
                r.note = "unimplemented (panicked)".into();
            }
            jobs.push(Job {
                row: r,
                flops: s.flops(),
                peak: PeakRef::All,
                per_round: 1,
                run: ok.then_some(run),
                best: f64::INFINITY,
            });
        }
    }
}
