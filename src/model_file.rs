//! Models in checkpoint files: what metadata a model carries, writing it, and reading it back
//! into a [`Sequential`] on a device, from a distill checkpoint or from a bare PyTorch
//! `state_dict` of modules of the presets' layout (saved with `safetensors.torch.save_file`,
//! no metadata), whose architecture is read off the tensor shapes.

use std::collections::BTreeMap;
use std::path::Path;

use crate::checkpoint::{self, Checkpoint, NamedTensor, StoreDtype};
use crate::data::{Dataset, InputSpec};
use crate::epoch::EpochRecord;
use crate::nn::{ArchSpec, Sequential};
use crate::{Device, Error, Result};

/// Metadata every model checkpoint carries (all values are strings, as safetensors wants).
pub fn model_metadata(
    spec: &ArchSpec,
    input: &InputSpec,
    seed: u64,
    record: Option<&EpochRecord>,
) -> Vec<(String, String)> {
    let mut m = vec![
        ("format".to_string(), "distill".to_string()),
        ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ("arch".into(), spec.arch.clone()),
        ("in_channels".into(), spec.in_channels.to_string()),
        ("height".into(), spec.height.to_string()),
        ("width".into(), spec.width.to_string()),
        ("num_classes".into(), spec.num_classes.to_string()),
        ("arch_spec".into(), json(spec)),
        ("input".into(), json(input)),
        ("class_names".into(), json(&input.class_names)),
        ("mean".into(), json(&input.mean)),
        ("std".into(), json(&input.std)),
        ("seed".into(), seed.to_string()),
    ];
    if let Some(r) = record {
        m.push(("epoch".into(), r.epoch.to_string()));
        m.push(("metrics".into(), json(r)));
    }
    m
}

/// A metadata value as JSON (the types written here always serialise).
pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Writes the model's parameters (PyTorch names and layouts) atomically.
#[cfg(not(target_arch = "wasm32"))]
pub fn save_model(
    path: &Path,
    model: &Sequential,
    metadata: &[(String, String)],
    dtype: StoreDtype,
) -> Result<()> {
    let tensors = pollster::block_on(host_tensors(model.parameters()))?;
    checkpoint::save(path, &tensors, &metadata.iter().cloned().collect(), dtype)
}

/// The bytes of the safetensors file [`save_model`] writes, named `name` in errors: what a
/// page offers for download.
pub async fn encode_model(
    name: &Path,
    model: &Sequential,
    metadata: &[(String, String)],
    dtype: StoreDtype,
) -> Result<Vec<u8>> {
    let tensors = host_tensors(model.parameters()).await?;
    checkpoint::encode(name, &tensors, &metadata.iter().cloned().collect(), dtype)
}

/// Named device tensors copied to the host, for a checkpoint.
pub(crate) async fn host_tensors(params: Vec<(String, crate::Tensor)>) -> Result<Vec<NamedTensor>> {
    let mut out = Vec::with_capacity(params.len());
    for (name, t) in params {
        out.push(NamedTensor {
            name,
            shape: t.shape().to_vec(),
            data: t.read().await?,
        });
    }
    Ok(out)
}

/// Writes an f16 copy of the checkpoint at `src` (same names and metadata) to `dst`.
pub fn save_half_copy(src: &Path, dst: &Path) -> Result<()> {
    let ckpt = checkpoint::load(src)?;
    checkpoint::save(dst, &ckpt.tensors, &ckpt.metadata, StoreDtype::F16)
}

/// Size of a model's parameters in bytes for a storage dtype.
pub fn model_bytes(spec: &ArchSpec, dtype: StoreDtype) -> usize {
    spec.num_parameters() * if dtype == StoreDtype::F16 { 2 } else { 4 }
}

/// A model read back from a checkpoint.
pub struct LoadedModel {
    pub spec: ArchSpec,
    pub input: InputSpec,
    pub model: Sequential,
    pub metadata: BTreeMap<String, String>,
}

impl LoadedModel {
    /// Checks that the model takes the dataset's images and predicts its classes.
    pub fn check_fits(&self, path: &Path, ds: &Dataset) -> Result<()> {
        let s = &self.spec;
        if (s.in_channels, s.height, s.width) == (ds.channels, ds.height, ds.width)
            && s.num_classes == ds.num_classes()
        {
            return Ok(());
        }
        Err(Error::Checkpoint(format!(
            "{} expects {}×{}×{} images and {} classes, but the dataset {} has {}×{}×{} images and {} classes",
            path.display(),
            s.in_channels,
            s.height,
            s.width,
            s.num_classes,
            ds.name,
            ds.channels,
            ds.height,
            ds.width,
            ds.num_classes()
        )))
    }
}

