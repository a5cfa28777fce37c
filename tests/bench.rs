//! `distill bench`: the report's JSON round-trips and validates; malformed and missing reports
//! are clear errors (library and CLI); `--compare` gives the expected table and a chart; the
//! PyTorch yardstick's output is parsed or refused; and the real `distill bench --quick` runs
//! on the CPU and gives a valid report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use distill::bench::compare::compare;
use distill::bench::machine::{AdapterDetails, Caches, Machine};
use distill::bench::timing::Timing;
use distill::bench::yardstick::{self, Outcome};
use distill::bench::{render_table, DeviceReport, Peak, Report, Row, Status, Unit};

fn machine() -> Machine {
    Machine {
        cpu_model: "Test CPU".into(),
        cpu_family: Some(25),
        cpu_model_number: Some(1),
        cpu_flags: vec!["avx2".into(), "fma".into()],
        logical_cpus: 2,
        threads: 2,
        simd_level: "avx2+fma".into(),
        simd_levels: vec!["scalar".into(), "avx2+fma".into()],
        caches: Caches {
            l1d_bytes: 32 << 10,
            l2_bytes: 512 << 10,
            l3_bytes: 32 << 20,
            source: "sysfs".into(),
        },
        gemm_blocking: "avx2+fma: tile 6×16".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        browser: None,
    }
}

fn device(id: &str, software: bool, flops: f64, bw: f64) -> DeviceReport {
    DeviceReport {
        id: id.into(),
        kind: if id == "cpu" { "cpu" } else { "software" }.into(),
        name: format!("{id} device"),
        software,
        status: Status::Ok,
        note: None,
        adapter: (id != "cpu").then(|| AdapterDetails {
            name: "llvmpipe".into(),
            vendor: "0x10005".into(),
            device_id: "0x0000".into(),
            driver: "llvmpipe".into(),
            driver_info: "Mesa".into(),
            backend: "Vulkan".into(),
            device_type: "software".into(),
            limits_used: BTreeMap::from([("max_buffer_size".to_string(), 1u64 << 31)]),
            features_used: vec!["TIMESTAMP_QUERY".into()],
            gemm_tiles: Some("matmul 64×64 (4×4 per invocation), conv 64×64 (4×4 per invocation); defaults (autotune off)".into()),
        }),
        peak_flops: Some(Peak::new(format!("{id} fma-chain"), flops)),
        peak_bandwidth: Some(Peak::new(format!("{id} stream copy"), bw)),
        cache_bandwidths: Vec::new(),
    }
}

fn row(dev: &str, group: &str, kernel: &str, shape: &str, unit: Unit, value: f64) -> Row {
    let mut r = Row::new(dev, group, kernel, shape, unit);
    r.value = Some(value);
    r.calls = Some(10);
    r.timing = if dev == "cpu" {
        Timing::Wall
    } else {
        Timing::GpuTimestamps
    };
    r
}

/// A small report of one device: a GEMM, a GB/s kernel, a training row, a latency row, and
/// one row that failed.
fn report(dev: DeviceReport, gemm: f64, relu: f64, train: f64, latency_ms: f64) -> Report {
    let id = dev.id.clone();
    let mut failed = Row::new(&id, "matmul", "matmul NN", "4096x4096x4096", Unit::Gflops);
    failed.error = Some("out of memory".into());
    let mut r = Report {
        schema_version: distill::bench::report::SCHEMA_VERSION,
        distill_version: "0.1.0".into(),
        git_commit: "abc1234".into(),
        date: "2026-12-01".into(),
        started_utc: "2026-12-01T12:00:00Z".into(),
        quick: true,
        seconds: 12.5,
        machine: machine(),
        load: None,
        devices: vec![dev],
        rows: vec![
            row(
                &id,
                "matmul",
                "matmul NN",
                "128x128x128",
                Unit::Gflops,
                gemm,
            ),
            row(&id, "elementwise", "relu", "65536", Unit::Gbps, relu),
            row(
                &id,
                "train",
                "student train b2",
                "1x28x28",
                Unit::ImagesPerSec,
                train,
            ),
            row(
                &id,
                "latency",
                "student latency b1",
                "1x28x28",
                Unit::Ms,
                latency_ms,
            ),
            failed,
        ],
    };
    r.fill_percentages();
    r
}

