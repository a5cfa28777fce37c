//! The `distill` binary end to end, on small slices of the shipped Fashion-MNIST and the CPU
//! backend: the run directory and its report, eval agreeing with the report, exact resume,
//! predict, the distill subcommand, --json, --config files, clear errors on bad input, and
//! the reliability guarantees (one writer per run directory, a full disk, Ctrl-C).

mod devices;
mod distillation;
mod hint;
mod options;
mod reliability;
mod run;
mod shards;
mod study;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// Flags shared by the pipeline runs: a tiny slice, one teacher epoch, 20% labels, the KD
/// student on its labelled images (so both students run the same epochs; tests/cli/
/// distillation.rs covers the default transfer set).
const SLICE: &[&str] = &[
    "--transfer",
    "labelled",
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
