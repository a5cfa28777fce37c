//! `distill study` end to end on a tiny slice: killed part-way, the same command continues
//! with the runs it had not finished (the teacher is not trained again, no epoch is logged
//! twice) and writes the table, the JSON and the plot.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

fn study_args(out: &Path) -> Vec<String> {
    [
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
    .collect()
}

fn logged(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| {
            t.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_killed_study_continues_and_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let args = study_args(&out);
    let mut child = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(&args)
        .env_remove("DISTILL_DEVICE")
        .env_remove("DISTILL_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once the teacher and the first CE run are done and the KD run has started.
    let start = Instant::now();
    while !logged(&out).iter().any(|l| l["run"] == "kd-seed0") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the study ended before it was killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no KD epoch within 5 minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("study_report.json").exists());

    let record = tmp.path().join("study-record.json");
    let mut refs: Vec<&str> = args.iter().map(String::as_str).collect();
    refs.extend(["--record", s(&record)]);
    let table = ok(&refs);
    assert!(
        table.contains("kd-transfer") && table.contains("gain"),
        "{table}"
    );
    let lines = logged(&out);
    let teacher = lines.iter().filter(|l| l["run"] == "teacher").count();
    assert_eq!(teacher, 1, "the teacher trained once");
    let mut seen = BTreeSet::new();
    for l in &lines {
        let key = (
            l["run"].as_str().unwrap().to_string(),
            l["epoch"].as_u64().unwrap(),
        );
        assert!(seen.insert(key.clone()), "{key:?} logged twice");
    }
    for run in ["ce-seed0", "kd-seed0", "kd-seed1", "ce-seed1"] {
        assert_eq!(lines.iter().filter(|l| l["run"] == run).count(), 2, "{run}");
    }
    // 2 epochs over 10% of the images, ×10/3 the steps → 1 epoch over all of them.
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["run"] == "kd-transfer-seed1")
            .count(),
        1
    );

    let rep: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("study_report.json")).unwrap())
            .unwrap();
    let methods = rep["methods"].as_array().unwrap();
    assert_eq!(methods.len(), 3);
    assert!(
        methods[0]["gain_final"].is_null(),
        "ce has no gain over itself"
    );
    for m in &methods[1..] {
        assert_eq!(m["seeds"].as_u64(), Some(2));
        let g = &m["gain_final"];
        assert_eq!(g["seeds"].as_u64(), Some(2));
        let sign = g["sign_p"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&sign));
    }
    assert_eq!(rep["transfer_images"].as_u64(), Some(400));
    let md = std::fs::read_to_string(out.join("study.md")).unwrap();
    assert!(md.contains("| kd-transfer | 2 |"), "{md}");
    assert!(md.contains("Machine: load average"), "{md}");
    // The record of the study holds its table's figures.
    let rec = distill::bench::record::Record::load(&record).unwrap();
    for (i, m) in methods.iter().enumerate() {
        let name = ["ce", "kd", "kd-transfer"][i];
        let mean = rec.figure(&format!("{name} final accuracy")).unwrap();
        assert!((mean.value - 100.0 * m["final_mean"].as_f64().unwrap()).abs() < 1e-9);
        assert!(rec
            .figure(&format!("{name} seed 1 final accuracy"))
            .is_some());
    }
    // (serde_json reads floats back to within an ulp, not always exactly.)
    let gain = 100.0 * methods[1]["gain_final"]["mean"].as_f64().unwrap();
    assert!((rec.figure("kd gain final").unwrap().value - gain).abs() < 1e-9);
    assert!(rec
        .command
        .starts_with("distill --device cpu study --methods ce,kd,kd-transfer"));
    assert!(rec.command.ends_with(&format!("--record {}", s(&record))));
    let png = std::fs::read(out.join("study_accuracy.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Bad lists are clear errors; a resumed study keeps its methods.
    let mut bad = args.clone();
    bad[4] = "ce,kd".into();
    let refs: Vec<&str> = bad.iter().map(String::as_str).collect();
    fails(&refs, "other methods");
    fails(
        &["study", "--methods", "ce,distil", "--max-train", "100"],
        "unknown method 'distil'",
    );
    fails(
        &["study", "--methods", "kd", "--max-train", "100"],
        "must include ce",
    );
    fails(
        &["study", "--methods", "ce,ce", "--max-train", "100"],
        "listed twice",
    );
}

#[test]
fn the_hint_method_runs_and_keeps_its_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("study");
    let args = [
        "--device",
        "cpu",
        "study",
        "--methods",
        "ce,hint",
        "--seeds",
        "1",
        "--out",
        s(&out),
        "--max-train",
        "300",
        "--max-test",
        "100",
        "--teacher-epochs",
        "1",
        "--epochs",
        "1",
        "--label-fraction",
        "0.2",
        "--batch-size",
        "32",
        "--hint-weight",
        "50",
    ];
    let table = ok(&args);
    assert!(table.contains("hint"), "{table}");
    let lines = logged(&out);
    assert_eq!(lines.iter().filter(|l| l["run"] == "hint-seed0").count(), 1);
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("study.json")).unwrap()).unwrap();
    assert_eq!(saved["hint"]["weight"].as_f64(), Some(50.0));

    // The same study with another hint weight is refused; a bad layer is a clear error.
    let mut other: Vec<&str> = args.to_vec();
    *other.last_mut().unwrap() = "5";
    fails(&other, "other hint settings");
    fails(
        &[
            "study",
            "--methods",
            "ce,hint",
            "--hint-layers",
            "conv9:conv2",
            "--max-train",
            "100",
        ],
        "conv9",
    );
}
