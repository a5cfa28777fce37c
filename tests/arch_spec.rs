//! Compact architecture specs (`c16-c32-f128`): the parser against bad input, the network it
//! builds, and checkpoints of any spec loading back, with and without distill metadata.

use std::collections::BTreeMap;

use distill::checkpoint::{self, NamedTensor, StoreDtype};
use distill::model_file::{load_model, model_metadata, save_model};
use distill::nn::ArchSpec;
use distill::train::InputSpec;
use distill::{no_grad, Device, Error, Tensor};

fn input(classes: usize) -> InputSpec {
    InputSpec {
        channels: 1,
        height: 28,
        width: 28,
        mean: vec![0.5],
        std: vec![0.25],
        class_names: (0..classes).map(|i| format!("k{i}")).collect(),
    }
}

#[test]
fn bad_specs_are_clear_errors() {
    for (spec, needle) in [
        ("", "is not c or f"),
        ("c16-c32", "no hidden width"),
        ("f128", "no conv width"),
        ("c16-f128-c32", "follows the hidden width"),
        ("c16-f128-f64", "follows the hidden width"),
        ("c0-f128", "width in 1..="),
        ("c16-f-1", "is not c or f"),
        ("x16-f128", "neither cN nor fN"),
        ("c16--f128", "is not c or f"),
        ("c16-f99999999999999999999", "width in 1..="),
        ("c1.5-f4", "is not c or f"),
        ("C16-f128", "neither cN nor fN"),
        ("é16-f128", "neither cN nor fN"),
        ("teachers", "is not c or f"),
    ] {
        match ArchSpec::parse(spec, 1, 28, 28, 10) {
            Err(Error::InvalidArgument(msg)) => {
                assert!(msg.contains(needle), "{spec:?}: {msg}");
                assert!(
                    msg.contains("c16-c32-f128"),
                    "{spec:?}: the message shows the form"
                );
            }
            other => panic!("{spec:?} gave {other:?}"),
        }
        assert!(ArchSpec::check_name(spec).is_err(), "{spec:?}");
    }
    // Well formed but too deep for the input: five 2x2 pools need 32x32.
    let e = ArchSpec::parse("c4-c4-c4-c4-c4-f8", 1, 28, 28, 10).unwrap_err();
    assert!(e.to_string().contains("need at least 32x32"), "{e}");
}

#[test]
fn presets_and_specs_agree() {
    let named = ArchSpec::named("student", 1, 28, 28, 10).unwrap();
    let parsed = ArchSpec::parse("c32-c64-f500", 1, 28, 28, 10).unwrap();
    assert_eq!(named.parameter_shapes(), parsed.parameter_shapes());
    assert_eq!(named.num_parameters(), parsed.num_parameters());
    // c16-c32-f128 on 28x28: 16·9+16 + 32·16·9+32 + 128·(32·7·7)+128 + 10·128+10.
    let small = ArchSpec::named("c16-c32-f128", 1, 28, 28, 10).unwrap();
    let want = 16 * 9 + 16 + 32 * 16 * 9 + 32 + 128 * 32 * 49 + 128 + 10 * 128 + 10;
    assert_eq!(small.num_parameters(), want);
}

#[test]
fn any_spec_builds_runs_and_round_trips_through_checkpoints() {
    let dev = Device::cpu();
    let spec = ArchSpec::named("c4-c8-c6-f12", 1, 28, 28, 5).unwrap();
    let names: Vec<String> = spec
        .parameter_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "conv3.weight",
            "conv3.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias"
        ]
    );
    assert_eq!(spec.fc1_inputs(), 6 * 3 * 3);
    let model = spec.build(&dev, 3).unwrap();
    let x = Tensor::from_f32(&vec![0.1; 2 * 28 * 28], &[2, 1, 28, 28], &dev).unwrap();
    let y = no_grad(|| model.forward(&x)).unwrap();
    assert_eq!(y.shape(), [2, 5]);

    let tmp = tempfile::tempdir().unwrap();
    // With metadata: the spec comes back as it was.
    let path = tmp.path().join("m.safetensors");
    save_model(
        &path,
        &model,
        &model_metadata(&spec, &input(5), 3, None),
        StoreDtype::F32,
    )
    .unwrap();
    let loaded = load_model(&path, &dev, &|| unreachable!()).unwrap();
    assert_eq!(loaded.spec, spec);
    let y2 = no_grad(|| loaded.model.forward(&x)).unwrap();
    assert_eq!(y.to_vec().unwrap(), y2.to_vec().unwrap());

    // A bare state_dict (as PyTorch saves it): the spec is read off the shapes.
    let tensors: Vec<NamedTensor> = model
        .parameters()
        .into_iter()
        .map(|(name, t)| NamedTensor {
            name,
            shape: t.shape().to_vec(),
            data: t.to_vec().unwrap(),
        })
        .collect();
    let bare = tmp.path().join("bare.safetensors");
    checkpoint::save(&bare, &tensors, &BTreeMap::new(), StoreDtype::F32).unwrap();
    let inferred = load_model(&bare, &dev, &|| Ok(input(5))).unwrap();
    assert_eq!(inferred.spec.conv_channels, vec![4, 8, 6]);
    assert_eq!(inferred.spec.hidden, 12);
    assert_eq!(inferred.spec.arch, "c4-c8-c6-f12");
    let y3 = no_grad(|| inferred.model.forward(&x)).unwrap();
    assert_eq!(y.to_vec().unwrap(), y3.to_vec().unwrap());
}
