//! A study's student runs as a plan ([`plan`]), and the plan cut into N balanced slices
//! ([`partition`]) so that N processes, on as many machines, can share it: a [`Shard`] is
//! one slice, named `I/N` (I from 1), or taken from a batch system's array index
//! ([`ShardEnv`]: Slurm's job arrays, Kubernetes' Indexed Jobs).
//!
//! The slices are a function of the settings alone, so every task of an array computes the
//! same cut without talking to the others. They are balanced by cost, not by count: a run
//! costs its optimiser steps (epochs × batches, twice that for the `hint` method, whose
//! steps also run the teacher to its hint layer), and the runs go, most costly first, to the
//! slice with the least cost so far (ties to the lower slice, then the earlier run). No slice
//! then exceeds another by more than one run's cost.

use serde::{Deserialize, Serialize};

use super::study::{Method, StudyConfig};
use super::transfer::transfer_epochs;
use crate::{Error, Result};

/// One of `count` slices of the student runs; `index` counts from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::fmt::Display for Shard {
    /// `I/N`, with I counted from 1.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// The variables a batch system sets in each task of an array, as read by the caller (the
/// library reads no environment). Unset variables are `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardEnv {
    /// Slurm: `SLURM_ARRAY_TASK_ID`, `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`,
    /// `SLURM_ARRAY_TASK_STEP`.
    pub slurm_task_id: Option<String>,
    pub slurm_task_min: Option<String>,
    pub slurm_task_count: Option<String>,
    pub slurm_task_step: Option<String>,
    /// Kubernetes (an Indexed Job): `JOB_COMPLETION_INDEX`, from 0.
    pub job_completion_index: Option<String>,
}

impl ShardEnv {
    /// The variable names, in the order of the fields.
    pub const VARS: [&'static str; 5] = [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
    ];

    /// Fills the fields through `get` (the caller's view of the environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> ShardEnv {
        let [id, min, count, step, index] = Self::VARS.map(&get);
        ShardEnv {
            slurm_task_id: id,
            slurm_task_min: min,
            slurm_task_count: count,
            slurm_task_step: step,
            job_completion_index: index,
        }
    }

    /// The array index (from 0) and, where the system says it, the number of tasks; the
    /// text names where they came from.
    fn index(&self) -> Result<Option<(usize, Option<usize>, &'static str)>> {
        let num = |name: &str, v: &str| -> Result<usize> {
            v.trim().parse::<usize>().map_err(|_| {
                Error::setting(
                    "shard",
                    format!("{name}={v:?} is not a non-negative whole number"),
                )
            })
        };
        if let Some(id) = &self.slurm_task_id {
            let id = num("SLURM_ARRAY_TASK_ID", id)?;
            let min = match &self.slurm_task_min {
                Some(m) => num("SLURM_ARRAY_TASK_MIN", m)?,
                None => 0,
            };
            let step = match &self.slurm_task_step {
                Some(s) => num("SLURM_ARRAY_TASK_STEP", s)?.max(1),
                None => 1,
            };
            if id < min || (id - min) % step != 0 {
                return Err(Error::setting(
                    "shard",
                    format!(
                        "SLURM_ARRAY_TASK_ID={id} is not in the array that starts at \
                         SLURM_ARRAY_TASK_MIN={min} with step {step}"
                    ),
                ));
            }
            let count = match &self.slurm_task_count {
                Some(c) => Some(num("SLURM_ARRAY_TASK_COUNT", c)?),
                None => None,
            };
            return Ok(Some((
                (id - min) / step,
                count,
                "SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN",
            )));
        }
        if let Some(i) = &self.job_completion_index {
            let i = num("JOB_COMPLETION_INDEX", i)?;
            return Ok(Some((i, None, "JOB_COMPLETION_INDEX")));
        }
        Ok(None)
    }
}

