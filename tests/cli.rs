//! The `distill` binary end to end, on small slices of the shipped Fashion-MNIST and the CPU
//! backend: the run directory and its report, eval agreeing with the report, exact resume,
//! predict, the distill subcommand, --json, --config files, and clear errors on bad input.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Flags shared by the pipeline runs: a tiny slice, one teacher epoch, 20% labels.
const SLICE: &[&str] = &[
    "--max-train",
    "1000",
    "--max-test",
    "300",
    "--teacher-epochs",
    "1",
    "--label-fraction",
    "0.2",
];

fn distill(args: &[&str]) -> Output {
    let device: &[&str] = if args.contains(&"--device") {
        &[]
    } else {
        &["--device", "cpu"]
    };
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(device)
        .args(args)
        .env_remove("DISTILL_DEVICE")
        .env_remove("DISTILL_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the distill binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = distill(args);
    assert!(
        out.status.success(),
        "distill {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn ok_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let stdout = ok(&all);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("distill {args:?} --json printed no JSON ({e}):\n{stdout}"))
}

/// Runs and expects a clean failure: non-zero exit (not a panic), `error: …` naming `needle`.
fn fails(args: &[&str], needle: &str) {
    let out = distill(args);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "distill {args:?} should fail; stdout:\n{}",
        text(&out.stdout)
    );
    assert_ne!(
        out.status.code(),
        Some(101),
        "distill {args:?} panicked:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "distill {args:?} panicked:\n{stderr}"
    );
    assert!(
        stderr.contains(needle),
        "distill {args:?}: expected '{needle}' in stderr:\n{stderr}"
    );
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The records without their timings, sorted by (run, epoch).
fn comparable(records: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("images_per_second");
            r
        })
        .collect();
    v.sort_by_key(|r| {
        (
            r["run"].as_str().unwrap().to_string(),
            r["epoch"].as_u64().unwrap(),
        )
    });
    v
}

/// The tensors of a safetensors file (header without metadata, and the data), which must agree
/// bit for bit between two runs; the metadata holds wall times.
fn tensor_bytes(path: &Path) -> (Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
    header.as_object_mut().unwrap().remove("__metadata__");
    (header, bytes[8 + n..].to_vec())
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("'{key}' missing or not a number in {v}"))
}

fn check_run_summary(r: &Value, train_images: u64, epochs: usize) {
    for key in ["final_accuracy", "best_accuracy"] {
        let a = num(r, key);
        assert!((0.0..=1.0).contains(&a), "{key} = {a}");
    }
    assert!(num(r, "best_accuracy") >= num(r, "final_accuracy"));
    assert!(r["run"].is_string() && r["arch"].is_string() && r["seed"].is_u64());
    assert_eq!(r["train_images"].as_u64(), Some(train_images));
    let best = r["best_epoch"].as_u64().unwrap() as usize;
    assert!((1..=epochs).contains(&best));
    assert!(num(r, "seconds_per_epoch") > 0.0);
    let h = r["history"].as_array().unwrap();
    assert_eq!(h.len(), epochs);
    for (i, e) in h.iter().enumerate() {
        assert_eq!(e["epoch"].as_u64(), Some(i as u64 + 1));
        for k in ["train_accuracy", "test_accuracy"] {
            assert!((0.0..=1.0).contains(&num(e, k)));
        }
        for k in [
            "train_loss",
            "test_loss",
            "seconds",
            "images_per_second",
            "lr",
        ] {
            assert!(num(e, k).is_finite() && num(e, k) > 0.0, "{k} in {e}");
        }
    }
    assert_eq!(
        num(r, "final_accuracy"),
        num(&h[epochs - 1], "test_accuracy")
    );
}

