//! The browser build in a real browser: Debian's headless Chromium driven through
//! chromedriver, WebGPU on its software adapter (SwiftShader), the page in web/ served from
//! 127.0.0.1. The page is built first (scripts/web.sh). Without Chromium, chromedriver or
//! wasm-bindgen these tests say so and pass, unless DISTILL_REQUIRE_BROWSER=1 (CI), which
//! makes that a failure.

mod server;
mod webdriver;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use distill::data::idx::{images_from_bytes, labels_from_bytes};
use distill::data::{Dataset, Split, FASHION_MNIST_CLASSES};
use distill::model_file::load_model;
use distill::nn::ArchSpec;
use distill::train::{
    evaluate, predict_logits, train, EpochRecord, InputSpec, KdConfig, Silent, TeacherLogits,
    TrainConfig, TrainJob,
};
use distill::Device;
use serde_json::Value;
use webdriver::{Browser, Gpu};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The page's URL base, once the page is built and served; `None` (after saying why) when
/// this machine cannot run the tests and they are not required.
fn page() -> Option<&'static str> {
    static PAGE: OnceLock<Result<String, String>> = OnceLock::new();
    let page = PAGE.get_or_init(|| {
        for tool in ["chromedriver", "wasm-bindgen"] {
            if Command::new(tool).arg("--version").output().is_err() {
                return Err(format!("{tool} is not installed (see docs/web.md)"));
            }
        }
        if !Path::new(&webdriver::chromium()).exists() {
            return Err(format!("no Chromium at {}", webdriver::chromium()));
        }
        // Its own target folder: the outer `cargo test` may still hold target/.
        let built = Command::new("bash")
            .arg(root().join("scripts/web.sh"))
            .env("CARGO_TARGET_DIR", root().join("target/web"))
            .status()
            .map_err(|e| format!("scripts/web.sh: {e}"))?;
        if !built.success() {
            return Err("scripts/web.sh failed to build the page".into());
        }
        Ok(server::serve(root()))
    });
    match page {
        Ok(url) => Some(url),
        Err(why) if std::env::var("DISTILL_REQUIRE_BROWSER").as_deref() == Ok("1") => {
            panic!("browser tests required (DISTILL_REQUIRE_BROWSER=1) but {why}")
        }
        Err(why) => {
            eprintln!("skipping the browser tests: {why}");
            None
        }
    }
}

// The in-page training is sized for a software adapter.
const TRAIN: usize = 100;
const TEST: usize = 50;
const EPOCHS: usize = 1;

fn read(name: &str) -> Vec<u8> {
    std::fs::read(root().join("datasets/fashion-mnist").join(name)).unwrap()
}

/// The page's data, loaded natively the same way (the first TRAIN and TEST images).
fn native_data() -> (Arc<Split>, Arc<Split>, InputSpec) {
    let split = |images: &str, labels: &str, n: usize| {
        let im = images_from_bytes(Path::new(images), read(images)).unwrap();
        let lb = labels_from_bytes(Path::new(labels), read(labels)).unwrap();
        Split::new(im.pixels, lb).unwrap().take(n)
    };
    let train = split(
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        TRAIN,
    );
    let test = split(
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
        TEST,
    );
    let names = FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut ds = Dataset::from_splits("fashion-mnist", (1, 28, 28), names, train, test).unwrap();
    let input = InputSpec::of(&ds);
    let train = Arc::new(std::mem::take(&mut ds.train));
    (train, Arc::new(std::mem::take(&mut ds.test)), input)
}

