//! Distill a student from a teacher trained in PyTorch. A teacher is any safetensors file of a
//! PyTorch `state_dict` of the presets' layout (modules `conv1`…`convK`, `fc1`, `fc2`: 3×3
//! convolutions with padding 1, each followed by ReLU and a 2×2 max-pool, then two linear
//! layers; `scripts/check_pytorch_load.py` builds that module). In PyTorch:
//!
//! ```python
//! from safetensors.torch import save_file
//! save_file(model.state_dict(), "teacher.safetensors")
//! ```
//!
//! Its architecture is read off the tensor shapes; the input size and the classes come from
//! the dataset. Run it with such a file, or without one: it then trains a small teacher here
//! and saves it as a bare `state_dict` (no distill metadata), just as PyTorch would.
//!
//! ```sh
//! cargo run --release --example distill_from_pytorch -- [TEACHER.safetensors] [DATA_DIR] [IMAGES]
//! ```

use std::path::PathBuf;

use distill::checkpoint::{self, NamedTensor, StoreDtype};
use distill::data;
use distill::pipeline::{self, DataSource, ModelJob, TeacherSource};
use distill::train::{KdConfig, Silent, TrainConfig};
use distill::Device;

fn main() -> distill::Result<()> {
    let mut args = std::env::args().skip(1);
    let teacher = args.next().filter(|a| !a.is_empty()).map(PathBuf::from);
    let data = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(data::default_data_dir);
    let images: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let source = DataSource {
        path: data,
        max_train: Some(images),
        max_test: Some(images),
    };
    let ds = source.load()?;
    let device = Device::cpu(); // or Device::from_spec("gpu")?
    let scratch = std::env::temp_dir().join(format!("distill-from-pytorch-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| distill::Error::io(&scratch, e))?;

    let teacher = match teacher {
        Some(path) => path,
        None => stand_in_teacher(&ds, &device, &scratch.join("teacher.safetensors"))?,
    };
    let job = ModelJob {
        arch: "student".into(),
        config: TrainConfig {
            epochs: 2,
            ..TrainConfig::default()
        },
        out: scratch.join("student"),
        teacher: Some(TeacherSource {
            checkpoints: vec![teacher],
            ensemble: Default::default(),
            kd: KdConfig::new(4.0, 0.9)?,
            label_fraction: 1.0,
            hint: None,
            transfer: Default::default(),
        }),
        half: false,
    };
    let out = pipeline::train_model(&job, &ds, &device, &mut Silent)?;
    println!(
        "KD student: test accuracy {:.2}% ({} training images; checkpoints in {})",
        100.0 * out.trained.final_accuracy,
        out.train_images,
        job.out.display()
    );
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// A teacher trained here for one epoch and saved as PyTorch saves a `state_dict`: its
/// parameters by their module names, and nothing else.
fn stand_in_teacher(
    ds: &data::Dataset,
    device: &Device,
    path: &std::path::Path,
) -> distill::Result<PathBuf> {
    let job = ModelJob {
        arch: "teacher".into(),
        config: TrainConfig {
            epochs: 1,
            ..TrainConfig::default()
        },
        out: path.with_extension("run"),
        teacher: None,
        half: false,
    };
    let trained = pipeline::train_model(&job, ds, device, &mut Silent)?.trained;
    let mut tensors = Vec::new();
    for (name, t) in trained.model.parameters() {
        tensors.push(NamedTensor {
            name,
            shape: t.shape().to_vec(),
            data: t.to_vec()?,
        });
    }
    checkpoint::save(path, &tensors, &Default::default(), StoreDtype::F32)?;
    Ok(path.to_path_buf())
}