fn check_report(rep: &Value, dir: &Path) {
    let expected_keys = [
        "version",
        "dataset",
        "device",
        "class_names",
        "teacher_train_images",
        "student_train_images",
        "test_images",
        "config",
        "teacher",
        "baseline",
        "kd",
        "teacher_stats",
        "student_stats",
        "kd_gain_final",
        "kd_gain_best",
        "compression",
        "speedup_throughput",
        "speedup_latency",
        "teacher_cache_seconds",
        "teacher_seconds_saved",
        "kd_confusion",
        "total_seconds",
    ];
    for k in expected_keys {
        assert!(rep.get(k).is_some(), "report.json lacks '{k}'");
    }
    assert_eq!(rep["dataset"], "fashion-mnist");
    assert!(rep["device"].as_str().unwrap().starts_with("cpu"));
    assert_eq!(rep["class_names"].as_array().unwrap().len(), 10);
    assert_eq!(rep["teacher_train_images"].as_u64(), Some(1000));
    let m = rep["student_train_images"].as_u64().unwrap();
    assert!(
        (180..=220).contains(&m),
        "20% of 1000 is about 200, got {m}"
    );
    assert_eq!(rep["test_images"].as_u64(), Some(300));
    assert_eq!(rep["config"]["label_fraction"].as_f64(), Some(0.2));
    check_run_summary(&rep["teacher"], 1000, 1);
    for run in ["baseline", "kd"] {
        let runs = rep[run].as_array().unwrap();
        assert_eq!(runs.len(), 1);
        check_run_summary(&runs[0], m, 2);
    }
    let (ts, ss) = (&rep["teacher_stats"], &rep["student_stats"]);
    for st in [ts, ss] {
        assert!(num(st, "latency_ms_batch1") > 0.0 && num(st, "throughput_batch256") > 0.0);
        assert_eq!(
            st["bytes_f16"].as_u64().unwrap() * 2,
            st["bytes_f32"].as_u64().unwrap()
        );
        assert_eq!(
            st["bytes_f32"].as_u64().unwrap(),
            4 * st["parameters"].as_u64().unwrap()
        );
    }
    assert!(ts["parameters"].as_u64() > ss["parameters"].as_u64());
    assert!(num(rep, "compression") > 1.0);
    assert!(num(rep, "speedup_throughput") > 0.0 && num(rep, "speedup_latency") > 0.0);
    let gain = num(&rep["kd"][0], "final_accuracy") - num(&rep["baseline"][0], "final_accuracy");
    assert!((num(rep, "kd_gain_final") - gain).abs() < 1e-12);
    assert!(num(rep, "kd_gain_best").abs() <= 1.0);
    assert!(num(rep, "teacher_cache_seconds") > 0.0 && num(rep, "teacher_seconds_saved") >= 0.0);
    let confusion = rep["kd_confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 300);
    assert!(num(rep, "total_seconds") > 0.0);

    // The files of the run directory.
    for f in ["config.json", "metrics.jsonl", "report.md", "report.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    for run in ["teacher", "baseline", "kd"] {
        for f in [
            "best.safetensors",
            "last.safetensors",
            "last.state.safetensors",
        ] {
            assert!(dir.join(run).join(f).is_file(), "{run}/{f} missing");
        }
    }
    for png in ["loss.png", "accuracy.png", "confusion_kd.png"] {
        let img = image::open(dir.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(img.width() > 100 && img.height() > 100);
    }
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(&on_disk, rep, "--json prints report.json");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "all 1000 training images",
        &format!("only {m} of them"),
        "label_fraction = 0.2",
        "KD gain",
        "compression",
        "latency, batch 1",
        "throughput, batch 256",
        "seconds per epoch",
        "teacher time was saved",
        "T = 4",
        "α = 0.9",
        "(loss.png)",
        "(accuracy.png)",
        "(confusion_kd.png)",
        "cross-entropy",
    ] {
        assert!(md.contains(needle), "report.md lacks '{needle}':\n{md}");
    }
}

/// A 28×28 grey PNG of a test-set-like blob.
fn write_png(path: &Path) {
    let img = image::GrayImage::from_fn(28, 28, |x, y| {
        image::Luma([if (6..22).contains(&x) && (4..26).contains(&y) {
            200
        } else {
            0
        }])
    });
    img.save(path).unwrap();
}

#[test]
fn run_report_eval_resume_predict_distill() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");

    // Run A: students 2 epochs straight.
    let mut args = vec!["run", "--out", s(&a), "--epochs", "2"];
    args.extend_from_slice(SLICE);
    let rep = ok_json(&args);
    check_report(&rep, &a);
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
    let mut args = vec!["run", "--out", s(&b), "--epochs", "1", "--quiet"];
    args.extend_from_slice(SLICE);
    ok(&args);
    let mut args = vec!["run", "--out", s(&b), "--epochs", "2"];
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

#[test]
fn config_file_is_honoured_and_overridden_by_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("cfg.toml");
    let out = tmp.path().join("student");
    std::fs::write(
        &cfg,
        format!(
            "arch = \"student\"\nepochs = 1\nbatch-size = 64\nlr = 0.5\noptimizer = \"sgd\"\nmomentum = 0.8\nmax_train = 256\nmax-test = 100\nschedule = \"step\"\nstep-size = 3\nout = {:?}\n",
            s(&out)
        ),
    )
    .unwrap();
    let j = ok_json(&[
        "train",
        "--config",
        s(&cfg),
        "--lr",
        "0.02",
        "--gamma",
        "0.5",
    ]);
    let c = &j["config"];
    assert_eq!(c["batch_size"].as_u64(), Some(64), "from the file");
    assert_eq!(c["optimizer"], "sgd");
    assert_eq!(
        c["momentum"].as_f64().map(|m| (m - 0.8).abs() < 1e-6),
        Some(true)
    );
    assert_eq!(
        c["lr"].as_f64().map(|l| (l - 0.02).abs() < 1e-7),
        Some(true),
        "the flag overrides the file: {c}"
    );
    assert_eq!(c["schedule"]["kind"], "step");
    assert_eq!(c["schedule"]["step_size"].as_u64(), Some(3));
    assert_eq!(c["schedule"]["gamma"].as_f64(), Some(0.5));
    assert_eq!(j["train_images"].as_u64(), Some(256));
    assert_eq!(j["test_images"].as_u64(), Some(100));
    assert_eq!(j["arch"], "student");
    assert_eq!(j["history"].as_array().unwrap().len(), 1);
    assert_eq!(metrics(&out).len(), 1, "--out from the file");
    assert!(out.join("best.safetensors").is_file());

    // An unknown key is an error that names it.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "epochs = 1\nlearning_rate = 0.1\n").unwrap();
    fails(
        &["train", "--config", s(&bad), "--arch", "student"],
        "learning_rate",
    );
    fails(
        &[
            "train",
            "--config",
            s(&tmp.path().join("none.toml")),
            "--arch",
            "student",
        ],
        "cannot read the config file",
    );
    std::fs::write(&bad, "epochs = \"many\"\n").unwrap();
    fails(
        &["train", "--config", s(&bad), "--arch", "student"],
        "bad.toml",
    );
}

