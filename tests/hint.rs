//! Feature (hint) distillation: the MSE op (gradients against finite differences, a hand
//! computation, bad input), the feature taps of `Sequential`, the hint term (its checks, that
//! it trains the student and the adapter) and training with it (the saved model stays the
//! student alone; resume restores the adapter exactly).

use std::sync::Arc;

use distill::data::Dataset;
use distill::nn::{ArchSpec, Sequential};
use distill::optim::{OptimConfig, Optimizer};
use distill::rng::Rng;
use distill::train::{self, HintConfig, HintTerm, InputSpec, Silent, TrainConfig, TrainJob};
use distill::{no_grad, ops, Device, Error, Tensor};

mod common;
use common::{gpu_or_skip, grad_parity, gradcheck, tiny_dataset};

fn dev() -> Device {
    Device::cpu()
}

fn tensor(data: &[f32], shape: &[usize]) -> Tensor {
    Tensor::from_f32(data, shape, &dev()).unwrap()
}

fn random(rng: &mut Rng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    tensor(&v, shape)
}

// --- the op -----------------------------------------------------------------------------------

#[test]
fn mse_gradients_match_finite_differences() {
    let mut rng = Rng::new(81);
    for shape in [&[1usize][..], &[7], &[3, 5], &[2, 3, 5, 4]] {
        gradcheck(&dev(), &mut rng, &[shape, shape], 1e-2, 2e-3, |t| {
            ops::mse_loss(&t[0], &t[1])
        });
    }
    // Inside a graph: the upstream gradient reaches both inputs.
    gradcheck(&dev(), &mut rng, &[&[4, 6], &[4, 6]], 1e-2, 2e-3, |t| {
        ops::scale(&ops::mse_loss(&ops::scale(&t[0], 1.5)?, &t[1])?, -3.0)
    });
    // Past one kernel chunk (16K elements: the threaded path).
    gradcheck(
        &dev(),
        &mut rng,
        &[&[3, 7001], &[3, 7001]],
        1e-2,
        2e-3,
        |t| ops::mse_loss(&t[0], &t[1]),
    );
}

#[test]
fn mse_by_hand_with_a_gradient_for_either_input() {
    // a − b = [1, −2, 0, 3]: loss = (1 + 4 + 0 + 9)/4 = 3.5, ∂/∂a = (a − b)/2.
    let a_data = [1.0, 0.0, 2.0, 5.0];
    let b_data = [0.0, 2.0, 2.0, 2.0];
    let a = tensor(&a_data, &[2, 2]).into_param();
    let b = tensor(&b_data, &[2, 2]);
    let loss = ops::mse_loss(&a, &b).unwrap();
    assert_eq!(loss.shape(), &[] as &[usize]);
    assert_eq!(loss.item().unwrap(), 3.5);
    ops::scale(&loss, 2.0).unwrap().backward().unwrap();
    assert_eq!(a.grad().unwrap().to_vec().unwrap(), [1.0, -2.0, 0.0, 3.0]);
    // Only b trainable: its gradient is the negative.
    let a = tensor(&a_data, &[2, 2]);
    let b = tensor(&b_data, &[2, 2]).into_param();
    ops::mse_loss(&a, &b).unwrap().backward().unwrap();
    assert_eq!(b.grad().unwrap().to_vec().unwrap(), [-0.5, 1.0, -0.0, -1.5]);
    // Under no_grad nothing is recorded.
    let p = tensor(&a_data, &[4]).into_param();
    let l = no_grad(|| ops::mse_loss(&p, &tensor(&b_data, &[4]))).unwrap();
    assert!(!l.requires_grad());
}

#[test]
fn mse_bad_input_is_an_error() {
    let shape = |r: distill::Result<Tensor>, needle: &str| match r {
        Err(Error::Shape(m)) => assert!(m.contains(needle), "{m}"),
        Err(e) => panic!("expected a shape error with {needle:?}, got {e}"),
        Ok(_) => panic!("expected a shape error with {needle:?}"),
    };
    let z = |s: &[usize]| tensor(&vec![0.5; s.iter().product()], s);
    shape(ops::mse_loss(&z(&[2, 3]), &z(&[3, 2])), "differ");
    shape(ops::mse_loss(&z(&[6]), &z(&[2, 3])), "differ");
    shape(ops::mse_loss(&z(&[2, 0]), &z(&[2, 0])), "zero-sized");
    let labels = Tensor::from_u32(&[1, 2], &[2], &dev()).unwrap();
    match ops::mse_loss(&labels, &z(&[2])) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("f32"), "{m}"),
        other => panic!("expected an invalid-argument error, got {:?}", other.err()),
    }
}

// --- feature taps -----------------------------------------------------------------------------

fn student_28(seed: u64) -> Sequential {
    ArchSpec::preset("student", 1, 28, 28, 10)
        .unwrap()
        .build(&dev(), seed)
        .unwrap()
}