fn cpu_report() -> Report {
    report(device("cpu", false, 100.0, 20.0), 50.0, 10.0, 400.0, 0.5)
}

fn gpu_report() -> Report {
    report(device("gpu:0", true, 10.0, 2.0), 1.0, 0.5, 2.0, 10.0)
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_report_round_trips_and_validates() {
    let r = cpu_report();
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(r.rows[0].pct_of_peak, Some(50.0));
    assert_eq!(r.rows[0].peak.as_deref(), Some("cpu fma-chain"));
    assert_eq!(r.rows[1].pct_of_peak, Some(50.0));
    assert_eq!(r.rows[1].peak.as_deref(), Some("cpu stream copy"));
    assert_eq!(r.rows[2].pct_of_peak, None, "img/s rows have no peak");
    let back = Report::from_json(&r.to_json()).unwrap();
    assert_eq!(back, r);
    // A figure the clock could not measure becomes an error, and the report stays valid.
    let mut odd = cpu_report();
    odd.rows[1].value = Some(f64::INFINITY);
    odd.drop_unmeasurable();
    odd.fill_percentages();
    assert_eq!(odd.validate(), Ok(()));
    assert!(odd.rows[1]
        .error
        .as_deref()
        .unwrap()
        .contains("no measurable time"));
    assert_eq!(odd.rows[1].pct_of_peak, None);
    // Through a file, as users keep them.
    let dir = tmp();
    let path = dir.path().join("cpu.json");
    gpu_report().save(&path).unwrap();
    assert_eq!(Report::load(&path).unwrap(), gpu_report());
}

/// A GB/s row is read against the copy of the largest footprint no larger than its working
/// set (an upper bound on its bandwidth), the smallest copy when its data is smaller still,
/// and main memory when its working set is unknown (rows of older reports).
#[test]
fn gb_rows_are_read_against_the_level_their_data_lives_in() {
    let mut r = cpu_report();
    let copy = |label: &str, value: f64, footprint: u64| Peak {
        label: label.into(),
        value,
        footprint_bytes: Some(footprint),
    };
    let d = &mut r.devices[0];
    d.cache_bandwidths = vec![
        copy("L2 copy", 100.0, 1 << 20),
        copy("L3 copy", 40.0, 4 << 20),
    ];
    d.peak_bandwidth = Some(copy("cpu stream copy", 20.0, 64 << 20));
    let relu = r.rows[1].clone(); // 10 GB/s
    let cases = [
        (Some(256u64 << 10), "L2 copy", 10.0),
        (Some(1 << 20), "L2 copy", 10.0),
        (Some(2 << 20), "L2 copy", 10.0),
        (Some(8 << 20), "L3 copy", 25.0),
        (Some(64 << 20), "cpu stream copy", 50.0),
        (Some(1 << 30), "cpu stream copy", 50.0),
        (None, "cpu stream copy", 50.0),
    ];
    r.rows = cases
        .iter()
        .enumerate()
        .map(|(i, (ws, _, _))| {
            let mut x = relu.clone();
            x.shape = format!("case {i}");
            x.working_set_bytes = *ws;
            x
        })
        .collect();
    r.fill_percentages();
    for (x, (ws, label, pct)) in r.rows.iter().zip(cases) {
        assert_eq!(x.peak.as_deref(), Some(label), "working set {ws:?}");
        assert_eq!(x.pct_of_peak, Some(pct), "working set {ws:?}");
    }
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(Report::from_json(&r.to_json()).unwrap(), r);
    // A row read against another copy than its working set picks is refused.
    let wrong = mutated(&r, |v| {
        v["rows"][3]["peak"] = "cpu stream copy".into();
        v["rows"][3]["pct_of_peak"] = 50.0.into();
    });
    let e = Report::from_json(&wrong).unwrap_err();
    assert!(e.contains("the device's is `L3 copy`"), "{e}");
    // Without footprints (older reports, GPUs) every GB/s row is read against main memory.
    let mut old = cpu_report();
    old.rows[1].working_set_bytes = Some(1 << 10);
    old.fill_percentages();
    assert_eq!(old.rows[1].peak.as_deref(), Some("cpu stream copy"));
}

/// A GFLOP/s row whose bytes are known is also read against the memory arm of its roofline:
/// the GB/s its buffers moved at over the copy its working set picks, as a GB/s row would be;
/// a report that misstates it, or gives a GB/s row a second rate, is refused.
#[test]
fn gflops_rows_are_also_read_against_their_memory_roofline() {
    let mut r = cpu_report();
    let d = &mut r.devices[0];
    d.cache_bandwidths = vec![Peak {
        label: "L2 copy".into(),
        value: 100.0,
        footprint_bytes: Some(1 << 20),
    }];
    d.peak_bandwidth = Some(Peak {
        label: "cpu stream copy".into(),
        value: 20.0,
        footprint_bytes: Some(64 << 20),
    });
    let mut conv = row("cpu", "conv2d", "conv2d fwd", "thin", Unit::Gflops, 40.0);
    conv.working_set_bytes = Some(100 << 20);
    conv.gbps = Some(16.0);
    let mut small = conv.clone();
    small.shape = "small".into();
    small.working_set_bytes = Some(2 << 20);
    small.gbps = Some(25.0);
    r.rows = vec![conv, small];
    r.fill_percentages();
    let (big, small) = (&r.rows[0], &r.rows[1]);
    assert_eq!(big.pct_of_peak, Some(40.0), "still against the f32 peak");
    assert_eq!(big.pct_of_bandwidth, Some(80.0));
    assert_eq!(big.bandwidth_peak.as_deref(), Some("cpu stream copy"));
    assert_eq!(small.pct_of_bandwidth, Some(25.0));
    assert_eq!(r.validate(), Ok(()));
    assert_eq!(Report::from_json(&r.to_json()).unwrap(), r);
    let table = render_table(&r);
    assert!(
        table.contains("16.0 GB/s = 80.0% of cpu stream copy"),
        "{table}"
    );
    let cases: Vec<(String, &str)> = vec![
        (
            mutated(&r, |v| v["rows"][0]["pct_of_bandwidth"] = 50.0.into()),
            "pct_of_bandwidth 50",
        ),
        (
            mutated(&r, |v| v["rows"][0]["bandwidth_peak"] = "L2 copy".into()),
            "the device's is `cpu stream copy`",
        ),
        (
            mutated(&r, |v| {
                v["rows"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("bandwidth_peak");
            }),
            "pct_of_bandwidth and its peak must be given together",
        ),
        (
            mutated(&r, |v| v["rows"][0]["gbps"] = (-1.0).into()),
            "gbps -1 is not a positive number",
        ),
        (
            mutated(&r, |v| {
                v["rows"][0]["unit"] = "GB/s".into();
                v["rows"][0]["peak"] = "cpu stream copy".into();
                v["rows"][0]["pct_of_peak"] = 200.0.into();
            }),
            "gbps on a GB/s row",
        ),
    ];
    for (text, want) in cases {
        let e = Report::from_json(&text).unwrap_err();
        assert!(e.contains(want), "want `{want}` in: {e}");
    }
    // A figure the clock could not measure loses its rate with its value.
    let mut odd = r.clone();
    odd.rows[0].value = Some(0.0);
    odd.drop_unmeasurable();
    odd.fill_percentages();
    assert_eq!(odd.rows[0].gbps, None);
    assert_eq!(odd.rows[0].pct_of_bandwidth, None);
    assert_eq!(odd.validate(), Ok(()));
}

/// Reports written before the load, the cache levels, the working sets and the CPU flags were
/// recorded still load, and read their GB/s rows against main memory as they did.
#[test]
fn reports_of_the_previous_format_still_load() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/bench");
    for name in ["cpu-quick.json", "lavapipe-quick.json"] {
        let r = Report::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(r.load.is_none() && r.machine.cpu_flags.is_empty(), "{name}");
        assert!(r.devices.iter().all(|d| d.cache_bandwidths.is_empty()));
        let gb = r
            .rows
            .iter()
            .find(|x| x.unit == Unit::Gbps && x.group != "bandwidth")
            .unwrap();
        assert!(
            gb.peak.as_deref().unwrap().contains("stream copy"),
            "{gb:?}"
        );
    }
}

/// `r` as JSON, changed by `f`.
fn mutated(r: &Report, f: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut v = serde_json::to_value(r).unwrap();
    f(&mut v);
    v.to_string()
}

#[test]
fn malformed_reports_are_clear_errors() {
    let r = cpu_report();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "not JSON"),
        ("[1, 2]".into(), "no schema_version"),
        (
            mutated(&r, |v| v["schema_version"] = 99.into()),
            "schema_version 99",
        ),
        (
            mutated(&r, |v| {
                v.as_object_mut().unwrap().remove("machine");
            }),
            "missing field `machine`",
        ),
        (
            mutated(&r, |v| v["rows"][0]["unit"] = "furlongs".into()),
            "unknown variant `furlongs`",
        ),
        (
            mutated(&r, |v| v["rows"][0]["device"] = "gpu:7".into()),
            "no device `gpu:7`",
        ),
        (
            mutated(&r, |v| v["rows"][0]["pct_of_peak"] = 12.0.into()),
            "pct_of_peak 12",
        ),
        (
            mutated(&r, |v| v["rows"][0]["error"] = "boom".into()),
            "both a value and an error",
        ),
        (
            mutated(&r, |v| v["rows"][1]["value"] = (-1.0).into()),
            "not a positive number",
        ),
        (
            mutated(&r, |v| v["date"] = "1 Dec 2026".into()),
            "not YYYY-MM-DD",
        ),
        (
            mutated(&r, |v| v["devices"][0]["id"] = "tpu".into()),
            "neither `cpu` nor `gpu:N`",
        ),
        (
            mutated(&r, |v| v["devices"][0]["status"] = "skipped".into()),
            "without a note",
        ),
    ];
    for (text, want) in cases {
        let e = Report::from_json(&text).unwrap_err();
        assert!(e.contains(want), "want `{want}` in: {e}");
    }
    // A file: the error names it.
    let dir = tmp();
    let bad = write(dir.path(), "bad.json", "{\"schema_version\": 1}");
    let e = Report::load(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.json") && e.contains("missing field"), "{e}");
    let e = Report::load(&dir.path().join("missing.json"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.json"), "{e}");
}

#[test]
fn compare_lines_up_two_reports() {
    let cmp = compare(&[
        ("cpu.json".into(), cpu_report()),
        ("lavapipe.json".into(), gpu_report()),
    ])
    .unwrap();
    assert_eq!(cmp.columns.len(), 2);
    let md = cmp.markdown();
    let expected_head = "\
| kernel | shape | unit | A: cpu | B: gpu:0 | B / A |
|---|---|---|---:|---:|---:|
| f32 FMA peak | reference peak | GFLOP/s | 100.0 | 10.0 | 0.100× |
| memory bandwidth | reference peak | GB/s | 20.0 | 2.00 | 0.100× |
| matmul NN | 128x128x128 | GFLOP/s | 50.0 (50%) | 1.00 (10%) | 0.0200× |
| relu | 65536 | GB/s | 10.0 (50%) | 0.500 (25%) | 0.0500× |
| student train b2 | 1x28x28 | img/s | 400.0 | 2.00 | 0.00500× |
| student latency b1 | 1x28x28 | ms | 0.500 | 10.0 | 0.0500× |
";
    assert!(md.starts_with(expected_head), "{md}");
    assert!(md.contains("**A**: `cpu.json` cpu"), "{md}");
    assert!(md.contains("cpu fma-chain = 100.0 GFLOP/s"), "{md}");
    assert!(md.contains("gpu:0 stream copy = 2.00 GB/s"), "{md}");
    // The failed row has no figure, so no line.
    assert!(!md.contains("4096x4096"), "{md}");

    let dir = tmp();
    let png = dir.path().join("cmp.png");
    cmp.chart(&png).unwrap();
    let img = image::open(&png).unwrap();
    assert!(img.width() >= 800 && img.height() > 100);
}

#[test]
fn the_table_names_every_peak() {
    let t = render_table(&cpu_report());
    assert!(
        t.contains("GFLOP/s rows vs cpu fma-chain = 100.0 GFLOP/s"),
        "{t}"
    );
    assert!(
        t.contains("GB/s rows vs cpu stream copy = 20.0 GB/s"),
        "{t}"
    );
    assert!(t.contains("matmul NN") && t.contains("50.0%"), "{t}");
    assert!(t.contains("out of memory"), "{t}");
}

fn distill(args: &[&str]) -> Output {
    let cache = tmp();
    distill_with_cache(args, cache.path())
}

/// `distill ARGS` with its cache directory (where `distill bench` keeps reference peaks) in
/// `cache`, never the user's.
fn distill_with_cache(args: &[&str], cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .env("DISTILL_CACHE_DIR", cache)
        .output()
        .expect("run distill")
}

#[test]
fn the_cli_compares_and_refuses_bad_reports() {
    let dir = tmp();
    let a = dir.path().join("a.json");
    let b = dir.path().join("b.json");
    cpu_report().save(&a).unwrap();
    gpu_report().save(&b).unwrap();
    let png = dir.path().join("c.png");
    let (a, b, png) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        png.to_str().unwrap(),
    );
    let out = distill(&["bench", "--compare", a, b, "--chart", png]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("| matmul NN | 128x128x128 | GFLOP/s | 50.0 (50%) |"),
        "{md}"
    );
    assert!(Path::new(png).is_file());

    let bad = write(
        dir.path(),
        "bad.json",
        "{\"schema_version\": 1, \"rows\": 3}",
    );
    for (file, want) in [
        (bad.to_str().unwrap(), "bad.json"),
        ("/no/such/report.json", "/no/such/report.json"),
    ] {
        let out = distill(&["bench", "--compare", a, file]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(want) && err.contains("error:"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = distill(&["bench", "--device", "tpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected all, cpu, gpu or gpu:N"));
}

/// A fake interpreter: answers `-c import torch` with `torch_exit`, then prints `stdout` and
/// exits with `exit`.
#[cfg(unix)]
fn fake_python(dir: &Path, torch_exit: i32, stdout: &str, exit: i32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let text = format!(
        "#!/bin/sh\nif [ \"$1\" = \"-c\" ]; then exit {torch_exit}; fi\ncat <<'JSON'\n{stdout}\nJSON\necho 'a message' >&2\nexit {exit}\n"
    );
    let p = write(
        dir,
        &format!("python-{torch_exit}-{exit}-{}", stdout.len()),
        &text,
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[cfg(unix)]
#[test]
fn the_yardstick_output_is_parsed_or_refused() {
    let dir = tmp();
    let script = write(
        dir.path(),
        "yardstick.py",
        "# the fake interpreter ignores it\n",
    );
    let good = r#"{"torch_version": "2.15.0", "threads": 2, "rows": [{"name": "teacher train b128", "img_per_s": 675.0, "iters": 3}, {"name": "student train b128", "img_per_s": 1864.0}]}"#;
    let py = fake_python(dir.path(), 0, good, 0);
    match yardstick::run(&py, &script, 2, 0.1).unwrap() {
        Outcome::Ran(y) => {
            assert_eq!(y.torch_version, "2.15.0");
            assert_eq!(y.rows.len(), 2);
            assert_eq!(y.rows[0].img_per_s, 675.0);
            let mut mine = Row::new("cpu", "train", "teacher train b128", "", Unit::ImagesPerSec);
            mine.value = Some(1350.0);
            let side = yardstick::side_by_side(&[mine], &y);
            assert!(
                side.contains("teacher train b128") && side.contains("2.00x"),
                "{side}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Malformed output, a failing script, a row without a positive rate.
    for (stdout, exit, want) in [
        ("torch says hello", 0, "malformed output"),
        (
            "{\"torch_version\": \"2\", \"threads\": 2}",
            0,
            "malformed output",
        ),
        (good, 1, "a message"),
        (
            r#"{"torch_version": "2", "threads": 2, "rows": [{"name": "x", "img_per_s": 0.0}]}"#,
            0,
            "img_per_s is 0",
        ),
    ] {
        let py = fake_python(dir.path(), 0, stdout, exit);
        let e = yardstick::run(&py, &script, 2, 0.1)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "want `{want}` in: {e}");
    }
    // No torch, no interpreter, no script: skipped, with the reason.
    let no_torch = fake_python(dir.path(), 1, good, 0);
    let skipped = |o| matches!(o, Outcome::Skipped(_));
    assert!(skipped(yardstick::run(&no_torch, &script, 2, 0.1).unwrap()));
    let nowhere = dir.path().join("no-such-python");
    assert!(skipped(yardstick::run(&nowhere, &script, 2, 0.1).unwrap()));
    let no_script = dir.path().join("missing.py");
    assert!(skipped(yardstick::run(&py, &no_script, 2, 0.1).unwrap()));
}

/// The real thing: `distill bench --quick --device cpu` gives a valid report whose every
/// GFLOP/s and GB/s row names the CPU's peaks, and which compares with a GPU report.
#[test]
fn bench_quick_on_the_cpu_writes_a_valid_report() {
    let dir = tmp();
    let out_path = dir.path().join("cpu.json");
    let record_path = dir.path().join("record.json");
    let cache = dir.path().join("cache");
    let out = distill_with_cache(
        &[
            "bench",
            "--quick",
            "--device",
            "cpu",
            "--json",
            "--out",
            out_path.to_str().unwrap(),
            "--record",
            record_path.to_str().unwrap(),
        ],
        &cache,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = Report::load(&out_path).unwrap();
    let printed = Report::from_json(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(printed, r, "--json prints the report --out writes");
    assert!(r.quick);
    assert_eq!(r.devices.len(), 1);
    let cpu = &r.devices[0];
    let flops = cpu.peak_flops.as_ref().expect("a measured f32 peak");
    assert!(cpu.peak_bandwidth.is_some());
    // The reference is the widest level's peak.
    let widest = r.machine.simd_levels.last().unwrap();
    assert!(
        flops.label.contains(widest.as_str()),
        "{} vs {widest}",
        flops.label
    );
    for group in [
        "peak",
        "bandwidth",
        "matmul",
        "conv2d",
        "pool",
        "softmax",
        "elementwise",
    ] {
        assert!(r.rows.iter().any(|x| x.group == group), "no {group} rows");
    }
    for name in [
        "teacher train b128",
        "student kd b128",
        "student infer b256",
    ] {
        let row = r.rows.iter().find(|x| x.kernel == name).expect(name);
        assert!(row.value.is_some_and(|v| v > 0.0), "{row:?}");
    }
    for x in &r.rows {
        assert!(x.error.is_none(), "{x:?}");
        if matches!(x.unit, Unit::Gflops | Unit::Gbps) {
            assert!(x.pct_of_peak.is_some() && x.peak.is_some(), "{x:?}");
        }
    }
    // The L2 copy at least, each read against itself, and every GB/s kernel row with its
    // working set; the small softmax rows are read against the smallest copy.
    assert!(!cpu.cache_bandwidths.is_empty());
    let copies: Vec<&Row> = r.rows.iter().filter(|x| x.kernel == "cache copy").collect();
    assert_eq!(copies.len(), cpu.cache_bandwidths.len());
    for (level, row) in cpu.cache_bandwidths.iter().zip(copies) {
        assert_eq!(level.footprint_bytes, row.working_set_bytes, "{row:?}");
        assert_eq!(row.peak.as_deref(), Some(level.label.as_str()));
    }
    // Every conv row moves the bytes of its contract's buffers: the teacher's conv1
    // forward reads x, w and the bias and writes y (b128, 1→64, 28×28 → 28×28), and the
    // rate of those bytes is read against the copy its working set picks.
    let conv = r
        .rows
        .iter()
        .find(|x| x.kernel == "conv2d fwd" && x.shape.starts_with("teacher conv1"))
        .unwrap();
    let bytes = 4 * (128 * 784 + 64 * 9 + 64 + 128 * 64 * 784);
    assert_eq!(conv.working_set_bytes, Some(bytes));
    let bandwidth = cpu.bandwidth_for(conv.working_set_bytes).unwrap();
    assert_eq!(
        conv.bandwidth_peak.as_deref(),
        Some(bandwidth.label.as_str())
    );
    let rate = conv.gbps.unwrap();
    let conv_flops = 2.0 * 9.0 * (128 * 64 * 784) as f64;
    let seconds = conv_flops / (conv.value.unwrap() * 1e9);
    assert!(
        (rate - bytes as f64 / seconds / 1e9).abs() < 1e-9 * rate,
        "{conv:?}"
    );
    for x in r
        .rows
        .iter()
        .filter(|x| x.unit == Unit::Gflops && x.group != "peak")
    {
        assert!(x.gbps.is_some() && x.pct_of_bandwidth.is_some(), "{x:?}");
    }
    let small = r
        .rows
        .iter()
        .find(|x| x.kernel == "softmax" && x.shape == "128x10")
        .unwrap();
    assert_eq!(small.working_set_bytes, Some(2 * 4 * 1280));
    assert_eq!(
        small.peak.as_deref(),
        Some(cpu.cache_bandwidths[0].label.as_str())
    );
    // The load average around the run, on Linux.
    let load = r.load.as_ref().expect("the load window");
    assert_eq!(load.before.is_some(), cfg!(target_os = "linux"));
    assert_eq!(load.logical_cpus, r.machine.logical_cpus);
    // Kept as this machine's reference peaks, unless the machine was busy (and then it says so).
    let stderr = String::from_utf8_lossy(&out.stderr);
    let kept: Vec<PathBuf> = std::fs::read_dir(cache.join("bench"))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    if load.busy() == Some(true) {
        assert!(kept.is_empty() && stderr.contains("not kept"), "{stderr}");
        assert!(stderr.contains("warning: the machine is busy"), "{stderr}");
    } else {
        assert_eq!(kept.len(), 1, "{stderr}");
        assert_eq!(Report::load(&kept[0]).unwrap(), r);
        let name = kept[0].file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("cpu-") && name.ends_with(".json"),
            "{name}"
        );
    }
    // The record: the report's figures, this command, the same load window.
    let rec = distill::bench::record::Record::load(&record_path).unwrap();
    assert!(rec
        .command
        .starts_with("distill bench --quick --device cpu --json --out "));
    assert_eq!(rec.load.window.as_ref(), Some(load));
    let peak = rec.figure("cpu f32 peak").expect("the f32 peak");
    assert_eq!(peak.value, flops.value);
    assert_eq!(peak.unit, "GFLOP/s");
    let gemm = r
        .rows
        .iter()
        .find(|x| x.kernel == "matmul NN" && x.shape == "1024x1024x1024")
        .unwrap();
    let fig = rec
        .figure("cpu matmul NN 1024x1024x1024 % of peak")
        .unwrap();
    assert_eq!(Some(fig.value), gemm.pct_of_peak);
    let roofline = rec
        .figure("cpu conv2d fwd teacher conv1: b128 1->64 28x28 k3 p1 % of memory roofline")
        .unwrap();
    assert_eq!(Some(roofline.value), conv.pct_of_bandwidth);
    assert_eq!(
        rec.machine.cpu_model.as_deref(),
        Some(r.machine.cpu_model.as_str())
    );
    assert_eq!(rec.machine.logical_cpus, Some(r.machine.logical_cpus));

    let cmp = compare(&[("cpu.json".into(), r), ("gpu.json".into(), gpu_report())]).unwrap();
    let md = cmp.markdown();
    assert!(md.contains("| matmul NN | 128x128x128 | GFLOP/s |"), "{md}");
}

#[test]
fn the_cli_runs_the_ladder_and_refuses_an_unknown_one() {
    let out = distill(&[
        "bench",
        "--ladder",
        "matmul",
        "--check-only",
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = String::from_utf8_lossy(&out.stdout);
    for rung in ["gemm_01_naive", "gemm_05_avx2", "gemm_production"] {
        assert!(md.contains(&format!("`{rung}`: ")), "{md}");
    }
    assert!(!md.contains("WRONG"), "{md}");

    let out = distill(&["bench", "--ladder", "fft"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown ladder 'fft'"), "{err}");
}