#[test]
fn bad_flags_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = s(&out);
    fails(
        &["train", "--arch", "giant", "--out", o],
        "unknown architecture 'giant'",
    );
    fails(&["train", "--out", o], "--arch");
    fails(&["run", "--lr", "0", "--out", o], "--lr must be");
    fails(
        &["run", "--label-fraction", "1.5", "--out", o],
        "--label-fraction must be in (0, 1]",
    );
    fails(&["run", "--alpha", "1.5", "--out", o], "--alpha");
    fails(&["run", "--temperature", "0", "--out", o], "--temperature");
    fails(&["run", "--batch-size", "0", "--out", o], "--batch-size");
    fails(&["run", "--epochs", "0", "--out", o], "--epochs");
    fails(
        &["run", "--optimizer", "adagrad", "--out", o],
        "unknown optimizer",
    );
    fails(&["run", "--lr", "fast", "--out", o], "invalid value");
    fails(
        &[
            "run",
            "--data",
            s(&tmp.path().join("no-such-dir")),
            "--out",
            o,
        ],
        "does not exist",
    );
    fails(
        &[
            "train",
            "--arch",
            "student",
            "--data",
            s(tmp.path()),
            "--out",
            o,
        ],
        "cannot load the dataset",
    );
    fails(
        &["run", "--resume", s(&tmp.path().join("never-ran"))],
        "no config.json",
    );
    fails(
        &["eval", s(&tmp.path().join("missing.safetensors"))],
        "no such checkpoint",
    );
    fails(&["distill", "--out", o], "--teacher");
    fails(
        &[
            "--device",
            "tpu",
            "eval",
            s(&tmp.path().join("x.safetensors")),
        ],
        "unknown device 'tpu'",
    );
    fails(&["frobnicate"], "unrecognized subcommand");
    assert!(
        !out.join("config.json").exists(),
        "a refused run leaves no run directory behind"
    );

    // A NaN loss stops training with a clear message and its own exit code.
    let out = distill(&[
        "train",
        "--arch",
        "student",
        "--lr",
        "1e9",
        "--max-train",
        "256",
        "--max-test",
        "64",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        o,
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("diverged") && stderr.contains("lower --lr"),
        "{stderr}"
    );
}

#[test]
fn devices_lists_the_cpu_backend() {
    let j = ok_json(&["devices"]);
    assert!(j["adapters"].is_array());
    assert!(j["cpu"]["threads"].as_u64().unwrap() >= 1);
    assert!(j["cpu"]["simd"].is_string());
    let plain = ok(&["devices"]);
    assert!(plain.contains("--device auto picks"), "{plain}");
}
