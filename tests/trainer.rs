//! The training loop's guarantees, on tiny data: the KD loss by hand through the engine,
//! a NaN loss stopping the run with a clear error and no checkpoint written, bad settings.

use std::sync::Arc;

use distill::data::Dataset;
use distill::model_file::load_model;
use distill::nn::ArchSpec;
use distill::train::{self, InputSpec, KdConfig, Silent, TeacherLogits, TrainConfig, TrainJob};
use distill::{ops, Device, Error, Tensor};

mod common;
use common::tiny_dataset;

/// Two rows, two classes, T = 2, α = 0.5, worked by hand:
/// row 1: s = [0, 0], t = [0, 2 ln 3], label 0 → p_s = [½, ½], p_t = [¼, ¾],
///        KL = ¼ ln(½) + ¾ ln(3/2), CE = ln 2;
/// row 2: s = [2 ln 3, 0], t = [0, 0], label 1 → p_s(T) = [¾, ¼], p_t = [½, ½],
///        KL = ½ ln(2/3) + ½ ln 2, softmax(s) = [9/10, 1/10], CE = ln 10.
/// loss = α·T²·mean(KL) + (1−α)·mean(CE);
/// ∂/∂s = α·T·(p_s(T) − p_t)/B + (1−α)(softmax(s) − onehot)/B
///      = row 1: [⅛, −⅛] + [−⅛, ⅛] = [0, 0];  row 2: [⅛, −⅛] + [0.225, −0.225] = [0.35, −0.35].
#[test]
fn kd_loss_by_hand_through_the_engine() {
    let dev = Device::cpu();
    let ln3 = 3f64.ln();
    let s = Tensor::from_f32(&[0.0, 0.0, (2.0 * ln3) as f32, 0.0], &[2, 2], &dev)
        .unwrap()
        .into_param();
    let t = Tensor::from_f32(&[0.0, (2.0 * ln3) as f32, 0.0, 0.0], &[2, 2], &dev).unwrap();
    let y = Tensor::from_u32(&[0, 1], &[2], &dev).unwrap();
    let loss = ops::kd_loss(&s, &t, &y, 2.0, 0.5).unwrap();
    let kl1 = 0.25 * 0.5f64.ln() + 0.75 * 1.5f64.ln();
    let kl2 = 0.5 * (2.0f64 / 3.0).ln() + 0.5 * 2f64.ln();
    let expected = 0.5 * 4.0 * (kl1 + kl2) / 2.0 + 0.5 * (2f64.ln() + 10f64.ln()) / 2.0;
    let got = loss.item().unwrap() as f64;
    assert!((got - expected).abs() < 1e-6, "loss {got} vs {expected}");
    // Scaling the loss scales the gradient (the upstream scalar reaches the fused gradient).
    ops::scale(&loss, 3.0).unwrap().backward().unwrap();
    let g = s.grad().unwrap().to_vec().unwrap();
    let want = [0.0, 0.0, 0.35, -0.35].map(|v| 3.0 * v);
    for (a, b) in g.iter().zip(want) {
        assert!((*a as f64 - b).abs() < 1e-6, "grad {g:?} vs {want:?}");
    }
}

fn job<'a>(
    ds: &Dataset,
    dir: Option<std::path::PathBuf>,
    kd: Option<(KdConfig, TeacherLogits<'a>)>,
) -> TrainJob<'a> {
    TrainJob {
        run: "student".into(),
        spec: ArchSpec::preset("student", 1, 8, 8, 2).unwrap(),
        input: train::InputSpec::of(ds),
        device: Device::cpu(),
        config: TrainConfig {
            epochs: 2,
            batch_size: 16,
            ..TrainConfig::default()
        },
        train: Arc::new(ds.train.clone()),
        test: Arc::new(ds.test.clone()),
        kd,
        hint: None,
        checkpoint_dir: dir,
        resume: false,
    }
}

#[test]
fn trains_and_writes_best_and_last_checkpoints_that_reload() {
    let ds = tiny_dataset(64);
    let dir = tempfile::tempdir().unwrap();
    let trained =
        train::train(job(&ds, Some(dir.path().to_path_buf()), None), &mut Silent).unwrap();
    assert_eq!(trained.history.len(), 2);
    for f in [
        "best.safetensors",
        "last.safetensors",
        "last.state.safetensors",
    ] {
        assert!(dir.path().join(f).exists(), "{f} missing");
    }
    let loaded = load_model(
        &dir.path().join("last.safetensors"),
        &Device::cpu(),
        &|| panic!("a distill checkpoint carries its input"),
    )
    .unwrap();
    let eval = train::evaluate(
        &loaded.model,
        &Device::cpu(),
        &Arc::new(ds.test.clone()),
        &loaded.input,
        32,
        true,
    )
    .unwrap();
    assert_eq!(eval.accuracy, trained.final_accuracy);
    let confusion = eval.confusion.unwrap();
    assert_eq!(confusion.iter().flatten().sum::<u64>(), 64);
}

