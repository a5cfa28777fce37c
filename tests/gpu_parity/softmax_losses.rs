//! The softmax family, the losses with and without gradients, and counting correct
//! predictions.

use crate::{Both, Rng, TestData};

#[test]
fn softmax_family_and_losses() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(5);
    for (rows, cols) in [(1, 1), (1, 10), (7, 3), (13, 10), (33, 257), (4, 1000)] {
        for t in [1.0f32, 4.0] {
            let x: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 6.0).collect();
            let x = d.f32(&x);
            let teacher: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 6.0).collect();
            let teacher = d.f32(&teacher);
            let dy = d.f32(&rng.vec(rows * cols));
            let labels = d.u32(&rng.labels(rows, cols));
            let n = rows * cols;
            let (sm, lsm, dsm, dlsm) = (d.out(n), d.out(n), d.out(n), d.out(n));
            let (ce, ce_grad, ce2) = (d.out(1), d.out(n), d.out(1));
            let (kd, kd_grad) = (d.out(1), d.out(n));
            for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
                let be = dev.backend();
                be.softmax(rows, cols, x.on(side), t, sm.on(side)).unwrap();
                be.log_softmax(rows, cols, x.on(side), t, lsm.on(side))
                    .unwrap();
                be.softmax_backward(rows, cols, sm.on(side), dy.on(side), t, dsm.on(side))
                    .unwrap();
                be.log_softmax_backward(rows, cols, lsm.on(side), dy.on(side), t, dlsm.on(side))
                    .unwrap();
                be.cross_entropy(
                    rows,
                    cols,
                    x.on(side),
                    labels.on(side),
                    ce.on(side),
                    Some(ce_grad.on(side)),
                )
                .unwrap();
                be.cross_entropy(rows, cols, x.on(side), labels.on(side), ce2.on(side), None)
                    .unwrap();
                be.kd_loss(
                    rows,
                    cols,
                    x.on(side),
                    teacher.on(side),
                    labels.on(side),
                    t,
                    0.7,
                    kd.on(side),
                    Some(kd_grad.on(side)),
                )
                .unwrap();
            }
            let what = format!("{rows}x{cols} T={t}");
            d.check(&format!("softmax {what}"), &sm);
            d.check(&format!("log_softmax {what}"), &lsm);
            d.check(&format!("softmax_backward {what}"), &dsm);
            d.check(&format!("log_softmax_backward {what}"), &dlsm);
            d.check(&format!("cross_entropy loss {what}"), &ce);
            d.check(&format!("cross_entropy grad {what}"), &ce_grad);
            d.check(&format!("cross_entropy loss without grad {what}"), &ce2);
            d.check(&format!("kd_loss loss {what}"), &kd);
            d.check(&format!("kd_loss grad {what}"), &kd_grad);
        }
    }
}

#[test]
fn count_correct_adds_with_first_max_ties() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(6);
    for (rows, cols) in [(1, 1), (9, 3), (64, 10), (5, 600)] {
        // Coarse values: many rows have tied maxima; the first one counts.
        let x: Vec<f32> = rng
            .vec(rows * cols)
            .iter()
            .map(|v| (v * 2.0).round())
            .collect();
        let x = d.f32(&x);
        let labels = d.u32(&rng.labels(rows, cols));
        let out = d.u32(&[5]);
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            for _ in 0..2 {
                dev.backend()
                    .count_correct(rows, cols, x.on(side), labels.on(side), out.on(side))
                    .unwrap();
            }
        }
        d.check_u32(&format!("count_correct {rows}x{cols}"), &out);
    }
}

/// The KD loss over a transfer set: rows labelled NO_LABEL have the KD term only and the CE
/// term is the mean over the labelled rows, which each workgroup counts itself (more than
/// 256 rows exercise the strided count; a batch with no label at all has no CE term).
#[test]
fn kd_loss_with_unlabelled_rows() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(7);
    for (rows, cols, every) in [
        (1, 1, 1),
        (7, 3, 2),
        (13, 10, 3),
        (33, 257, 4),
        (300, 10, 5),
    ] {
        let x: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 6.0).collect();
        let teacher: Vec<f32> = rng.vec(rows * cols).iter().map(|v| v * 6.0).collect();
        // Every `every`-th row keeps its label; `every == 1` with one row: none labelled.
        let labels: Vec<u32> = rng
            .labels(rows, cols)
            .iter()
            .enumerate()
            .map(|(r, &l)| {
                if r % every == 0 && rows > 1 {
                    l
                } else {
                    distill::ops::NO_LABEL
                }
            })
            .collect();
        let (x, teacher, labels) = (d.f32(&x), d.f32(&teacher), d.u32(&labels));
        let n = rows * cols;
        let (kd, kd_grad) = (d.out(1), d.out(n));
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            dev.backend()
                .kd_loss(
                    rows,
                    cols,
                    x.on(side),
                    teacher.on(side),
                    labels.on(side),
                    4.0,
                    0.6,
                    kd.on(side),
                    Some(kd_grad.on(side)),
                )
                .unwrap();
        }
        let what = format!("{rows}x{cols} labelled 1/{every}");
        d.check(&format!("masked kd_loss loss {what}"), &kd);
        d.check(&format!("masked kd_loss grad {what}"), &kd_grad);
    }
}
