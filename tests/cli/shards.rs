//! A study split into stages and shards, as a batch system runs it: the teachers stage, three
//! shards (one named on the command line, one indexed by Kubernetes' JOB_COMPLETION_INDEX, one
//! by a Slurm array's variables; one killed part-way and run again), and merges before, during
//! and after. The merged report must hold the same runs, with the same metrics, as the same
//! study run in one process.

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// The batch systems' variables, which the test must control whatever runs it.
const SHARD_VARS: [&str; 5] = [
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
];

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_distill"));
    c.args(args)
        .env_remove("DISTILL_DEVICE")
        .env_remove("DISTILL_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for v in SHARD_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn run_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env)
        .output()
        .expect("the distill binary runs")
}

fn ok_env(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run_env(args, env);
    assert!(
        out.status.success(),
        "distill {args:?} with {env:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn fails_env(args: &[&str], env: &[(&str, &str)], needle: &str) {
    let out = run_env(args, env);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "distill {args:?} should fail");
    assert_ne!(out.status.code(), Some(101), "panicked:\n{stderr}");
    assert!(
        stderr.contains(needle),
        "distill {args:?}: expected '{needle}' in stderr:\n{stderr}"
    );
}

/// The tiny study: 2 seeds of ce, kd and kd-transfer on 400 images.
fn study(out: &Path, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--device",
        "cpu",
        "study",
        "--methods",
        "ce,kd,kd-transfer",
        "--seeds",
        "2",
        "--out",
        s(out),
        "--max-train",
        "400",
        "--max-test",
        "100",
        "--teacher-epochs",
        "1",
        "--epochs",
        "2",
        "--label-fraction",
        "0.1",
        "--batch-size",
        "32",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    v.extend(extra.iter().map(|a| a.to_string()));
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn report(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("study_report.json")).unwrap()).unwrap()
}

/// A run summary without its timings.
fn untimed(v: &Value) -> Value {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("seconds_per_epoch");
    for e in o["history"].as_array_mut().unwrap() {
        let e = e.as_object_mut().unwrap();
        e.remove("seconds");
        e.remove("images_per_second");
    }
    v
}