#[test]
fn nan_loss_stops_with_a_clear_error_and_writes_no_checkpoint() {
    let ds = tiny_dataset(32);
    let dir = tempfile::tempdir().unwrap();
    let poisoned = Arc::new(vec![f32::NAN; 32 * 2]);
    let kd = Some((KdConfig::default(), TeacherLogits::Cached(poisoned)));
    let err = train::train(job(&ds, Some(dir.path().to_path_buf()), kd), &mut Silent)
        .err()
        .expect("must fail");
    assert!(matches!(err, Error::Diverged(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("NaN") && msg.contains("epoch 1"), "{msg}");
    assert!(!dir.path().join("last.safetensors").exists());
}

#[test]
fn bad_settings_are_errors() {
    let ds = tiny_dataset(8);
    let mut j = job(&ds, None, None);
    j.config.lr = 0.0;
    assert!(train::train(j, &mut Silent).is_err());
    let mut j = job(&ds, None, None);
    j.config.batch_size = 0;
    assert!(train::train(j, &mut Silent).is_err());
    // Cached logits of the wrong size.
    let kd = Some((
        KdConfig::default(),
        TeacherLogits::Cached(Arc::new(vec![0.0; 3])),
    ));
    let err = train::train(job(&ds, None, kd), &mut Silent).err().unwrap();
    assert!(err.to_string().contains("cached teacher logits"), "{err}");
    // A checkpoint of another architecture is a clear error listing the differences.
    let dir = tempfile::tempdir().unwrap();
    train::train(job(&ds, Some(dir.path().to_path_buf()), None), &mut Silent).unwrap();
    let teacher = ArchSpec::preset("teacher", 1, 8, 8, 2).unwrap();
    let path = dir.path().join("last.safetensors");
    let mut ckpt = distill::checkpoint::load(&path).unwrap();
    ckpt.metadata
        .insert("arch_spec".into(), serde_json::to_string(&teacher).unwrap());
    distill::checkpoint::save(&path, &ckpt.tensors, &ckpt.metadata, ckpt.dtype).unwrap();
    let err = load_model(&path, &Device::cpu(), &|| unreachable!())
        .err()
        .unwrap();
    assert!(err.to_string().contains("conv1.weight"), "{err}");
}

/// A teacher exported from PyTorch (`safetensors.torch.save_file(model.state_dict())`) has
/// the presets' names and layouts but no distill metadata: its architecture is read off the
/// shapes and the data's input size.
#[test]
fn a_bare_pytorch_state_dict_loads_as_a_teacher() {
    use distill::checkpoint::{self, NamedTensor, StoreDtype};
    let ds = tiny_dataset(32);
    let trained = train::train(job(&ds, None, None), &mut Silent).unwrap();
    let tensors: Vec<NamedTensor> = trained
        .model
        .parameters()
        .into_iter()
        .map(|(name, t)| NamedTensor {
            name,
            shape: t.shape().to_vec(),
            data: t.to_vec().unwrap(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("from_pytorch.safetensors");
    checkpoint::save(&path, &tensors, &Default::default(), StoreDtype::F32).unwrap();

    let input = InputSpec::of(&ds);
    let loaded = load_model(&path, &Device::cpu(), &|| Ok(input.clone())).unwrap();
    assert_eq!(
        loaded.spec,
        ArchSpec::preset("student", 1, 8, 8, 2).unwrap()
    );
    let test = Arc::new(ds.test.clone());
    let eval = train::evaluate(&loaded.model, &Device::cpu(), &test, &input, 32, false).unwrap();
    assert_eq!(eval.accuracy, trained.final_accuracy);

    // Missing tensors or the wrong class count are clear errors.
    checkpoint::save(&path, &tensors[2..], &Default::default(), StoreDtype::F32).unwrap();
    let err = load_model(&path, &Device::cpu(), &|| Ok(input.clone()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("conv1.weight"), "{err}");
    checkpoint::save(&path, &tensors, &Default::default(), StoreDtype::F32).unwrap();
    let three_classes = InputSpec {
        class_names: vec!["a".into(), "b".into(), "c".into()],
        ..input
    };
    let err = load_model(&path, &Device::cpu(), &|| Ok(three_classes.clone()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("classes"), "{err}");
}