impl Shard {
    /// `I/N` (I from 1 to N), `auto/N` (I from the array index in `env`) or `auto` (N too,
    /// from Slurm's task count). Errors name the setting `shard`.
    pub fn parse(spec: &str, env: &ShardEnv) -> Result<Shard> {
        let bad = |why: String| Error::setting("shard", why);
        let spec = spec.trim();
        let (index, count) = match spec.split_once('/') {
            Some((i, n)) => (i.trim(), Some(n.trim())),
            None => (spec, None),
        };
        let count = match count {
            Some(n) => Some(
                n.parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| bad(format!("'{spec}': N must be a whole number ≥ 1")))?,
            ),
            None => None,
        };
        if index == "auto" {
            let Some((i, env_count, source)) = env.index()? else {
                return Err(bad(format!(
                    "'{spec}' takes the index from a batch system, but neither \
                     SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set"
                )));
            };
            let count = match (count, env_count) {
                (Some(n), Some(m)) if n != m => {
                    return Err(bad(format!(
                        "'{spec}' says {n} shards but SLURM_ARRAY_TASK_COUNT={m}"
                    )))
                }
                (Some(n), _) | (None, Some(n)) => n,
                (None, None) => {
                    return Err(bad(format!(
                        "'{spec}': {source} gives the index only; write auto/N with N the \
                         number of tasks (the Job's completions)"
                    )))
                }
            };
            if i >= count {
                return Err(bad(format!(
                    "{source} is {i}, but there are {count} shards (indices 0 to {})",
                    count - 1
                )));
            }
            return Ok(Shard { index: i, count });
        }
        let Some(count) = count else {
            return Err(bad(format!(
                "'{spec}': expected I/N (such as 2/3), auto/N or auto"
            )));
        };
        match index.parse::<usize>() {
            Ok(i) if (1..=count).contains(&i) => Ok(Shard {
                index: i - 1,
                count,
            }),
            _ => Err(bad(format!(
                "'{spec}': I must be a whole number from 1 to {count}"
            ))),
        }
    }

    /// The positions in `plan` of this shard's runs, in plan order.
    pub fn select(&self, plan: &[PlannedRun]) -> Vec<usize> {
        partition(plan, self.count).swap_remove(self.index)
    }
}

/// One student run of a study.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedRun {
    pub method: Method,
    pub seed: u64,
    /// `<method>-seed<seed>`: its checkpoint folder and journal record.
    pub name: String,
    pub epochs: usize,
    pub train_images: usize,
    /// Optimiser steps, doubled for `hint`.
    pub cost: u64,
}

/// The image counts a plan depends on: the students' labelled images, and the transfer set's
/// size and its labelled images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub labelled: usize,
    pub transfer: usize,
    pub transfer_labelled: usize,
}

/// Every student run of the study, seed by seed and in the order of the methods.
pub fn plan(cfg: &StudyConfig, counts: Counts) -> Vec<PlannedRun> {
    let base = &cfg.base;
    let batch = base.student.batch_size.max(1);
    let mut out = Vec::new();
    for i in 0..base.seeds {
        let seed = base.student.seed + i as u64;
        for &method in &cfg.methods {
            let (train_images, epochs) = match method {
                Method::Ce | Method::Kd | Method::Hint => (counts.labelled, base.student.epochs),
                Method::KdTransfer | Method::KdEnsemble => (
                    counts.transfer,
                    transfer_epochs(
                        base.student.epochs,
                        counts.transfer_labelled,
                        counts.transfer,
                        base.transfer_epochs,
                    ),
                ),
            };
            let steps = (epochs * train_images.div_ceil(batch)) as u64;
            out.push(PlannedRun {
                method,
                seed,
                name: format!("{}-seed{seed}", method.name()),
                epochs,
                train_images,
                cost: if method == Method::Hint {
                    2 * steps
                } else {
                    steps
                },
            });
        }
    }
    out
}

