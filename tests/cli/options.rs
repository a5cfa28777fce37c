//! `--config` files, the defaults the help names, bad flags and `distill devices`.

use super::*;

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

#[test]
fn devices_say_how_each_adapters_gemm_tiles_are_chosen() {
    let j = ok_json(&["devices", "--no-autotune"]);
    let adapters = j["adapters"].as_array().unwrap();
    for a in adapters {
        let tiles = a["gemm_tiles"].as_str().unwrap();
        assert!(
            tiles.contains("64×64") && tiles.contains("autotune off"),
            "{a}"
        );
    }
    let plain = ok(&["devices"]);
    assert_eq!(
        plain.matches("GEMM tiles: ").count(),
        adapters.len(),
        "{plain}"
    );
}

/// The help of `flag` in `distill SUB --help`: the flag's line, and the next one where clap
/// puts the help under the flag.
fn flag_help(help: &str, sub: &str, flag: &str) -> String {
    let lines: Vec<&str> = help.lines().map(str::trim).collect();
    let at = lines
        .iter()
        .position(|l| {
            l.strip_prefix(flag)
                .is_some_and(|r| r.is_empty() || r.starts_with(' '))
        })
        .unwrap_or_else(|| panic!("distill {sub} --help has no {flag}:\n{help}"));
    let mut text = lines[at].to_string();
    match lines.get(at + 1) {
        Some(next) if !next.is_empty() && !next.starts_with('-') => {
            text.push(' ');
            text.push_str(next);
        }
        _ => {}
    }
    text
}

#[test]
fn the_help_names_the_library_defaults() {
    use std::fmt::Display;

    use distill::optim::LrSchedule;
    use distill::pipeline::{study, RunConfig, TeacherSource, DEFAULT_STUDENT_ARCH};
    use distill::train::HintConfig;

    let run = RunConfig::default();
    let kd = TeacherSource::new(Vec::new());
    let hint = study::default_hint();
    let methods: Vec<&str> = study::DEFAULT_METHODS.iter().map(|m| m.name()).collect();
    let methods = methods.join(",");
    let layers = hint.layers();
    let off = kd
        .hint
        .as_ref()
        .map_or("0 (off)".to_string(), |h| h.weight.to_string());
    let expected: Vec<(&str, &str, &dyn Display)> = vec![
        ("run", "--teacher-epochs", &run.teacher.epochs),
        ("run", "--label-fraction", &run.label_fraction),
        ("run", "--transfer", &run.transfer),
        ("run", "--ensemble", &run.ensemble),
        ("run", "--student-arch", &run.student_arch),
        ("run", "--temperature", &run.kd.temperature),
        ("run", "--alpha", &run.kd.alpha),
        ("run", "--step-size", &LrSchedule::DEFAULT_STEP_SIZE),
        ("train", "--step-size", &LrSchedule::DEFAULT_STEP_SIZE),
        ("train", "--gamma", &LrSchedule::DEFAULT_GAMMA),
        ("distill", "--label-fraction", &kd.label_fraction),
        ("distill", "--transfer", &kd.transfer),
        ("distill", "--ensemble", &kd.ensemble),
        ("distill", "--arch", &DEFAULT_STUDENT_ARCH),
        ("distill", "--temperature", &kd.kd.temperature),
        ("distill", "--alpha", &kd.kd.alpha),
        ("distill", "--hint-weight", &off),
        ("distill", "--hint-layers", &HintConfig::DEFAULT_LAYERS),
        ("study", "--seeds", &study::DEFAULT_SEEDS),
        ("study", "--methods", &methods),
        ("study", "--hint-weight", &hint.weight),
        ("study", "--hint-layers", &layers),
        ("study", "--teacher-epochs", &run.teacher.epochs),
        ("predict", "--top-k", &distill::pipeline::DEFAULT_TOP_K),
    ];
    let mut helps = std::collections::HashMap::new();
    for (sub, flag, value) in expected {
        let help = helps.entry(sub).or_insert_with(|| ok(&[sub, "--help"]));
        let shown = flag_help(help, sub, flag);
        let want = format!("Default: {value}");
        assert!(
            shown.ends_with(&want),
            "distill {sub} --help: {flag} should end with '{want}' (the library's default):\n{shown}"
        );
    }
    // A lone run's seeds are not the study's: its help names none.
    let run_help = helps.entry("run").or_insert_with(|| ok(&["run", "--help"]));
    assert!(!flag_help(run_help, "run", "--seeds").contains("Default"));
    // --transfer-epochs: the rule's result in the default job.
    let total = 1_000_000;
    let labelled = (run.label_fraction * total as f64).round() as usize;
    let epochs = distill::pipeline::transfer_epochs(run.student.epochs, labelled, total, None);
    let shown = flag_help(run_help, "run", "--transfer-epochs");
    assert!(
        shown.contains(&format!("at most its epochs: {epochs} over all images")),
        "{shown}"
    );
    // --quick: the sizes of the library's quick job.
    let quick = distill::pipeline::RunConfig::quick();
    let shown = flag_help(run_help, "run", "--quick");
    assert!(
        shown.contains(&format!(
            "{}/{} images",
            quick.max_train.unwrap(),
            quick.max_test.unwrap()
        )) && shown.contains(&format!("students {} epochs", quick.student.epochs)),
        "{shown}"
    );
}