/// Teacher, baseline and KD student trained natively on the CPU as the page trains them.
fn native_histories() -> Vec<(String, Vec<EpochRecord>)> {
    let (train_split, test, input) = native_data();
    let device = Device::cpu();
    let config = TrainConfig {
        epochs: EPOCHS,
        ..TrainConfig::default()
    };
    let job = |run: &str, arch: &str, kd| TrainJob {
        run: run.into(),
        spec: ArchSpec::named(arch, 1, 28, 28, 10).unwrap(),
        input: input.clone(),
        device: device.clone(),
        config: config.clone(),
        train: train_split.clone(),
        test: test.clone(),
        kd,
        hint: None,
        checkpoint_dir: None,
        resume: false,
    };
    let teacher = train(job("teacher", "teacher", None), &mut Silent).unwrap();
    let baseline = train(job("baseline", "student", None), &mut Silent).unwrap();
    let logits = predict_logits(&teacher.model, &device, &train_split, &input, 256).unwrap();
    let kd = Some((KdConfig::default(), TeacherLogits::Cached(Arc::new(logits))));
    let student = train(job("kd", "student", kd), &mut Silent).unwrap();
    vec![
        ("teacher".into(), teacher.history),
        ("baseline".into(), baseline.history),
        ("kd".into(), student.history),
    ]
}

/// The page's losses match the native CPU backend's, run by run and epoch by epoch.
fn assert_same_training(state: &Value, tolerance: f64) {
    for (run, native) in native_histories() {
        let page = state["runs"][&run]["epochs"].as_array().unwrap();
        assert_eq!(page.len(), native.len(), "{run}: epochs");
        for (p, n) in page.iter().zip(&native) {
            for key in ["train_loss", "test_loss"] {
                let (a, b) = (
                    p[key].as_f64().unwrap(),
                    match key {
                        "train_loss" => n.train_loss,
                        _ => n.test_loss,
                    },
                );
                assert!(
                    (a - b).abs() <= tolerance * b.abs().max(1.0),
                    "{run} epoch {}: {key} {a} in the page, {b} natively",
                    n.epoch
                );
            }
            let acc = p["test_accuracy"].as_f64().unwrap();
            assert!(
                (acc - n.test_accuracy).abs() <= 2.0 / TEST as f64,
                "{run} epoch {}: accuracy {acc} in the page, {} natively",
                n.epoch,
                n.test_accuracy
            );
        }
    }
}

fn train_in_page(browser: &Browser, base: &str, device: &str) -> Value {
    browser.open(&format!(
        "{base}/web/index.html?device={device}&train={TRAIN}&test={TEST}&epochs={EPOCHS}&autorun=1"
    ));
    let state = browser.wait_for_state(&["done"], Duration::from_secs(1500));
    assert_eq!(state["phase"], "done", "page state: {state}");
    assert_eq!(state["data"]["train"], TRAIN);
    state
}

#[test]
fn every_shader_compiles_in_the_browsers_wgsl_compiler() {
    let Some(base) = page() else { return };
    let browser = Browser::start(Gpu::SwiftShader);
    browser.open(&format!("{base}/web/index.html?device=webgpu&shaders=1"));
    let state = browser.wait_for_state(&["shaders-checked"], Duration::from_secs(600));
    assert_eq!(state["phase"], "shaders-checked", "page state: {state}");
    let checks = state["shaders"].as_array().unwrap();
    let adapter = &state["device"]["adapter"];
    let mut failed = Vec::new();
    for c in checks {
        let module = c["module"].as_str().unwrap();
        let expected_unsupported = (module.contains("subgroup") && adapter["subgroup"] == false)
            || (module.contains("f16") && adapter["shader_f16"] == false);
        match c["status"].as_str().unwrap() {
            "compiled" => assert!(
                !expected_unsupported,
                "{module} compiled without its feature"
            ),
            "unsupported" => assert!(expected_unsupported, "{module} unsupported: {c}"),
            _ => failed.push(c.clone()),
        }
    }
    assert!(failed.is_empty(), "the browser rejected: {failed:?}");
    // 8 untiled production modules, matmul and conv2d with each staged tile candidate (the
    // registers-only loop is an entry point of matmul.wgsl and conv2d_registers.wgsl), 14
    // rungs.
    let tiled = checks
        .iter()
        .filter(|c| c["module"].as_str().unwrap().contains("[tile"))
        .count();
    assert!(tiled >= 2, "tile candidates checked: {tiled}");
    assert_eq!(checks.len(), 8 + tiled + 14);
    assert!(checks
        .iter()
        .any(|c| c["module"] == "conv2d_registers.wgsl" && c["status"] == "compiled"));
}

