//! The main job end to end: the run directory, its report, eval, resume, predict, distill.

use serde_json::Value;

use super::*;

#[test]
fn run_report_eval_resume_predict_distill() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");

    // Run A: students 2 epochs straight. A constant rate: a cosine spans the epochs a run
    // starts with, so only a constant (or step) schedule can be extended on resume.
    let record = tmp.path().join("record.json");
    let mut args = vec![
        "run",
        "--out",
        s(&a),
        "--epochs",
        "2",
        "--schedule",
        "constant",
        "--record",
        s(&record),
    ];
    args.extend_from_slice(SLICE);
    let rep = ok_json(&args);
    check_report(&rep, &a);
    check_record(&record, &rep, &args);
    let lines = metrics(&a);
    assert_eq!(
        lines.len(),
        5,
        "one line per epoch per run: teacher 1 + baseline 2 + kd 2"
    );
    for (run, n) in [("teacher", 1), ("baseline", 2), ("kd", 2)] {
        assert_eq!(lines.iter().filter(|l| l["run"] == run).count(), n);
    }

    // eval on the final KD checkpoint gives the report's final KD accuracy.
    let ev = ok_json(&[
        "eval",
        s(&a.join("kd/last.safetensors")),
        "--max-test",
        "300",
        "--confusion",
    ]);
    assert_eq!(num(&ev, "accuracy"), num(&rep["kd"][0], "final_accuracy"));
    assert_eq!(ev["test_images"].as_u64(), Some(300));
    assert_eq!(ev["confusion"], rep["kd_confusion"]);
    let plain = ok(&[
        "eval",
        s(&a.join("kd/last.safetensors")),
        "--max-test",
        "300",
    ]);
    assert!(
        plain.contains(&format!(
            "{:.2}%",
            100.0 * num(&rep["kd"][0], "final_accuracy")
        )),
        "{plain}"
    );

    // Run B: students 1 epoch, then the same --out with 2 epochs, resumes to the same result.
    let mut args = vec![
        "run",
        "--out",
        s(&b),
        "--epochs",
        "1",
        "--schedule",
        "constant",
        "--quiet",
    ];
    args.extend_from_slice(SLICE);
    ok(&args);
    let mut args = vec![
        "run",
        "--out",
        s(&b),
        "--epochs",
        "2",
        "--schedule",
        "constant",
    ];
    args.extend_from_slice(SLICE);
    let out = distill(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("resuming the run in"), "{stderr}");
    assert!(stderr.contains("resumed after epoch 1"), "{stderr}");
    assert_eq!(comparable(&metrics(&a)), comparable(&metrics(&b)));
    for run in ["teacher", "baseline", "kd"] {
        for f in [
            "best.safetensors",
            "last.safetensors",
            "last.state.safetensors",
        ] {
            assert!(
                tensor_bytes(&a.join(run).join(f)) == tensor_bytes(&b.join(run).join(f)),
                "{run}/{f} differs after resume"
            );
        }
    }
    let rep_b: Value =
        serde_json::from_str(&std::fs::read_to_string(b.join("report.json")).unwrap()).unwrap();
    for run in ["baseline", "kd"] {
        assert_eq!(
            rep_b[run][0]["final_accuracy"],
            rep[run][0]["final_accuracy"]
        );
        assert_eq!(rep_b[run][0]["best_accuracy"], rep[run][0]["best_accuracy"]);
    }
    assert_eq!(
        rep_b["teacher"]["final_accuracy"],
        rep["teacher"]["final_accuracy"]
    );
    // Resuming with other settings is refused, naming what changed.
    let mut args = vec!["run", "--resume", s(&b), "--lr", "0.01"];
    args.extend_from_slice(SLICE);
    fails(&args, "student.lr");

    // predict: k classes with probabilities that sum to at most 1.
    let png = tmp.path().join("blob.png");
    write_png(&png);
    let ckpt = a.join("kd/best.safetensors");
    let preds = ok_json(&[
        "predict",
        s(&ckpt),
        s(&png),
        s(&a.join("loss.png")),
        "--top-k",
        "3",
    ]);
    let preds = preds.as_array().unwrap();
    assert_eq!(preds.len(), 2);
    for p in preds {
        let top = p["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let probs: Vec<f64> = top.iter().map(|c| num(c, "probability")).collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "{probs:?} sorted");
        assert!(probs.iter().all(|&p| (0.0..=1.0).contains(&p)));
        assert!(probs.iter().sum::<f64>() <= 1.0 + 1e-9);
        assert!(top.iter().all(|c| c["class"].is_string()));
    }
    let plain = ok(&["predict", s(&ckpt), s(&png), "--top-k", "2"]);
    assert_eq!(
        plain
            .lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .count(),
        2,
        "{plain}"
    );
    assert!(plain.contains('%'));

    // distill: a KD student from the saved teacher (offline, cached logits).
    let kd_dir = tmp.path().join("kd");
    let d = ok_json(&[
        "distill",
        "--teacher",
        s(&a.join("teacher/best.safetensors")),
        "--out",
        s(&kd_dir),
        "--max-train",
        "300",
        "--max-test",
        "100",
        "--epochs",
        "1",
        "--half",
    ]);
    assert_eq!(d["offline_kd"], Value::Bool(true));
    assert_eq!(d["train_images"].as_u64(), Some(300));
    assert!((0.0..=1.0).contains(&num(&d, "final_accuracy")));
    for f in [
        "best.safetensors",
        "last.safetensors",
        "best.f16.safetensors",
        "metrics.jsonl",
    ] {
        assert!(kd_dir.join(f).is_file(), "distill wrote no {f}");
    }
    let f32_len = std::fs::metadata(kd_dir.join("best.safetensors"))
        .unwrap()
        .len();
    let f16_len = std::fs::metadata(kd_dir.join("best.f16.safetensors"))
        .unwrap()
        .len();
    assert!(f16_len < f32_len * 6 / 10, "f16 {f16_len} vs f32 {f32_len}");

    // Bad inputs that need a run's files.
    let corrupt = tmp.path().join("corrupt.safetensors");
    let mut bytes = std::fs::read(&ckpt).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, &bytes).unwrap();
    fails(&["eval", s(&corrupt)], "cannot load the checkpoint");
    let garbage = tmp.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a checkpoint at all").unwrap();
    fails(&["eval", s(&garbage)], "error:");
    let not_image = tmp.path().join("photo.png");
    std::fs::write(&not_image, b"this is text, not a PNG").unwrap();
    fails(&["predict", s(&ckpt), s(&not_image)], "unreadable image");
    fails(
        &["predict", s(&ckpt), s(&tmp.path().join("missing.png"))],
        "missing.png",
    );

    // A bare PyTorch state_dict (the same tensors, no distill metadata) is read the same way
    // by every command that takes a checkpoint: its architecture comes from the shapes, its
    // input from the dataset.
    let bare = tmp.path().join("from_pytorch.safetensors");
    let ckpt_kd = distill::checkpoint::load(&a.join("kd/last.safetensors")).unwrap();
    distill::checkpoint::save(&bare, &ckpt_kd.tensors, &Default::default(), ckpt_kd.dtype).unwrap();
    let ev_bare = ok_json(&["eval", s(&bare), "--max-test", "300"]);
    assert_eq!(ev_bare["arch"], "student");
    assert_eq!(num(&ev_bare, "accuracy"), num(&ev, "accuracy"));
    let with_meta = ok_json(&["predict", s(&a.join("kd/last.safetensors")), s(&png)]);
    let without = ok_json(&["predict", s(&bare), s(&png)]);
    assert_eq!(with_meta, without);
}

