//! conv2d forward and the three backward kernels; max pooling with overlapping windows and
//! ties.

use distill::backend::{pool_after, Conv2dShape, Pool2dShape};

use crate::{Both, Rng, TestData};

#[test]
fn conv2d_forward_and_backward() {
    let Some(d) = Both::new() else { return };
    conv2d_cases(&d);
}

/// Forward and the three backward kernels on odd shapes, strides and paddings, including
/// implicit GEMMs past 128 rows and columns (the largest tile); then forward without bias.
pub(crate) fn conv2d_cases(d: &Both) {
    let mut rng = Rng::new(2);
    // (batch, cin, h, w, cout, kh, kw, stride, pad)
    let cases = [
        (1, 1, 5, 5, 1, 3, 3, 1, 0),
        (2, 3, 7, 6, 5, 3, 3, 1, 1),
        (2, 2, 9, 9, 3, 3, 3, 2, 1),
        (1, 4, 8, 8, 7, 1, 1, 1, 0),
        (3, 2, 6, 7, 4, 5, 3, 2, 2),
        (2, 3, 13, 11, 65, 2, 2, 3, 0),
        (3, 5, 12, 12, 130, 3, 3, 1, 1),
    ];
    for &(batch, cin, h, w, cout, kh, kw, stride, pad) in &cases {
        let s = Conv2dShape {
            batch,
            in_channels: cin,
            in_h: h,
            in_w: w,
            out_channels: cout,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: stride,
            stride_w: stride,
            pad_h: pad,
            pad_w: pad.min(kw - 1),
        };
        let what = format!("{s:?}");
        let x = d.f32(&rng.vec(s.input_len()));
        let wt = d.f32(&rng.vec(s.weight_len()));
        let bias = d.f32(&rng.vec(cout));
        let dy = d.f32(&rng.vec(s.output_len()));
        let (y, dx, dw, db) = (
            d.out(s.output_len()),
            d.out(s.input_len()),
            d.out(s.weight_len()),
            d.out(cout),
        );
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.conv2d_forward(&s, x.on(side), wt.on(side), Some(bias.on(side)), y.on(side))
                .unwrap();
            be.conv2d_backward_input(&s, wt.on(side), dy.on(side), dx.on(side))
                .unwrap();
            be.conv2d_backward_weight(&s, x.on(side), dy.on(side), dw.on(side))
                .unwrap();
            be.conv2d_backward_bias(&s, dy.on(side), db.on(side))
                .unwrap();
        }
        d.check(&format!("conv2d forward {what}"), &y);
        d.check(&format!("conv2d backward input {what}"), &dx);
        d.check(&format!("conv2d backward weight {what}"), &dw);
        d.check(&format!("conv2d backward bias {what}"), &db);
    }
    // Without bias.
    let s = Conv2dShape::same_3x3(2, 3, 2, 5);
    let x = d.f32(&rng.vec(s.input_len()));
    let wt = d.f32(&rng.vec(s.weight_len()));
    let y = d.out(s.output_len());
    d.cpu
        .backend()
        .conv2d_forward(&s, &x.cpu, &wt.cpu, None, &y.cpu)
        .unwrap();
    d.gpu
        .backend()
        .conv2d_forward(&s, &x.gpu, &wt.gpu, None, &y.gpu)
        .unwrap();
    d.check("conv2d forward without bias", &y);
}

/// conv2d followed by the 2×2 max-pool (and a ReLU) as one call: the CPU fuses thin convs (at
/// AVX-512 and NEON), the GPU runs its kernels one after the other; forward, arg-max, and the
/// weight and bias gradients from the output's gradient, on odd and even conv outputs.
#[test]
fn conv2d_pool_forward_and_param_grads() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(5);
    for s in [
        Conv2dShape::same_3x3(3, 1, 5, 8),
        Conv2dShape::same_3x3(2, 1, 7, 11),
        Conv2dShape::same_3x3(2, 3, 4, 9),
    ] {
        for relu in [false, true] {
            let what = format!("relu {relu}, {s:?}");
            let ps = pool_after(&s);
            let x = d.f32(&rng.vec(s.input_len()));
            let wt = d.f32(&rng.vec(s.weight_len()));
            let bias = d.f32(&rng.vec(s.out_channels));
            let dy = d.f32(&rng.vec(ps.output_len()));
            let (y, arg, dw, db) = (
                d.out(ps.output_len()),
                d.out(ps.output_len()),
                d.out(s.weight_len()),
                d.out(s.out_channels),
            );
            for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
                let be = dev.backend();
                be.conv2d_pool_forward(
                    &s,
                    x.on(side),
                    wt.on(side),
                    Some(bias.on(side)),
                    relu,
                    y.on(side),
                    arg.on(side),
                )
                .unwrap();
                be.conv2d_pool_backward_params(
                    &s,
                    x.on(side),
                    dy.on(side),
                    arg.on(side),
                    relu.then(|| y.on(side)),
                    dw.on(side),
                    Some(db.on(side)),
                )
                .unwrap();
            }
            d.check(&format!("conv2d + pool forward, {what}"), &y);
            d.check_u32(&format!("conv2d + pool arg-max, {what}"), &arg);
            d.check(&format!("conv2d + pool weight grad, {what}"), &dw);
            d.check(&format!("conv2d + pool bias grad, {what}"), &db);
        }
    }
}

#[test]
fn max_pool_overlapping_windows_and_ties() {
    let Some(d) = Both::new() else { return };
    let mut rng = Rng::new(3);
    // (batch, channels, h, w, kh, kw, sh, sw)
    let cases = [
        (1, 1, 4, 4, 2, 2, 2, 2),
        (2, 3, 7, 7, 3, 3, 2, 2),
        (1, 2, 6, 5, 2, 2, 1, 1),
        (2, 2, 9, 8, 3, 2, 1, 2),
        (1, 1, 13, 13, 4, 4, 3, 3),
    ];
    for (ci, &(batch, channels, h, w, kh, kw, sh, sw)) in cases.iter().enumerate() {
        let s = Pool2dShape {
            batch,
            channels,
            in_h: h,
            in_w: w,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
        };
        // Every other case uses few distinct values, so windows have ties.
        let xs: Vec<f32> = rng
            .vec(s.input_len())
            .into_iter()
            .map(|v| if ci % 2 == 1 { (v * 2.0).round() } else { v })
            .collect();
        let x = d.f32(&xs);
        let dy = d.f32(&rng.vec(s.output_len()));
        let y = d.out(s.output_len());
        let am = d.u32(&vec![u32::MAX; s.output_len()]);
        let dx = d.out(s.input_len());
        for (dev, side) in [(&d.cpu, 0), (&d.gpu, 1)] {
            let be = dev.backend();
            be.max_pool2d_forward(&s, x.on(side), y.on(side), am.on(side))
                .unwrap();
            // Backward from each side's own arg-max (they must agree anyway).
            be.max_pool2d_backward(&s, dy.on(side), am.on(side), dx.on(side))
                .unwrap();
        }
        d.check(&format!("max_pool2d forward {s:?}"), &y);
        d.check_u32(&format!("max_pool2d argmax {s:?}"), &am);
        d.check(&format!("max_pool2d backward {s:?}"), &dx);
    }
}