#[test]
fn webgpu_training_in_the_page_matches_the_native_cpu_and_its_checkpoint_loads_natively() {
    let Some(base) = page() else { return };
    let browser = Browser::start(Gpu::SwiftShader);
    let state = train_in_page(&browser, base, "webgpu");
    assert_eq!(state["device"]["backend"], "webgpu");
    // SwiftShader runs on the CPU, so the page builds the registers-only GEMM and conv
    // kernels for it: these are what trained here.
    assert_eq!(state["device"]["adapter"]["device_type"], "software");
    let tiles = state["device"]["tiles"].as_str().unwrap_or_default();
    assert_eq!(tiles.matches("registers only").count(), 2, "tiles: {tiles}");
    assert_same_training(&state, 2e-3);

    // The KD student's checkpoint, downloaded from the page, in native `distill eval`'s loader.
    let b64 = browser.run_async("return await window.distillCheckpoint('kd');");
    let bytes = base64_decode(b64.as_str().expect("checkpoint bytes"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kd.safetensors");
    std::fs::write(&path, bytes).unwrap();
    let (_, test, input) = native_data();
    let loaded = load_model(&path, &Device::cpu(), &|| Ok(input.clone())).unwrap();
    assert_eq!(loaded.spec.arch, "student");
    let native = evaluate(
        &loaded.model,
        &Device::cpu(),
        &test,
        &loaded.input,
        256,
        false,
    )
    .unwrap();
    let page_acc = state["summary"]["kd"]["final"]["test_accuracy"]
        .as_f64()
        .unwrap();
    assert!(
        (native.accuracy - page_acc).abs() <= 1.0 / TEST as f64,
        "the page's KD student: {page_acc} there, {} natively",
        native.accuracy
    );
}

#[test]
fn without_webgpu_the_page_trains_on_the_cpu_and_says_so() {
    let Some(base) = page() else { return };
    let browser = Browser::start(Gpu::Off);
    let state = train_in_page(&browser, base, "auto");
    assert_eq!(state["device"]["backend"], "cpu", "{state}");
    let why = state["device"]["why"].as_str().unwrap();
    assert!(why.contains("no WebGPU"), "why: {why}");
    assert_eq!(state["device"]["cpu_simd"], "simd128");
    let shown = browser.run("return document.getElementById('device-info').textContent;");
    assert!(
        shown
            .as_str()
            .unwrap()
            .contains("the CPU (WebAssembly, simd128)"),
        "{shown}"
    );
    assert_same_training(&state, 1e-4);
}

#[test]
fn a_browser_without_webassembly_gets_a_message_not_a_blank_page() {
    let Some(base) = page() else { return };
    let browser = Browser::start_with(Gpu::Off, &["delete globalThis.WebAssembly;"]);
    browser.open(&format!("{base}/web/index.html"));
    let state = browser.wait_for_state(&[], Duration::from_secs(60));
    assert_eq!(state["phase"], "error");
    let shown = browser.run(
        "const e = document.getElementById('unsupported'); return e.hidden ? '' : e.textContent;",
    );
    assert!(
        shown.as_str().unwrap().contains("cannot run WebAssembly"),
        "shown: {shown}"
    );
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|&c| value(c) as u32).collect();
        let n = v.iter().fold(0u32, |acc, &x| acc << 6 | x) << (6 * (4 - v.len()));
        out.extend_from_slice(&n.to_be_bytes()[1..v.len()]);
    }
    out
}