/// Loads the model in the checkpoint at `path` onto `device`.
///
/// A distill checkpoint carries its architecture, normalisation and class names. A bare
/// PyTorch `state_dict` of modules of the presets' layout does not: its architecture is read
/// off the tensor shapes, and its input (size, normalisation, class names) is that of the data set it
/// is used with, which `data` gives (called only for such a checkpoint).
pub fn load_model(
    path: &Path,
    device: &Device,
    data: &dyn Fn() -> Result<InputSpec>,
) -> Result<LoadedModel> {
    if !path.is_file() {
        return Err(Error::Checkpoint(format!(
            "{}: no such checkpoint file",
            path.display()
        )));
    }
    let ckpt = checkpoint::load(path)?;
    let (spec, input) = if has_distill_metadata(&ckpt) {
        let spec = spec_from_metadata(&ckpt.metadata, path)?;
        let input = input_from_metadata(&ckpt.metadata, &spec, path)?;
        (spec, input)
    } else {
        let data = data()?;
        (infer_spec(&ckpt, &data, path)?, data)
    };
    if input.class_names.len() != spec.num_classes {
        return Err(Error::Checkpoint(format!(
            "{}: {} class names for a model of {} classes",
            path.display(),
            input.class_names.len(),
            spec.num_classes
        )));
    }
    checkpoint::check_matches(&spec.parameter_shapes(), &ckpt, path)?;
    let model = spec.build(device, 0)?;
    for (name, p) in model.parameters() {
        let t = ckpt
            .get(&name)
            .ok_or_else(|| Error::Checkpoint(format!("{}: missing {name}", path.display())))?;
        p.assign(&t.data)?;
    }
    Ok(LoadedModel {
        spec,
        input,
        model,
        metadata: ckpt.metadata,
    })
}

fn has_distill_metadata(ckpt: &Checkpoint) -> bool {
    ckpt.metadata.contains_key("arch_spec") || ckpt.metadata.contains_key("arch")
}

/// The architecture a distill checkpoint names: `arch_spec`, else `arch` and the sizes.
fn spec_from_metadata(meta: &BTreeMap<String, String>, path: &Path) -> Result<ArchSpec> {
    if let Some(json) = meta.get("arch_spec") {
        return serde_json::from_str(json).map_err(|e| {
            Error::Checkpoint(format!("{}: bad arch_spec metadata: {e}", path.display()))
        });
    }
    let get = |k: &str| -> Result<usize> {
        meta.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| {
            Error::Checkpoint(format!(
                "{}: metadata lacks '{k}' (needed to rebuild the architecture)",
                path.display()
            ))
        })
    };
    let arch = meta.get("arch").map_or("", String::as_str);
    ArchSpec::preset(
        arch,
        get("in_channels")?,
        get("height")?,
        get("width")?,
        get("num_classes")?,
    )
}

/// The input a distill checkpoint was trained on; identity normalisation when it says none.
fn input_from_metadata(
    meta: &BTreeMap<String, String>,
    spec: &ArchSpec,
    path: &Path,
) -> Result<InputSpec> {
    match meta.get("input") {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| Error::Checkpoint(format!("{}: bad input metadata: {e}", path.display()))),
        None => Ok(plain_input(
            spec.in_channels,
            spec.height,
            spec.width,
            spec.num_classes,
        )),
    }
}

fn plain_input(channels: usize, height: usize, width: usize, classes: usize) -> InputSpec {
    InputSpec {
        channels,
        height,
        width,
        mean: vec![0.0; channels],
        std: vec![1.0; channels],
        class_names: (0..classes).map(|i| i.to_string()).collect(),
    }
}

/// The shape of `name` in a bare state_dict, which must have rank `rank`.
fn weight_shape(ckpt: &Checkpoint, name: &str, rank: usize, path: &Path) -> Result<Vec<usize>> {
    match ckpt.get(name) {
        Some(t) if t.shape.len() == rank => Ok(t.shape.clone()),
        Some(t) => Err(Error::Checkpoint(format!(
            "{}: {name} has shape {:?}, expected rank {rank}",
            path.display(),
            t.shape
        ))),
        None => Err(Error::Checkpoint(format!(
            "{}: no '{name}': not a checkpoint of the presets' layout (conv1, conv2, …, fc1, fc2) and no distill metadata",
            path.display()
        ))),
    }
}

/// The architecture of the presets' layout whose parameters have these shapes, for inputs
/// shaped like `data`.
fn infer_spec(ckpt: &Checkpoint, data: &InputSpec, path: &Path) -> Result<ArchSpec> {
    let conv1 = weight_shape(ckpt, "conv1.weight", 4, path)?;
    let conv2 = weight_shape(ckpt, "conv2.weight", 4, path)?;
    // conv3, conv4, … of a deeper spec of the same layout.
    let mut conv_channels = vec![conv1[0], conv2[0]];
    while let Some(t) = ckpt.get(&format!("conv{}.weight", conv_channels.len() + 1)) {
        conv_channels.push(t.shape.first().copied().unwrap_or(0));
    }
    let fc1 = weight_shape(ckpt, "fc1.weight", 2, path)?;
    let fc2 = weight_shape(ckpt, "fc2.weight", 2, path)?;
    if conv1[1] != data.channels || fc2[0] != data.class_names.len() {
        return Err(Error::Checkpoint(format!(
            "{}: the model takes {} input channels and predicts {} classes; the data has {} and {}",
            path.display(),
            conv1[1],
            fc2[0],
            data.channels,
            data.class_names.len()
        )));
    }
    let arch = match (conv_channels.as_slice(), fc1[0]) {
        ([64, 128], 1000) => "teacher".to_string(),
        ([32, 64], 500) => "student".to_string(),
        (convs, hidden) => {
            let convs: Vec<String> = convs.iter().map(|c| format!("c{c}")).collect();
            format!("{}-f{hidden}", convs.join("-"))
        }
    };
    let spec = ArchSpec {
        arch,
        in_channels: conv1[1],
        height: data.height,
        width: data.width,
        num_classes: fc2[0],
        conv_channels,
        hidden: fc1[0],
    };
    spec.validate()?;
    Ok(spec)
}
