//! The MSE loss (the hint term's kernel): loss and gradient, with and without the gradient,
//! on lengths around the workgroup (256) and chunk (4096) sizes.

use crate::{Both, Rng, TestData};

#[test]
fn mse_loss_and_gradient() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(91);
    for n in [1, 7, 255, 257, 4095, 4096, 4097, 12_345, 100_003] {
        let a: Vec<f32> = rng.vec(n).iter().map(|v| v * 4.0).collect();
        let a = d.f32(&a);
        let b = d.f32(&rng.vec(n));
        let (loss, grad, loss_only) = (d.out(1), d.out(n), d.out(1));
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.mse_loss(
                n,
                a.on(side),
                b.on(side),
                loss.on(side),
                Some(grad.on(side)),
            )
            .unwrap();
            be.mse_loss(n, a.on(side), b.on(side), loss_only.on(side), None)
                .unwrap();
        }
        d.check(&format!("mse_loss loss n={n}"), &loss);
        d.check(&format!("mse_loss grad n={n}"), &grad);
        d.check(&format!("mse_loss loss without grad n={n}"), &loss_only);
    }
}

#[test]
fn mse_loss_reads_only_len_elements() {
    // Buffers longer than `len` (a pooled buffer may be): the tail takes no part.
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(92);
    let n = 300;
    let mut a = rng.vec(n + 50);
    a[n..].fill(1e6);
    let (a, b) = (d.f32(&a), d.f32(&rng.vec(n + 50)));
    let loss = d.out(1);
    for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
        dev.backend()
            .mse_loss(n, a.on(side), b.on(side), loss.on(side), None)
            .unwrap();
    }
    d.check("mse_loss over a prefix", &loss);
    let l = d.cpu.backend().download_f32(&loss.cpu).unwrap()[0];
    assert!(l < 10.0, "the tail was read: {l}");
}
