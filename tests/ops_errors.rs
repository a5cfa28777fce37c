//! Bad input to the public op API is a clear error, never a panic or a wrong result:
//! `Error::Shape` for shapes, `Error::InvalidArgument` for other values.

use distill::ops::{self, Conv2dParams};
use distill::{Device, Error, Tensor};

fn t(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_f32(&vec![0.5; n], shape, &Device::cpu()).unwrap()
}

/// Expects `Error::InvalidArgument` mentioning `needle`.
fn argument_error(r: distill::Result<Tensor>, needle: &str) {
    match r {
        Err(Error::InvalidArgument(msg)) => {
            assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}")
        }
        Err(other) => {
            panic!("expected an invalid-argument error mentioning {needle:?}, got {other}")
        }
        Ok(t) => panic!(
            "expected an error mentioning {needle:?}, got a tensor {:?}",
            t.shape()
        ),
    }
}

fn shape_error(r: distill::Result<Tensor>, needle: &str) {
    match r {
        Err(Error::Shape(msg)) => assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}"),
        Err(other) => panic!("expected a shape error mentioning {needle:?}, got {other}"),
        Ok(t) => panic!(
            "expected an error mentioning {needle:?}, got a tensor {:?}",
            t.shape()
        ),
    }
}

#[test]
fn mismatched_shapes() {
    shape_error(ops::matmul(&t(&[2, 3]), &t(&[4, 5])), "inner dimensions");
    shape_error(
        ops::linear(&t(&[2, 3]), &t(&[4, 5]), None, false),
        "features",
    );
    shape_error(
        ops::linear(&t(&[2, 3]), &t(&[4, 3]), Some(&t(&[5])), false),
        "bias",
    );
    shape_error(ops::add(&t(&[2, 3]), &t(&[3, 2])), "differ");
    shape_error(
        ops::conv2d(
            &t(&[1, 2, 5, 5]),
            &t(&[4, 3, 3, 3]),
            None,
            Conv2dParams::default(),
        ),
        "channels",
    );
    shape_error(
        ops::conv2d(
            &t(&[1, 2, 5, 5]),
            &t(&[4, 2, 3, 3]),
            Some(&t(&[3])),
            Conv2dParams::default(),
        ),
        "bias",
    );
    shape_error(
        ops::conv2d(
            &t(&[2, 5, 5]),
            &t(&[4, 2, 3, 3]),
            None,
            Conv2dParams::default(),
        ),
        "rank 4",
    );
    // The conv + pool op: the conv's checks under its own name, and an output too small
    // to pool.
    shape_error(
        ops::conv2d_max_pool2(
            &t(&[1, 2, 5, 5]),
            &t(&[4, 3, 3, 3]),
            None,
            Conv2dParams::default(),
            false,
        ),
        "conv2d_max_pool2: input has 2 channels",
    );
    shape_error(
        ops::conv2d_max_pool2(
            &t(&[1, 1, 3, 3]),
            &t(&[4, 1, 3, 3]),
            Some(&t(&[4])),
            Conv2dParams::default(),
            true,
        ),
        "cannot be pooled",
    );
    shape_error(ops::reshape(&t(&[2, 3]), &[4, 2]), "cannot become");
    let labels = Tensor::from_u32(&[0, 1, 2], &[3], &Device::cpu()).unwrap();
    shape_error(ops::cross_entropy(&t(&[2, 4]), &labels), "labels");
    shape_error(
        ops::kd_loss(&t(&[3, 4]), &t(&[3, 5]), &labels, 4.0, 0.9),
        "teacher",
    );
    argument_error(
        ops::kd_loss(&t(&[3, 4]), &t(&[3, 4]), &labels, 0.0, 0.9),
        "temperature",
    );
    argument_error(
        ops::kd_loss(&t(&[3, 4]), &t(&[3, 4]), &labels, 4.0, 1.5),
        "alpha",
    );
    argument_error(ops::softmax_t(&t(&[3, 4]), f32::NAN), "temperature");
    // u32 tensors are not values.
    argument_error(ops::relu(&labels), "f32");
}

#[test]
fn zero_sized_dimensions() {
    shape_error(ops::matmul(&t(&[0, 3]), &t(&[3, 2])), "zero-sized");
    shape_error(
        ops::linear(&t(&[2, 0]), &t(&[4, 0]), None, false),
        "zero-sized",
    );
    shape_error(
        ops::conv2d(
            &t(&[0, 1, 5, 5]),
            &t(&[2, 1, 3, 3]),
            None,
            Conv2dParams::default(),
        ),
        "batch",
    );
    shape_error(
        ops::conv2d(
            &t(&[1, 1, 5, 5]),
            &t(&[2, 1, 3, 3]),
            None,
            Conv2dParams {
                stride: (0, 1),
                padding: (0, 0),
            },
        ),
        "stride",
    );
    shape_error(
        ops::max_pool2d(&t(&[1, 0, 4, 4]), (2, 2), (2, 2)),
        "channels",
    );
    shape_error(ops::max_pool2d(&t(&[1, 1, 4, 4]), (2, 2), (0, 2)), "stride");
    shape_error(ops::mean(&t(&[0])), "zero-sized");
    shape_error(ops::softmax_t(&t(&[3, 0]), 1.0), "zero-sized");
}

#[test]
fn windows_larger_than_the_input() {
    shape_error(
        ops::conv2d(
            &t(&[1, 1, 3, 3]),
            &t(&[1, 1, 5, 5]),
            None,
            Conv2dParams::default(),
        ),
        "larger than the padded input",
    );
    // Padding can make it fit.
    assert!(ops::conv2d(
        &t(&[1, 1, 3, 3]),
        &t(&[1, 1, 5, 5]),
        None,
        Conv2dParams {
            stride: (1, 1),
            padding: (1, 1)
        }
    )
    .is_ok());
    shape_error(
        ops::max_pool2d(&t(&[1, 1, 3, 3]), (4, 4), (1, 1)),
        "larger than the input",
    );
}

#[test]
fn values_that_do_not_fill_the_shape() {
    let e = Tensor::from_f32(&[1.0, 2.0, 3.0], &[2, 2], &Device::cpu())
        .err()
        .unwrap();
    assert!(e.to_string().contains("do not fill"), "{e}");
    let x = t(&[2, 2]);
    assert!(x.assign(&[1.0]).is_err());
    assert!(x.item().is_err());
    assert!(Device::from_spec("tpu").is_err());
}