#[test]
fn taps_return_the_named_activation_and_the_same_logits() {
    let net = student_28(1);
    assert_eq!(net.tap_names(), ["conv1", "pool1", "conv2", "pool2"]);
    let mut rng = Rng::new(82);
    let x = random(&mut rng, &[3, 1, 28, 28]);
    let plain = net.forward(&x).unwrap().to_vec().unwrap();
    for (tap, shape) in [
        ("conv1", [3, 32, 28, 28]),
        ("pool1", [3, 32, 14, 14]),
        ("conv2", [3, 64, 14, 14]),
        ("pool2", [3, 64, 7, 7]),
    ] {
        let (logits, feature) = net.forward_with_tap(&x, tap).unwrap();
        assert_eq!(logits.to_vec().unwrap(), plain, "{tap}: logits differ");
        assert_eq!(feature.shape(), shape, "{tap}");
        let alone = net.features(&x, tap).unwrap();
        assert_eq!(alone.to_vec().unwrap(), feature.to_vec().unwrap(), "{tap}");
        if tap.starts_with("conv") {
            // After the ReLU.
            assert!(feature.to_vec().unwrap().iter().all(|&v| v >= 0.0), "{tap}");
        }
    }
    // pool1 is conv1 max-pooled 2x2: check one window by hand.
    let c1 = net.features(&x, "conv1").unwrap().to_vec().unwrap();
    let p1 = net.features(&x, "pool1").unwrap().to_vec().unwrap();
    let window = [c1[0], c1[1], c1[28], c1[29]];
    assert_eq!(p1[0], window.iter().copied().fold(f32::MIN, f32::max));
}

#[test]
fn a_bad_tap_name_is_a_clear_error() {
    let net = student_28(1);
    let x = tensor(&[0.0; 784], &[1, 1, 28, 28]);
    for bad in ["conv3", "fc1", "", "Conv2"] {
        match net.forward_with_tap(&x, bad) {
            Err(Error::InvalidArgument(m)) => {
                assert!(m.contains("conv1, pool1, conv2, pool2"), "{m}")
            }
            other => panic!("{bad:?}: expected an error, got {:?}", other.map(|_| ())),
        }
        assert!(net.features(&x, bad).is_err());
    }
}

#[test]
fn gradients_flow_through_the_tapped_feature() {
    let spec = ArchSpec::preset("student", 1, 8, 8, 3).unwrap();
    let net = spec.build(&dev(), 5).unwrap();
    let mut rng = Rng::new(83);
    let target = random(&mut rng, &[2, 64, 4, 4]);
    gradcheck(&dev(), &mut rng, &[&[2, 1, 8, 8]], 1e-3, 1e-2, |t| {
        let (logits, feature) = net.forward_with_tap(&t[0], "conv2")?;
        ops::add(&ops::mse_loss(&feature, &target)?, &ops::mean(&logits)?)
    });
}

// --- the hint term ----------------------------------------------------------------------------

fn input(c: usize, h: usize, w: usize) -> InputSpec {
    InputSpec {
        channels: c,
        height: h,
        width: w,
        mean: vec![0.0; c],
        std: vec![1.0; c],
        class_names: (0..2).map(|i| i.to_string()).collect(),
    }
}

fn setting_error<T>(r: distill::Result<T>, key: &str, needle: &str) {
    match r {
        Err(Error::InvalidSetting { key: k, reason }) => {
            assert_eq!(k, key, "{reason}");
            assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        }
        Err(e) => panic!("expected an invalid {key}, got {e}"),
        Ok(_) => panic!("expected an invalid {key}"),
    }
}

#[test]
fn hint_settings_parse_and_validate() {
    let h = HintConfig::new(0.5, HintConfig::DEFAULT_LAYERS).unwrap();
    assert_eq!(
        (h.student_layer.as_str(), h.teacher_layer.as_str()),
        ("conv2", "conv2")
    );
    let h = HintConfig::new(2.0, "pool1:conv2").unwrap();
    assert_eq!(
        (h.student_layer.as_str(), h.teacher_layer.as_str()),
        ("pool1", "conv2")
    );
    let h = HintConfig::new(1.0, "conv1").unwrap();
    assert_eq!(
        (h.student_layer.as_str(), h.teacher_layer.as_str()),
        ("conv1", "conv1")
    );
    for w in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        setting_error(HintConfig::new(w, "conv2:conv2"), "hint_weight", "> 0");
    }
    for layers in [":", "conv2:", ":conv2", ""] {
        setting_error(
            HintConfig::new(1.0, layers),
            "hint_layers",
            "STUDENT:TEACHER",
        );
    }
}

