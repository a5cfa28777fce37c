//! The run configuration read back on resume: `RunConfig::load_saved` on a run directory whose
//! `config.json` is mutated JSON text.

use std::path::PathBuf;

use distill::optim::LrSchedule;
use distill::pipeline::RunConfig;
use distill::rng::Rng;
use distill::train::OptimizerKind;
use distill::Error;

use crate::{mutate_text, run_cases, Seed};

/// Configurations touching every setting: defaults, the quick run, step and cosine
/// schedules, SGD with augmentation, a teacher checkpoint and slices; pretty and compact.
pub(crate) fn configs() -> Vec<RunConfig> {
    let mut step = RunConfig::default();
    step.teacher.schedule = LrSchedule::Step {
        step_size: 3,
        gamma: 0.5,
    };
    step.student.schedule = LrSchedule::Cosine {
        t_max: 30,
        eta_min: 1e-5,
    };
    step.student.optimizer = OptimizerKind::Sgd;
    step.student.augment.crop_padding = 2;
    step.student.augment.hflip = true;
    step.teacher_checkpoint = Some(PathBuf::from("runs/t/teacher/best.safetensors"));
    step.max_train = Some(6000);
    step.seeds = 3;
    step.half = true;
    vec![RunConfig::default(), RunConfig::quick(), step]
}

fn seeds() -> Vec<Seed> {
    configs()
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            [
                Seed::new(
                    &format!("config {i} pretty"),
                    serde_json::to_vec_pretty(c).unwrap(),
                    vec![],
                ),
                Seed::new(
                    &format!("config {i} compact"),
                    serde_json::to_vec(c).unwrap(),
                    vec![],
                ),
            ]
        })
        .collect()
}

#[test]
fn run_config_json() {
    let dir = crate::scratch_dir();
    let seeds = seeds();
    for s in &seeds {
        std::fs::write(dir.path().join("config.json"), &s.bytes).unwrap();
        assert!(
            RunConfig::load_saved(dir.path()).unwrap().is_some(),
            "{}",
            s.name
        );
    }
    let now = RunConfig::default();
    run_cases(
        "config",
        0xC0F1,
        2500,
        |rng: &mut Rng| mutate_text(rng, &seeds),
        |bytes| {
            std::fs::write(dir.path().join("config.json"), bytes).unwrap();
            match RunConfig::load_saved(dir.path()) {
                Ok(Some(cfg)) => {
                    // What resume does next must not panic either.
                    let _ = cfg.validate();
                    let _ = now.check_resume(&cfg, dir.path());
                    // serde_json reads a number too large for an f32 (1e308) as infinity,
                    // which writes back as null: only a finite config must round-trip.
                    if !finite(&cfg) {
                        return Ok(());
                    }
                    let again: RunConfig =
                        serde_json::from_str(&serde_json::to_string(&cfg).unwrap())
                            .map_err(|e| format!("a loaded config does not read back: {e}"))?;
                    if again != cfg {
                        return Err(format!("{cfg:?} reads back as {again:?}"));
                    }
                    Ok(())
                }
                Ok(None) => Err("config.json exists but load_saved saw none".into()),
                // Bytes that are not UTF-8 fail as the file read's own error.
                Err(Error::Io { source, .. })
                    if std::str::from_utf8(bytes).is_err()
                        && source.kind() == std::io::ErrorKind::InvalidData =>
                {
                    Ok(())
                }
                Err(e) => crate::expect_variant(&e, "Resume", |e| matches!(e, Error::Resume(_))),
            }
        },
    );
}

/// Whether every f32 setting of `cfg` is finite.
pub(crate) fn finite(cfg: &RunConfig) -> bool {
    let mut v = vec![cfg.kd.temperature, cfg.kd.alpha];
    for t in [&cfg.teacher, &cfg.student] {
        v.extend([t.lr, t.weight_decay, t.momentum]);
        match t.schedule {
            LrSchedule::Step { gamma, .. } => v.push(gamma),
            LrSchedule::Cosine { eta_min, .. } => v.push(eta_min),
            LrSchedule::Constant => {}
        }
    }
    v.iter().all(|x| x.is_finite()) && cfg.label_fraction.is_finite()
}