#[test]
fn the_pages_bench_report_validates_and_compares_with_a_native_report() {
    let Some(base) = page() else { return };
    let browser = Browser::start(Gpu::Off);
    browser.open(&format!("{base}/web/index.html?device=cpu&bench=1"));
    let state = browser.wait_for_state(&["benched"], Duration::from_secs(900));
    assert_eq!(state["phase"], "benched", "page state: {state}");
    let dir = tempfile::tempdir().unwrap();
    let page_report = dir.path().join("browser.json");
    std::fs::write(&page_report, state["bench"].as_str().unwrap()).unwrap();
    let report = distill::bench::Report::load(&page_report).expect("the page's report loads");
    assert_eq!(report.machine.arch, "wasm32");
    assert!(report
        .machine
        .browser
        .as_deref()
        .unwrap_or("")
        .contains("Chrome"));
    assert_eq!(report.machine.simd_level, "simd128");
    // Beside a native CPU report (committed in docs/bench/): the training rows line up.
    let native = root().join("docs/bench/cpu-quick.json");
    let cmp = distill::bench::compare_files(&[native, page_report]).unwrap();
    let line = cmp
        .lines
        .iter()
        .find(|l| l.kernel == "teacher train b128")
        .expect("a teacher training line");
    assert!(line.cells.iter().all(Option::is_some), "{line:?}");
    assert!(line.ratio(1).unwrap() > 0.0);
    assert!(cmp.markdown().contains("teacher train b128"));
}

/// The kernel-study ladders in the page, on WebGPU: every rung is checked against the f64
/// reference, then the ones that passed are timed; a rung whose feature SwiftShader lacks is
/// named unsupported, with the feature, never dropped.
#[test]
fn the_pages_ladders_check_then_time_every_rung_on_webgpu() {
    let Some(base) = page() else { return };
    for (op, prefix, production) in [
        ("matmul", "matmul_", vec!["matmul_production"]),
        (
            "conv",
            "conv2d_",
            vec!["conv2d_production", "conv2d_production (dW)"],
        ),
    ] {
        let browser = Browser::start(Gpu::SwiftShader);
        browser.open(&format!("{base}/web/index.html?device=webgpu&ladder={op}"));
        let state = browser.wait_for_state(&["laddered"], Duration::from_secs(900));
        assert_eq!(state["phase"], "laddered", "page state: {state}");
        let report = &state["ladder"];
        eprintln!("{op} ladder in the page: {report}");
        let checks = report["checks"].as_array().unwrap();
        // Every rung file of shaders/ladder/ (the conv files hold a forward and a weight-
        // gradient rung, but the split-K file only the latter), then the production kernel.
        let files: Vec<String> = std::fs::read_dir(root().join("shaders/ladder"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .replace(".wgsl", "")
            })
            .filter(|name| name.starts_with(prefix))
            .collect();
        for f in &files {
            assert!(
                checks
                    .iter()
                    .any(|c| c["rung"].as_str().unwrap().starts_with(f.as_str())),
                "{f} is missing from {checks:?}"
            );
        }
        for p in &production {
            assert!(checks.iter().any(|c| c["rung"] == *p), "{p}: {checks:?}");
        }
        let adapter = &state["device"]["adapter"];
        for c in checks {
            let rung = c["rung"].as_str().unwrap();
            let lacks = (rung.contains("subgroup") && adapter["subgroup"] == false)
                || (rung.contains("f16") && adapter["shader_f16"] == false);
            match c["status"].as_str().unwrap() {
                "pass" => assert!(!lacks, "{rung} passed without its feature"),
                "unsupported" => {
                    assert!(lacks, "{rung} unsupported: {c}");
                    assert!(c["why"].as_str().unwrap().contains("lacks"), "{c}");
                }
                _ => panic!("{rung} is wrong in the browser: {c}"),
            }
        }
        // Each rung that passed has timing rows; its first (cheapest) shape has a rate, and
        // every later row has one or says why not.
        let timings = report["timings"].as_array().unwrap();
        for c in checks.iter().filter(|c| c["status"] == "pass") {
            let rows: Vec<&Value> = timings.iter().filter(|t| t["rung"] == c["rung"]).collect();
            assert!(!rows.is_empty(), "{} was not timed", c["rung"]);
            assert!(
                rows[0]["gflops"].as_f64().is_some_and(|g| g > 0.0),
                "{rows:?}"
            );
            for t in rows {
                assert!(
                    t["gflops"].as_f64().is_some() || t["note"].is_string(),
                    "{t}"
                );
            }
        }
    }
}