#[test]
fn the_hint_term_checks_layers_and_sizes() {
    let spec = |arch| ArchSpec::preset(arch, 1, 8, 8, 2).unwrap();
    let student = spec("student").build(&dev(), 1).unwrap();
    let teacher = spec("teacher").build(&dev(), 2).unwrap();
    let inp = input(1, 8, 8);
    let term = |layers: &str| {
        HintTerm::new(
            &HintConfig::new(1.0, layers).unwrap(),
            &teacher,
            &student,
            &inp,
            &dev(),
            0,
        )
    };
    // Student conv2 (64 channels) → teacher conv2 (128): a 1x1 conv of 64 → 128.
    let ok = term("conv2:conv2").unwrap();
    let shapes: Vec<_> = ok
        .parameters()
        .iter()
        .map(|(n, p)| (n.clone(), p.shape().to_vec()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("hint_adapter.weight".to_string(), vec![128, 64, 1, 1]),
            ("hint_adapter.bias".to_string(), vec![128])
        ]
    );
    // pool1 (32 channels, 4x4) → conv2 (128, 4x4) is fine too.
    let shapes = term("pool1:conv2").unwrap().parameters()[0]
        .1
        .shape()
        .to_vec();
    assert_eq!(shapes, [128, 32, 1, 1]);
    setting_error(
        term("conv2:conv1"),
        "hint_layers",
        "4x4 and the teacher's conv1 is 8x8",
    );
    setting_error(
        term("conv9:conv2"),
        "hint_layers",
        "the student has no feature layer 'conv9'",
    );
    setting_error(
        term("conv2:fc1"),
        "hint_layers",
        "(it has: conv1, pool1, conv2, pool2)",
    );
}

#[test]
fn the_hint_term_trains_the_student_and_the_adapter_towards_the_teacher() {
    let spec = |arch| ArchSpec::preset(arch, 1, 8, 8, 2).unwrap();
    let student = spec("student").build(&dev(), 1).unwrap();
    let teacher = spec("teacher").build(&dev(), 2).unwrap();
    let cfg = HintConfig::new(1.0, "conv2:conv2").unwrap();
    let term = HintTerm::new(&cfg, &teacher, &student, &input(1, 8, 8), &dev(), 0).unwrap();
    let mut rng = Rng::new(84);
    let x = random(&mut rng, &[8, 1, 8, 8]);
    let before_teacher = teacher.parameters()[0].1.to_vec().unwrap();
    let mut params = student.parameters();
    params.extend(term.parameters());
    let mut opt = Optimizer::new(OptimConfig::adam(3e-3, 0.0), params).unwrap();
    let first = term.forward(&student, &x).unwrap().1.item().unwrap();
    let mut last = first;
    for _ in 0..40 {
        let (_, loss) = term.forward(&student, &x).unwrap();
        opt.zero_grad();
        loss.backward().unwrap();
        // Both the adapter and the student's layers up to the tap get gradients.
        assert!(term.parameters()[0].1.grad().is_some());
        assert!(student.parameters()[0].1.grad().is_some());
        opt.step().unwrap();
        last = loss.item().unwrap();
    }
    assert!(first.is_finite() && first > 0.0);
    assert!(
        last < 0.5 * first,
        "hint loss {first} → {last}: not learning"
    );
    // The teacher is a fixed target.
    assert_eq!(teacher.parameters()[0].1.to_vec().unwrap(), before_teacher);
    // The term is weight · mse: doubling the weight doubles it.
    let cfg2 = HintConfig { weight: 2.0, ..cfg };
    let term2 = HintTerm::new(&cfg2, &teacher, &student, &input(1, 8, 8), &dev(), 0).unwrap();
    let (a, b) = (
        HintTerm::new(
            &HintConfig::new(1.0, "conv2").unwrap(),
            &teacher,
            &student,
            &input(1, 8, 8),
            &dev(),
            0,
        )
        .unwrap()
        .forward(&student, &x)
        .unwrap()
        .1
        .item()
        .unwrap(),
        term2.forward(&student, &x).unwrap().1.item().unwrap(),
    );
    assert_eq!(2.0 * a, b);
}

#[test]
fn the_op_and_the_hint_term_on_the_gpu_match_the_cpu() {
    let Some(gpu) = gpu_or_skip() else { return };
    let mut rng = Rng::new(85);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.normal()).collect() };
    let (a, b) = (draw(3 * 5 * 7 * 9), draw(3 * 5 * 7 * 9));
    let x = draw(2 * 64);
    let mut rng = Rng::new(86);
    let shape = [3usize, 5, 7, 9];
    grad_parity(
        &dev(),
        &gpu,
        &mut rng,
        &[(&shape, a), (&shape, b)],
        1e-4,
        |t| ops::mse_loss(&t[0], &t[1]),
    );
    // The whole term: the student's path up to its tap, the adapter, the teacher's features
    // (no gradient), the op; checked through the gradient wrt the images.
    let cfg = HintConfig::new(0.7, "conv2:conv2").unwrap();
    grad_parity(&dev(), &gpu, &mut rng, &[(&[2, 1, 8, 8], x)], 1e-3, |t| {
        let d = t[0].device();
        let spec = |arch| ArchSpec::preset(arch, 1, 8, 8, 2).unwrap();
        let student = spec("student").build(d, 1)?;
        let teacher = spec("teacher").build(d, 2)?;
        let term = HintTerm::new(&cfg, &teacher, &student, &input(1, 8, 8), d, 0)?;
        let (logits, hint) = term.forward(&student, &t[0])?;
        ops::add(&hint, &ops::mean(&logits)?)
    });
}