fn shard_log(dir: &Path, i: usize) -> Vec<Value> {
    std::fs::read_to_string(dir.join(format!("shards/metrics-{i}-of-3.jsonl")))
        .map(|t| {
            t.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_sharded_study_merges_to_the_same_runs_as_one_process() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = tmp.path().join("whole");
    ok(&refs(&study(&whole, &[])));

    let dir = tmp.path().join("sharded");
    let none: &[(&str, &str)] = &[];
    // Before its teachers stage: clear errors, and nothing to merge.
    fails_env(
        &refs(&study(&dir, &["--shard", "1/3"])),
        none,
        "run its teachers stage first",
    );
    fails(
        &["study", "--shard", "1/3", "--max-train", "100"],
        "--stage and --shard need the study directory",
    );
    fails_env(
        &refs(&study(&dir, &["--shard", "auto/3"])),
        none,
        "neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set",
    );
    fails(&["study", "--merge", s(&dir)], "holds no study");

    let staged = ok(&refs(&study(&dir, &["--stage", "teachers"])));
    assert!(
        staged.contains("teacher ") && staged.contains("SHA-256"),
        "{staged}"
    );
    let teachers: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("journal/teachers.json")).unwrap())
            .unwrap();
    assert_eq!(teachers["teachers"].as_array().unwrap().len(), 1);
    assert_eq!(teachers["labelled_images"].as_u64(), Some(40));
    assert_eq!(teachers["transfer_images"].as_u64(), Some(400));
    assert!(
        !dir.join("ce-seed0").exists(),
        "the teachers stage trains no student"
    );

    // A merge of nothing finished names all six runs.
    let merged = ok(&["study", "--merge", s(&dir)]);
    assert!(merged.contains("not finished: 6 of 6 runs"), "{merged}");
    let md = std::fs::read_to_string(dir.join("study.md")).unwrap();
    assert!(md.contains("## Not finished: 6 of 6 runs"), "{md}");

    // Other settings than the study's are refused.
    fails_env(
        &refs(&study(&dir, &["--shard", "1/3", "--lr", "0.01"])),
        none,
        "other settings",
    );

    // Shard 1 from the command line.
    let one: Value = serde_json::from_str(&ok_env(
        &refs(&study(&dir, &["--shard", "1/3", "--json"])),
        none,
    ))
    .unwrap();
    assert_eq!(one["shard"], serde_json::json!({"index": 0, "count": 3}));
    assert_eq!(one["planned"].as_u64(), Some(6));

    // Shard 2 from a Kubernetes Indexed Job's index (the count on the command line).
    let two: Value = serde_json::from_str(&ok_env(
        &refs(&study(&dir, &["--shard", "auto/3", "--json"])),
        &[("JOB_COMPLETION_INDEX", "1")],
    ))
    .unwrap();
    assert_eq!(two["shard"], serde_json::json!({"index": 1, "count": 3}));

    // A merge now names the third shard's runs, and which shard owns them.
    let merged = ok(&["study", "--merge", s(&dir)]);
    let done: BTreeSet<String> = names(&one["trained"])
        .into_iter()
        .chain(names(&two["trained"]))
        .collect();
    let rest: Vec<&str> = [
        "ce-seed0",
        "kd-seed0",
        "kd-transfer-seed0",
        "ce-seed1",
        "kd-seed1",
        "kd-transfer-seed1",
    ]
    .into_iter()
    .filter(|n| !done.contains(*n))
    .collect();
    assert!(!rest.is_empty(), "the third shard has runs");
    for run in &rest {
        assert!(
            merged.contains(&format!("{run} (shard 3/3): not finished")),
            "{run}:\n{merged}"
        );
    }

    // Shard 3 from a Slurm array (--array=4-6: task 6 is the third), killed once its first
    // run has finished and its second has logged an epoch, then run again.
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "6"),
        ("SLURM_ARRAY_TASK_MIN", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ];
    let three_args = study(&dir, &["--shard", "auto", "--json"]);
    assert!(
        rest.len() >= 2 && rest.iter().all(|r| !r.starts_with("kd-transfer")),
        "this test kills shard 3 inside its second run, which needs two epochs: {rest:?}"
    );
    let mut child = command(&refs(&three_args), &slurm)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while shard_log(&dir, 3).len() < 3 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "shard 3 ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "shard 3 is stuck"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let three: Value = serde_json::from_str(&ok_env(&refs(&three_args), &slurm)).unwrap();
    assert_eq!(three["shard"], serde_json::json!({"index": 2, "count": 3}));
    assert_eq!(
        names(&three["skipped"]),
        [rest[0]],
        "its finished run is skipped"
    );
    assert_eq!(names(&three["trained"]).len(), rest.len() - 1);
    // The stopped run went on from its finished epoch: no epoch was trained twice.
    let mut seen = BTreeSet::new();
    for l in shard_log(&dir, 3) {
        let key = (l["run"].as_str().unwrap().to_string(), l["epoch"].as_u64());
        assert!(seen.insert(key.clone()), "{key:?} logged twice");
    }

    // Every run was trained by exactly one shard.
    let mut all: Vec<String> = [&one, &two, &three]
        .iter()
        .flat_map(|o| names(&o["trained"]).into_iter().chain(names(&o["skipped"])))
        .collect();
    all.sort();
    let mut expected: Vec<String> = study_runs();
    expected.sort();
    assert_eq!(all, expected);

    // A shard run again finds all its runs finished.
    let again: Value = serde_json::from_str(&ok_env(
        &refs(&study(&dir, &["--shard", "1/3", "--json"])),
        none,
    ))
    .unwrap();
    assert!(names(&again["trained"]).is_empty());
    assert_eq!(names(&again["skipped"]), names(&one["trained"]));

    // The merged report holds the same runs and statistics as the one-process study.
    let merged = ok(&["study", "--merge", s(&dir)]);
    assert!(!merged.contains("not finished"), "{merged}");
    let (a, b) = (report(&whole), report(&dir));
    assert_eq!(b["merged"], true);
    assert!(b["missing"].as_array().unwrap().is_empty());
    let runs = |r: &Value| -> Vec<Value> {
        r["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| {
                let mut x = x.clone();
                x["summary"] = untimed(&x["summary"]);
                x
            })
            .collect()
    };
    assert_eq!(runs(&a).len(), 6);
    assert_eq!(runs(&a), runs(&b), "per-run metrics");
    assert_eq!(untimed(&a["teachers"][0]), untimed(&b["teachers"][0]));
    let stats = |r: &Value| -> Vec<Value> {
        r["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.as_object_mut().unwrap().remove("seconds_per_epoch");
                m
            })
            .collect()
    };
    assert_eq!(stats(&a), stats(&b), "means, sds and paired gains");
    assert_eq!(a["config"], b["config"]);
    let md = std::fs::read_to_string(dir.join("study.md")).unwrap();
    assert!(md.contains("| kd-transfer | 2 |") && md.contains("summed over the runs"));
    let png = std::fs::read(dir.join("study_accuracy.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // The journal names each checkpoint's SHA-256, as sha256sum would print it.
    let rec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("journal/ce-seed0.json")).unwrap())
            .unwrap();
    let last = &rec["checkpoints"][0];
    assert_eq!(last["file"], "ce-seed0/last.safetensors");
    let bytes = std::fs::read(dir.join("ce-seed0/last.safetensors")).unwrap();
    assert_eq!(last["bytes"].as_u64(), Some(bytes.len() as u64));
    assert_eq!(last["sha256"].as_str().unwrap().len(), 64);

    // A damaged checkpoint: the merge leaves the run out and says why; its shard refuses to
    // take the record for it.
    let best = dir.join("ce-seed0/best.safetensors");
    let mut damaged = std::fs::read(&best).unwrap();
    let at = damaged.len() - 1;
    damaged[at] ^= 0xff;
    std::fs::write(&best, &damaged).unwrap();
    let merged = ok(&["study", "--merge", s(&dir)]);
    assert!(merged.contains("not finished: 1 of 6 runs"), "{merged}");
    assert!(
        merged.contains("ce-seed0") && merged.contains("the journal says"),
        "{merged}"
    );
    let owner = [(&one, "1/3"), (&two, "auto/3"), (&three, "auto")]
        .into_iter()
        .find(|(o, _)| {
            let mut ran = names(&o["trained"]);
            ran.extend(names(&o["skipped"]));
            ran.contains(&"ce-seed0".to_string())
        })
        .map(|(_, spec)| spec)
        .unwrap_or("auto");
    let env: &[(&str, &str)] = match owner {
        "auto/3" => &[("JOB_COMPLETION_INDEX", "1")],
        "auto" => &slurm,
        _ => none,
    };
    fails_env(
        &refs(&study(&dir, &["--shard", owner])),
        env,
        "to train the run again",
    );
}

fn study_runs() -> Vec<String> {
    let mut v = Vec::new();
    for seed in 0..2 {
        for m in ["ce", "kd", "kd-transfer"] {
            v.push(format!("{m}-seed{seed}"));
        }
    }
    v
}
