//! `distill distill --hint-weight`: feature (hint) distillation end to end on a small slice,
//! its settings in the --json output, the checkpoints it writes, resume, and bad settings.

use crate::{fails, ok, ok_json, s};

const SLICE: &[&str] = &["--max-train", "200", "--max-test", "100", "--epochs", "1"];

#[test]
fn distill_with_a_hint() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher_dir = tmp.path().join("teacher");
    let mut args = vec!["train", "--arch", "teacher", "--out", s(&teacher_dir)];
    args.extend(SLICE);
    ok(&args);
    let teacher = teacher_dir.join("best.safetensors");
    let kd = tmp.path().join("kd");
    let with = |extra: &[&'static str]| {
        let mut a = vec!["distill", "--teacher", s(&teacher), "--out", s(&kd)];
        a.extend(SLICE);
        a.extend(extra);
        a
    };

    let out = ok_json(&with(&["--hint-weight", "0.5"]));
    assert_eq!(out["hint"]["weight"], 0.5);
    assert_eq!(out["hint"]["student_layer"], "conv2");
    assert_eq!(out["hint"]["teacher_layer"], "conv2");
    assert!(out["history"][0]["train_loss"]
        .as_f64()
        .unwrap()
        .is_finite());
    // The checkpoint is the student alone; the adapter lives in the resume state.
    let last = distill::checkpoint::load(&kd.join("last.safetensors")).unwrap();
    assert!(last
        .tensors
        .iter()
        .all(|t| !t.name.starts_with("hint_adapter")));
    let state = distill::checkpoint::load(&kd.join("last.state.safetensors")).unwrap();
    assert!(state.get("hint_adapter.weight").is_some());
    // The checkpoint evaluates as a plain student.
    let ev = ok_json(&["eval", s(&kd.join("best.safetensors")), "--max-test", "100"]);
    assert_eq!(ev["arch"], "student");

    // The same command with other hint settings cannot continue the run.
    fails(&with(&["--hint-weight", "0.25"]), "hint settings");
    // A second epoch continues it.
    let mut more = with(&["--hint-weight", "0.5"]);
    let at = more.iter().position(|a| *a == "--epochs").unwrap();
    more[at + 1] = "2";
    let out = ok_json(&more);
    assert_eq!(out["history"].as_array().unwrap().len(), 2);

    // Bad settings, each a clear error.
    let fresh = |extra: &[&'static str]| {
        let mut a = vec!["distill", "--teacher", s(&teacher)];
        a.extend(SLICE);
        a.extend(extra);
        a
    };
    let dir = tmp.path().join("bad");
    let mut bad = fresh(&["--hint-weight=-1"]);
    bad.extend(["--out", s(&dir)]);
    fails(&bad, "--hint-weight must be a finite number > 0");
    let mut bad = fresh(&["--hint-layers", "conv1:conv1"]);
    bad.extend(["--out", s(&dir)]);
    fails(&bad, "--hint-layers needs a --hint-weight > 0");
    // The same settings from a --config file.
    let toml = tmp.path().join("hint.toml");
    std::fs::write(&toml, "hint-layers = \"conv2:conv1\"\n").unwrap();
    let mut bad = fresh(&[]);
    bad.extend(["--config", s(&toml), "--out", s(&dir)]);
    fails(&bad, "--hint-layers needs a --hint-weight > 0");
    std::fs::write(&toml, "hint_weight = 1.0\nhint_layers = \"conv2:conv1\"\n").unwrap();
    let mut bad = fresh(&[]);
    bad.extend(["--config", s(&toml), "--out", s(&dir)]);
    fails(
        &bad,
        "the student's conv2 is 14x14 and the teacher's conv1 is 28x28",
    );
    let mut bad = fresh(&["--hint-weight", "1", "--hint-layers", "conv2:conv1"]);
    bad.extend(["--out", s(&dir)]);
    fails(
        &bad,
        "the student's conv2 is 14x14 and the teacher's conv1 is 28x28",
    );
    let mut bad = fresh(&["--hint-weight", "1", "--hint-layers", "fc1:conv2"]);
    bad.extend(["--out", s(&dir)]);
    fails(
        &bad,
        "the student has no feature layer 'fc1' (it has: conv1, pool1, conv2, pool2)",
    );
}
