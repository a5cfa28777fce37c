//! Exact resume of a training run: after every epoch the optimiser state, the history and the
//! settings go to `last.state.safetensors` beside `last.safetensors`. The data order and
//! augmentation are functions of (seed, epoch), so nothing else is needed to continue exactly.
//! The state is a file of its own because PyTorch's `load_state_dict(strict=True)` must see
//! only model keys in `last.safetensors`.

use std::path::{Path, PathBuf};

use super::config::TrainConfig;
use super::hint::{HintConfig, HintTerm};
use super::trainer::TrainJob;
use crate::checkpoint::{self, StoreDtype};
use crate::epoch::EpochRecord;
use crate::model_file::json;
use crate::nn::Sequential;
use crate::optim::Optimizer;
use crate::{Error, Result};

fn state_path(dir: &Path) -> PathBuf {
    dir.join("last.state.safetensors")
}

/// Whether `dir` holds a run that can be continued.
pub fn has_state(dir: &Path) -> bool {
    state_path(dir).exists()
}

/// Writes the optimiser state, the history and the settings of the run in `dir` (atomically),
/// with the hint adapter's weights and settings when the run has one.
pub fn save_state(
    dir: &Path,
    optimizer: &Optimizer,
    history: &[EpochRecord],
    cfg: &TrainConfig,
    hint: Option<&HintTerm>,
) -> Result<()> {
    let (mut tensors, steps) = optimizer.export_state()?;
    if let Some(h) = hint {
        tensors.extend(h.export()?);
    }
    let meta = [
        ("history".to_string(), json(history)),
        ("optimizer_steps".into(), json(&steps)),
        ("config".into(), json(cfg)),
        ("hint".into(), json(&hint.map(HintTerm::config))),
    ];
    checkpoint::save(
        &state_path(dir),
        &tensors,
        &meta.into_iter().collect(),
        StoreDtype::F32,
    )
}

/// Restores weights, optimiser state, the hint adapter and history from `dir/last.*`. Only the
/// number of epochs may differ from the settings the run was started with.
pub fn restore(
    dir: &Path,
    job: &TrainJob,
    model: &Sequential,
    optimizer: &mut Optimizer,
    hint: Option<&HintTerm>,
) -> Result<Vec<EpochRecord>> {
    let state_path = state_path(dir);
    let state = checkpoint::load(&state_path)?;
    let field = |key: &str| -> Result<&String> {
        state.metadata.get(key).ok_or_else(|| {
            Error::Checkpoint(format!("{}: no '{key}' metadata", state_path.display()))
        })
    };
    let parse_error = |key: &str, e: serde_json::Error| {
        Error::Checkpoint(format!("{}: bad {key}: {e}", state_path.display()))
    };
    let saved_cfg: TrainConfig =
        serde_json::from_str(field("config")?).map_err(|e| parse_error("config", e))?;
    let same_schedule = TrainConfig {
        epochs: job.config.epochs,
        ..saved_cfg.clone()
    };
    if same_schedule != job.config {
        return Err(Error::Resume(format!(
            "{}: the run was started with different settings ({saved_cfg:?}); only the number of epochs may change",
            state_path.display()
        )));
    }
    // State files written before hints existed have no "hint" key: no hint.
    let saved_hint: Option<HintConfig> = match state.metadata.get("hint") {
        Some(h) => serde_json::from_str(h).map_err(|e| parse_error("hint", e))?,
        None => None,
    };
    if saved_hint.as_ref() != hint.map(HintTerm::config) {
        return Err(Error::Resume(format!(
            "{}: the run was started with hint settings {saved_hint:?}, not {:?}",
            state_path.display(),
            hint.map(HintTerm::config)
        )));
    }
    let history: Vec<EpochRecord> =
        serde_json::from_str(field("history")?).map_err(|e| parse_error("history", e))?;
    let steps: Vec<u32> = serde_json::from_str(field("optimizer_steps")?)
        .map_err(|e| parse_error("optimizer steps", e))?;
    let weights_path = dir.join("last.safetensors");
    let weights = checkpoint::load(&weights_path)?;
    checkpoint::check_matches(&job.spec.parameter_shapes(), &weights, &weights_path)?;
    for (name, p) in model.parameters() {
        let t = weights.get(&name).ok_or_else(|| {
            Error::Checkpoint(format!("{}: missing {name}", weights_path.display()))
        })?;
        p.assign(&t.data)?;
    }
    optimizer.import_state(&state.tensors, &steps)?;
    if let Some(h) = hint {
        h.import(&state.tensors)?;
    }
    Ok(history)
}
