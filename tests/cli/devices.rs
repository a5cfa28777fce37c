//! `distill study --devices`: the student runs on several devices of one machine at once (the
//! CPU and lavapipe twice), each run giving the metrics it gives when its device runs the
//! study alone, one run after another. Needs a GPU adapter (lavapipe will do); without one it
//! skips with a line, and fails under DISTILL_REQUIRE_GPU=1.

use std::collections::BTreeMap;

use super::*;

/// `gpu:N` of the first adapter `distill devices` lists, if any.
fn first_gpu() -> Option<String> {
    let v = ok_json(&["devices"]);
    let index = v["adapters"].as_array()?.first()?["index"].as_u64()?;
    Some(format!("gpu:{index}"))
}

/// The journal's records of a study directory: run → (device, summary without timings).
fn records(dir: &Path) -> BTreeMap<String, (String, Value)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("journal")).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().unwrap() == "teachers.json" {
            continue;
        }
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut summary = r["summary"].clone();
        let o = summary.as_object_mut().unwrap();
        o.remove("seconds_per_epoch");
        for h in o["history"].as_array_mut().unwrap() {
            let h = h.as_object_mut().unwrap();
            h.remove("seconds");
            h.remove("images_per_second");
        }
        let device = r["device"].as_str().unwrap().to_string();
        out.insert(r["run"].as_str().unwrap().to_string(), (device, summary));
    }
    out
}

#[test]
fn runs_on_several_devices_at_once_match_each_device_alone() {
    let Some(gpu) = first_gpu() else {
        assert!(
            std::env::var("DISTILL_REQUIRE_GPU").map_or(true, |v| v != "1"),
            "DISTILL_REQUIRE_GPU=1 but `distill devices` lists no GPU adapter"
        );
        eprintln!("skipping: no GPU adapter (set DISTILL_REQUIRE_GPU=1 to fail instead)");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // One teacher for all three studies, so that only the students' devices differ.
    let t = tmp.path().join("teacher");
    ok(&[
        "train",
        "--arch",
        "teacher",
        "--max-train",
        "200",
        "--max-test",
        "50",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        s(&t),
    ]);
    let teacher = t.join("last.safetensors");
    // `global` goes before the subcommand (--device), `own` after it (--devices).
    let study = |out: &Path, global: &[&str], own: &[&str]| {
        let mut args: Vec<&str> = global.to_vec();
        args.extend(["--no-autotune", "study"]);
        args.extend(own);
        args.extend([
            "--methods",
            "ce,kd",
            "--seeds",
            "2",
            "--teacher",
            s(&teacher),
            "--max-train",
            "200",
            "--max-test",
            "50",
            "--epochs",
            "2",
            "--label-fraction",
            "0.1",
            "--batch-size",
            "32",
            "--out",
            s(out),
        ]);
        ok(&args);
        records(out)
    };
    let cpu = study(&tmp.path().join("cpu"), &["--device", "cpu"], &[]);
    let lavapipe = study(&tmp.path().join("gpu"), &["--device", &gpu], &[]);
    let list = format!("cpu,{gpu},{gpu}");
    let both_dir = tmp.path().join("both");
    let both = study(&both_dir, &[], &["--devices", &list]);

    assert_eq!(both.len(), 4);
    let (cpu_name, gpu_name) = (&cpu["ce-seed0"].0, &lavapipe["ce-seed0"].0);
    assert_ne!(cpu_name, gpu_name);
    let mut on = BTreeMap::new();
    for (run, (device, summary)) in &both {
        let alone = if device == cpu_name {
            &cpu
        } else if device == gpu_name {
            &lavapipe
        } else {
            panic!("{run} ran on {device}, which is in neither study");
        };
        assert_eq!(summary, &alone[run].1, "{run} on {device}");
        *on.entry(device.clone()).or_insert(0) += 1;
    }
    assert_eq!(on.len(), 2, "both kinds of device trained runs: {on:?}");
    // Each of the three devices kept its own log, and trained runs.
    for k in 1..=3 {
        let log = std::fs::read_to_string(both_dir.join(format!("shards/metrics-device{k}.jsonl")))
            .unwrap();
        assert!(log.lines().count() >= 1, "device {k} trained nothing");
    }
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(both_dir.join("study_report.json")).unwrap())
            .unwrap();
    assert_eq!(report["runs"].as_array().unwrap().len(), 4);
    assert!(report["missing"].as_array().unwrap().is_empty());
}