/// `plan` cut into `count` slices of positions (each in plan order), balanced by cost.
pub fn partition(plan: &[PlannedRun], count: usize) -> Vec<Vec<usize>> {
    let count = count.max(1);
    let mut order: Vec<usize> = (0..plan.len()).collect();
    // Most costly first; a stable sort keeps plan order among equals.
    order.sort_by(|&a, &b| plan[b].cost.cmp(&plan[a].cost));
    let mut slices = vec![Vec::new(); count];
    let mut load = vec![0u64; count];
    for i in order {
        let s = (0..count).min_by_key(|&s| (load[s], s)).unwrap_or(0);
        load[s] += plan[i].cost;
        slices[s].push(i);
    }
    for s in &mut slices {
        s.sort_unstable();
    }
    slices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::RunConfig;

    fn env(pairs: &[(&str, &str)]) -> ShardEnv {
        ShardEnv::from_vars(|k| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn written_shards_count_from_one() {
        let none = ShardEnv::default();
        assert_eq!(
            Shard::parse("2/3", &none).unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(Shard::parse(" 1 / 1 ", &none).unwrap().to_string(), "1/1");
        for (bad, needle) in [
            ("0/3", "from 1 to 3"),
            ("4/3", "from 1 to 3"),
            ("x/3", "from 1 to 3"),
            ("1/0", "N must be"),
            ("1/", "N must be"),
            ("2", "expected I/N"),
            (
                "auto/3",
                "neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX",
            ),
        ] {
            let e = Shard::parse(bad, &none).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(e.starts_with("invalid shard"), "{e}");
        }
    }

    #[test]
    fn kubernetes_gives_the_index_and_the_command_line_the_count() {
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert_eq!(
            Shard::parse("auto/3", &k8s).unwrap(),
            Shard { index: 2, count: 3 }
        );
        let e = Shard::parse("auto", &k8s).unwrap_err().to_string();
        assert!(e.contains("write auto/N"), "{e}");
        let e = Shard::parse("auto/2", &k8s).unwrap_err().to_string();
        assert!(
            e.contains("JOB_COMPLETION_INDEX is 2, but there are 2 shards"),
            "{e}"
        );
        let e = Shard::parse("auto/2", &env(&[("JOB_COMPLETION_INDEX", "-1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("JOB_COMPLETION_INDEX=\"-1\""), "{e}");
    }

    #[test]
    fn slurm_gives_the_index_relative_to_the_array_start_and_the_count() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "7"),
            ("SLURM_ARRAY_TASK_MIN", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(
            Shard::parse("auto", &slurm).unwrap(),
            Shard { index: 2, count: 3 }
        );
        assert_eq!(
            Shard::parse("auto/3", &slurm).unwrap(),
            Shard { index: 2, count: 3 }
        );
        let e = Shard::parse("auto/4", &slurm).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_COUNT=3"), "{e}");
        // --array=10-14:2 → tasks 10, 12, 14 are shards 0, 1, 2.
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "14"),
            ("SLURM_ARRAY_TASK_MIN", "10"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        assert_eq!(
            Shard::parse("auto", &stepped).unwrap(),
            Shard { index: 2, count: 3 }
        );
        // Slurm wins when both are set (a Slurm job inside a container that kept the other).
        let both = env(&[
            ("SLURM_ARRAY_TASK_ID", "1"),
            ("SLURM_ARRAY_TASK_COUNT", "2"),
            ("JOB_COMPLETION_INDEX", "0"),
        ]);
        assert_eq!(Shard::parse("auto", &both).unwrap().index, 1);
    }

    fn study(methods: &[Method], seeds: usize) -> StudyConfig {
        StudyConfig {
            base: RunConfig {
                seeds,
                ..RunConfig::default()
            },
            methods: methods.to_vec(),
            hint: super::super::study::default_hint(),
        }
    }

    const COUNTS: Counts = Counts {
        labelled: 6000,
        transfer: 60000,
        transfer_labelled: 6000,
    };

    #[test]
    fn the_plan_goes_seed_by_seed_with_the_runs_epochs_and_costs() {
        let p = plan(
            &study(&[Method::Ce, Method::KdTransfer, Method::Hint], 2),
            COUNTS,
        );
        let names: Vec<&str> = p.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ce-seed0",
                "kd-transfer-seed0",
                "hint-seed0",
                "ce-seed1",
                "kd-transfer-seed1",
                "hint-seed1"
            ]
        );
        // 30 epochs × ⌈6000/128⌉ = 47 batches; the transfer run 10 epochs × 469; hint ×2.
        assert_eq!((p[0].epochs, p[0].cost), (30, 30 * 47));
        assert_eq!(
            (p[1].epochs, p[1].train_images, p[1].cost),
            (10, 60000, 10 * 469)
        );
        assert_eq!(p[2].cost, 2 * 30 * 47);
    }

    #[test]
    fn every_run_is_in_exactly_one_slice_and_the_slices_are_balanced() {
        let methods = Method::ALL;
        let p = plan(&study(&methods, 5), COUNTS);
        let max_cost = p.iter().map(|r| r.cost).max().unwrap();
        for n in 1..=12 {
            let slices = partition(&p, n);
            assert_eq!(slices.len(), n);
            let mut all: Vec<usize> = slices.concat();
            all.sort_unstable();
            assert_eq!(all, (0..p.len()).collect::<Vec<_>>(), "{n} slices");
            let loads: Vec<u64> = slices
                .iter()
                .map(|s| s.iter().map(|&i| p[i].cost).sum())
                .collect();
            let (lo, hi) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
            assert!(hi - lo <= max_cost, "{n} slices: {loads:?}");
            for s in &slices {
                assert!(s.windows(2).all(|w| w[0] < w[1]), "plan order");
            }
            // The same cut every time, and each shard selects its own slice.
            assert_eq!(partition(&p, n), slices);
            for (i, s) in slices.iter().enumerate() {
                assert_eq!(&Shard { index: i, count: n }.select(&p), s);
            }
        }
        // More shards than runs: the extra ones have nothing to do.
        let small = plan(&study(&[Method::Ce, Method::Kd], 1), COUNTS);
        let slices = partition(&small, 3);
        assert_eq!(slices.iter().filter(|s| s.is_empty()).count(), 1);
    }
}