/// `--record`: the run's figures as the report has them, this command, the machine and the
/// load window the report holds.
fn check_record(path: &Path, rep: &Value, args: &[&str]) {
    let rec = distill::bench::record::Record::load(path).expect("a valid record");
    // Within 1e-9: serde_json reads floats back to within an ulp, not always exactly.
    let same = |name: &str, want: f64| {
        let got = rec
            .figure(name)
            .unwrap_or_else(|| panic!("no figure `{name}` in {:?}", rec.figures))
            .value;
        assert!((got - want).abs() < 1e-9, "{name}: {got} vs {want}");
    };
    let pct = |v: &Value| 100.0 * v.as_f64().unwrap();
    same(
        "teacher final accuracy",
        pct(&rep["teacher"]["final_accuracy"]),
    );
    same("kd final accuracy", pct(&rep["kd"][0]["final_accuracy"]));
    same(
        "baseline final accuracy",
        pct(&rep["baseline"][0]["final_accuracy"]),
    );
    same("kd gain final", pct(&rep["kd_gain_final"]));
    same("compression", rep["compression"].as_f64().unwrap());
    assert_eq!(rec.figure("kd final accuracy").unwrap().unit, "%");
    // The command as typed: the test's flags after `distill`.
    assert_eq!(
        rec.command,
        format!("distill --device cpu {} --json", args.join(" "))
    );
    assert_eq!(
        serde_json::to_value(rec.load.window.as_ref().unwrap()).unwrap(),
        rep["load"]
    );
    assert_eq!(
        rec.load.window.as_ref().unwrap().before.is_some(),
        cfg!(target_os = "linux")
    );
    assert!(rec.machine.device.as_deref().unwrap().starts_with("cpu"));
    assert!(rec.machine.cpu_model.is_some() && rec.machine.logical_cpus.is_some());
    // The floor names the peak it was read against.
    let source = rep["floor"]["peak_source"].as_str().unwrap();
    assert!(
        source.contains("distill bench") || source.contains("measured at the end of this run"),
        "{source}"
    );
}