// --- training with a hint ---------------------------------------------------------------------

fn hint_job<'a>(
    ds: &Dataset,
    teacher: &'a Sequential,
    hint: Option<HintConfig>,
    epochs: usize,
    dir: &std::path::Path,
) -> TrainJob<'a> {
    TrainJob {
        run: "hint".into(),
        spec: ArchSpec::preset("student", 1, 8, 8, 2).unwrap(),
        input: InputSpec::of(ds),
        device: dev(),
        config: TrainConfig {
            epochs,
            batch_size: 16,
            ..TrainConfig::default()
        },
        train: Arc::new(ds.train.clone()),
        test: Arc::new(ds.test.clone()),
        kd: None,
        hint: hint.map(|h| (h, teacher)),
        checkpoint_dir: Some(dir.to_path_buf()),
        resume: true,
    }
}

fn weights(model: &Sequential) -> Vec<Vec<f32>> {
    model
        .parameters()
        .iter()
        .map(|(_, p)| p.to_vec().unwrap())
        .collect()
}

#[test]
fn training_with_a_hint_saves_the_student_alone_and_resumes_exactly() {
    let ds = tiny_dataset(48);
    let teacher = ArchSpec::preset("teacher", 1, 8, 8, 2)
        .unwrap()
        .build(&dev(), 7)
        .unwrap();
    let hint = HintConfig::new(0.5, "conv2:conv2").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (straight, split) = (tmp.path().join("straight"), tmp.path().join("split"));

    let a = train::train(
        hint_job(&ds, &teacher, Some(hint.clone()), 3, &straight),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(a.history.len(), 3);
    assert!(a.history.iter().all(|r| r.train_loss.is_finite()));

    // The checkpoint holds the student's parameters only; the state file holds the adapter.
    let last = distill::checkpoint::load(&straight.join("last.safetensors")).unwrap();
    let names: Vec<_> = last.tensors.iter().map(|t| t.name.as_str()).collect();
    let spec = ArchSpec::preset("student", 1, 8, 8, 2).unwrap();
    let want: Vec<_> = spec
        .parameter_shapes()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, want);
    let state = distill::checkpoint::load(&straight.join("last.state.safetensors")).unwrap();
    for name in [
        "hint_adapter.weight",
        "hint_adapter.bias",
        "hint_adapter.weight.exp_avg",
    ] {
        assert!(state.get(name).is_some(), "the state file lacks {name}");
    }

    // 1 epoch, then a resumed run to 3: the same weights, bit for bit (the adapter and its
    // optimiser state came back exactly, or epoch 2 would differ).
    train::train(
        hint_job(&ds, &teacher, Some(hint.clone()), 1, &split),
        &mut Silent,
    )
    .unwrap();
    let b = train::train(
        hint_job(&ds, &teacher, Some(hint.clone()), 3, &split),
        &mut Silent,
    )
    .unwrap();
    assert!(
        weights(&a.model) == weights(&b.model),
        "resumed weights differ"
    );
    let losses = |h: &[train::EpochRecord]| h.iter().map(|r| r.train_loss).collect::<Vec<_>>();
    assert_eq!(losses(&a.history), losses(&b.history));

    // The hint changes training: without it the same seed ends elsewhere.
    let plain = tmp.path().join("plain");
    let c = train::train(hint_job(&ds, &teacher, None, 1, &plain), &mut Silent).unwrap();
    let one = tmp.path().join("one");
    let d = train::train(
        hint_job(&ds, &teacher, Some(hint.clone()), 1, &one),
        &mut Silent,
    )
    .unwrap();
    assert!(
        weights(&c.model) != weights(&d.model),
        "the hint changed nothing"
    );

    // Resuming with other hint settings, or none, is refused.
    let other = HintConfig::new(0.25, "conv2:conv2").unwrap();
    for h in [None, Some(other)] {
        match train::train(hint_job(&ds, &teacher, h.clone(), 4, &split), &mut Silent) {
            Err(Error::Resume(m)) => assert!(m.contains("hint"), "{m}"),
            other => panic!("{h:?}: expected a resume error, got {:?}", other.err()),
        }
    }
}
