//! Checkpoints: safetensors round trips, byte layout, atomic writes, corrupt files, name/shape
//! checks, and (when Python's `safetensors` is installed) cross-reading with the reference reader.

use std::collections::BTreeMap;
use std::path::Path;

use distill::checkpoint::{check_matches, load, save, Checkpoint, NamedTensor, StoreDtype};
use distill::fs::write_atomic;
use distill::Error;

fn tensor(name: &str, shape: &[usize], seed: u32) -> NamedTensor {
    let n: usize = shape.iter().product();
    // Deterministic values of varied magnitude and sign, including exact zeros.
    let data = (0..n)
        .map(|i| {
            let x =
                (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) as f32 / u32::MAX as f32;
            (x - 0.5) * 8.0
        })
        .collect();
    NamedTensor {
        name: name.to_string(),
        shape: shape.to_vec(),
        data,
    }
}

fn student_like() -> Vec<NamedTensor> {
    vec![
        tensor("conv1.weight", &[32, 1, 3, 3], 1),
        tensor("conv1.bias", &[32], 2),
        tensor("conv2.weight", &[64, 32, 3, 3], 3),
        tensor("conv2.bias", &[64], 4),
        tensor("fc1.weight", &[500, 64 * 7 * 7], 5),
        tensor("fc1.bias", &[500], 6),
        tensor("fc2.weight", &[10, 500], 7),
        tensor("fc2.bias", &[10], 8),
    ]
}

fn meta() -> BTreeMap<String, String> {
    [
        ("arch", "student"),
        ("in_channels", "1"),
        ("height", "28"),
        ("width", "28"),
        ("num_classes", "10"),
        ("class_names", r#"["T-shirt/top","Trouser","Pullover"]"#),
        ("note", "unicode ok: α·T² \"quoted\""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn expect_ckpt_err<T: std::fmt::Debug>(r: distill::Result<T>, needle: &str) -> String {
    match r {
        Err(Error::Checkpoint(msg)) => {
            assert!(
                msg.to_lowercase().contains(&needle.to_lowercase()),
                "error `{msg}` should mention `{needle}`"
            );
            msg
        }
        other => panic!("expected Error::Checkpoint mentioning `{needle}`, got {other:?}"),
    }
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn f32_round_trip_is_exact_and_keeps_order_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("student.safetensors");
    let mut tensors = student_like();
    tensors[1].data[0] = f32::MIN_POSITIVE / 4.0; // subnormal
    tensors[1].data[1] = -0.0;
    tensors.push(NamedTensor {
        name: "scalar".into(),
        shape: vec![],
        data: vec![std::f32::consts::PI],
    });
    save(&path, &tensors, &meta(), StoreDtype::F32).unwrap();
    let ck = load(&path).unwrap();
    assert_eq!(ck.dtype, StoreDtype::F32);
    assert_eq!(ck.metadata, meta());
    assert_eq!(ck.tensors.len(), tensors.len());
    for (a, b) in tensors.iter().zip(&ck.tensors) {
        assert_eq!(a.name, b.name, "file order is save order");
        assert_eq!(a.shape, b.shape);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&a.data),
            bits(&b.data),
            "{} must round-trip bit-exactly",
            a.name
        );
    }
    assert!(ck.get("fc2.bias").is_some() && ck.get("nope").is_none());
    // The size is what the format predicts: header + 4 bytes per value.
    let values: usize = tensors.iter().map(|t| t.data.len()).sum();
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(len > values * 4 && len < values * 4 + 4096);
}

#[test]
fn f16_round_trip_within_half_precision_and_half_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let p32 = dir.path().join("a32.safetensors");
    let p16 = dir.path().join("a16.safetensors");
    let mut tensors = student_like();
    tensors[0].data[..4].copy_from_slice(&[65504.0, -65504.0, 1e-8, 0.1]);
    save(&p32, &tensors, &meta(), StoreDtype::F32).unwrap();
    save(&p16, &tensors, &meta(), StoreDtype::F16).unwrap();
    let ck = load(&p16).unwrap();
    assert_eq!(ck.dtype, StoreDtype::F16);
    assert_eq!(ck.metadata, meta());
    for (a, b) in tensors.iter().zip(&ck.tensors) {
        assert_eq!((&a.name, &a.shape), (&b.name, &b.shape));
        for (&x, &y) in a.data.iter().zip(&b.data) {
            // Round to nearest: relative error <= 2^-11 for normals, absolute 2^-25 near zero.
            let tol = (x.abs() * 2f32.powi(-11)).max(2f32.powi(-25));
            assert!((x - y).abs() <= tol, "{}: {x} -> {y}", a.name);
            assert_eq!(y, half::f16::from_f32(x).to_f32(), "round to nearest");
        }
    }
    let (s32, s16) = (
        std::fs::metadata(&p32).unwrap().len() as f64,
        std::fs::metadata(&p16).unwrap().len() as f64,
    );
    assert!(
        (s16 / s32 - 0.5).abs() < 0.01,
        "f16 file {s16} vs f32 {s32}"
    );
}

#[test]
fn f16_overflow_is_an_error_not_infinity() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let t = NamedTensor {
        name: "w".into(),
        shape: vec![2],
        data: vec![1.0, 1e6],
    };
    expect_ckpt_err(
        save(
            &path,
            std::slice::from_ref(&t),
            &BTreeMap::new(),
            StoreDtype::F16,
        ),
        "f16",
    );
    assert!(!path.exists());
    save(&path, &[t], &BTreeMap::new(), StoreDtype::F32).unwrap();
}

#[test]
fn byte_layout_follows_the_safetensors_spec() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, name, size) in [(StoreDtype::F32, "F32", 4), (StoreDtype::F16, "F16", 2)] {
        let path = dir.path().join(format!("{name}.safetensors"));
        let tensors = vec![
            NamedTensor {
                name: "fc.weight".into(),
                shape: vec![2, 3],
                data: vec![1.0, 2.0, 3.0, 4.0, 5.0, -0.5],
            },
            NamedTensor {
                name: "fc.bias".into(),
                shape: vec![2],
                data: vec![0.25, -1.0],
            },
        ];
        save(&path, &tensors, &meta(), dtype).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "header padded to 8 bytes");
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["arch"], "student");
        assert_eq!(header["__metadata__"]["height"], "28");
        let w = &header["fc.weight"];
        assert_eq!(w["dtype"], name);
        assert_eq!(w["shape"], serde_json::json!([2, 3]));
        assert_eq!(w["data_offsets"], serde_json::json!([0, 6 * size]));
        let b = &header["fc.bias"];
        assert_eq!(b["dtype"], name);
        assert_eq!(b["shape"], serde_json::json!([2]));
        assert_eq!(b["data_offsets"], serde_json::json!([6 * size, 8 * size]));
        assert_eq!(bytes.len(), 8 + n + 8 * size);
        // Little-endian elements, row-major.
        let data = &bytes[8 + n..];
        match dtype {
            StoreDtype::F32 => {
                assert_eq!(&data[..4], &1.0f32.to_le_bytes());
                assert_eq!(&data[20..24], &(-0.5f32).to_le_bytes());
            }
            StoreDtype::F16 => {
                assert_eq!(&data[..2], &half::f16::from_f32(1.0).to_le_bytes());
                assert_eq!(&data[10..12], &half::f16::from_f32(-0.5).to_le_bytes());
            }
        }
        // The reference Rust implementation reads it too.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let v = st.tensor("fc.bias").unwrap();
        assert_eq!(v.shape(), &[2]);
        let (_, m) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        assert_eq!(m.metadata().as_ref().unwrap()["arch"], "student");
        // Same tensors, same bytes.
        let again = dir.path().join("again.safetensors");
        save(&again, &tensors, &meta(), dtype).unwrap();
        assert_eq!(
            std::fs::read(&again).unwrap(),
            bytes,
            "deterministic output"
        );
    }
}

#[test]
fn reads_files_written_by_the_reference_implementation_including_bf16() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let f32s: Vec<u8> = [1.5f32, -2.0, 3.25]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let bf16s: Vec<u8> = [0.5f32, -7.0]
        .iter()
        .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
        .collect();
    let f16s: Vec<u8> = [0.125f32]
        .iter()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    let views = vec![
        ("a", TensorView::new(Dtype::F32, vec![3], &f32s).unwrap()),
        (
            "b",
            TensorView::new(Dtype::BF16, vec![1, 2], &bf16s).unwrap(),
        ),
        ("c", TensorView::new(Dtype::F16, vec![1], &f16s).unwrap()),
    ];
    let info = Some([("k".to_string(), "v".to_string())].into_iter().collect());
    let path = dir.path().join("ref.safetensors");
    std::fs::write(&path, safetensors::serialize(views, &info).unwrap()).unwrap();
    let ck = load(&path).unwrap();
    assert_eq!(ck.get("a").unwrap().data, vec![1.5, -2.0, 3.25]);
    assert_eq!(ck.get("b").unwrap().data, vec![0.5, -7.0]);
    assert_eq!(ck.get("b").unwrap().shape, vec![1, 2]);
    assert_eq!(ck.get("c").unwrap().data, vec![0.125]);
    assert_eq!(ck.metadata["k"], "v");
    assert_eq!(ck.dtype, StoreDtype::F32, "mixed file reports F32");

    // All-bf16 files count as half precision.
    let views = vec![("b", TensorView::new(Dtype::BF16, vec![2], &bf16s).unwrap())];
    std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
    let ck = load(&path).unwrap();
    assert_eq!(ck.dtype, StoreDtype::F16);
    assert!(ck.metadata.is_empty());
}

#[test]
fn unsupported_dtype_is_named() {
    use safetensors::tensor::{Dtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let raw = vec![0u8; 16];
    let views = vec![("ids", TensorView::new(Dtype::I64, vec![2], &raw).unwrap())];
    let path = dir.path().join("i64.safetensors");
    std::fs::write(&path, safetensors::serialize(views, &None).unwrap()).unwrap();
    let msg = expect_ckpt_err(load(&path), "I64");
    assert!(
        msg.contains("ids") && msg.contains("i64.safetensors"),
        "{msg}"
    );
}

#[test]
fn invalid_tensors_are_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.safetensors");
    let m = BTreeMap::new();
    let t = |name: &str, shape: &[usize], n: usize| NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data: vec![0.0; n],
    };
    expect_ckpt_err(
        save(&path, &[t("w", &[2, 3], 5)], &m, StoreDtype::F32),
        "6 elements",
    );
    expect_ckpt_err(
        save(&path, &[t("", &[1], 1)], &m, StoreDtype::F32),
        "empty name",
    );
    expect_ckpt_err(
        save(
            &path,
            &[t("w", &[1], 1), t("w", &[1], 1)],
            &m,
            StoreDtype::F32,
        ),
        "twice",
    );
    expect_ckpt_err(
        save(&path, &[t("__metadata__", &[1], 1)], &m, StoreDtype::F32),
        "reserved",
    );
    expect_ckpt_err(
        save(&path, &[t("w", &[usize::MAX, 2], 0)], &m, StoreDtype::F32),
        "too large",
    );
    assert!(dir_entries(dir.path()).is_empty(), "nothing written");
    // Zero-sized tensors and an empty checkpoint are valid.
    save(&path, &[t("z", &[0, 3], 0)], &m, StoreDtype::F16).unwrap();
    assert_eq!(load(&path).unwrap().tensors[0].shape, vec![0, 3]);
    save(&path, &[], &m, StoreDtype::F32).unwrap();
    assert!(load(&path).unwrap().tensors.is_empty());
}

#[test]
fn failed_save_leaves_the_previous_file_intact_and_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save(&path, &student_like(), &meta(), StoreDtype::F32).unwrap();
    let before = std::fs::read(&path).unwrap();

    // Invalid tensors: rejected, the old file stays.
    let bad = vec![NamedTensor {
        name: "w".into(),
        shape: vec![4],
        data: vec![1.0],
    }];
    assert!(save(&path, &bad, &meta(), StoreDtype::F32).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(dir_entries(dir.path()), vec!["model.safetensors"]);

    // A failure after the temp file exists: the target is a directory, so the rename fails.
    let target_dir = dir.path().join("occupied");
    std::fs::create_dir(&target_dir).unwrap();
    std::fs::write(target_dir.join("keep"), b"x").unwrap();
    let err = write_atomic(&target_dir, b"new bytes").unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(
        dir_entries(dir.path()),
        vec!["model.safetensors", "occupied"]
    );
    assert_eq!(dir_entries(&target_dir), vec!["keep"]);

    // A missing directory is a clear I/O error naming the path.
    let err = write_atomic(&dir.path().join("no/such/dir/f.bin"), b"x").unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");

    // A successful overwrite replaces the file and leaves nothing else behind.
    write_atomic(&path, b"replaced").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"replaced");
    assert_eq!(
        dir_entries(dir.path()),
        vec!["model.safetensors", "occupied"]
    );
}

#[test]
fn concurrent_atomic_writes_never_expose_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.bin");
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let path = &path;
            s.spawn(move || {
                for _ in 0..10 {
                    write_atomic(path, &vec![i; 100_000]).unwrap();
                }
            });
        }
    });
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 100_000);
    assert!(
        bytes.iter().all(|&b| b == bytes[0]),
        "one writer's bytes, whole"
    );
    assert_eq!(dir_entries(dir.path()), vec!["shared.bin"]);
}

#[test]
fn corrupt_files_are_checkpoint_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let good_path = dir.path().join("good.safetensors");
    let tensors = vec![tensor("a", &[3, 5], 1), tensor("b", &[7], 2)];
    save(&good_path, &tensors, &meta(), StoreDtype::F16).unwrap();
    let good = std::fs::read(&good_path).unwrap();
    let n = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let path = dir.path().join("bad.safetensors");
    let check = |bytes: &[u8], needle: &str| {
        std::fs::write(&path, bytes).unwrap();
        let msg = expect_ckpt_err(load(&path), needle);
        assert!(
            msg.contains("bad.safetensors"),
            "error names the file: {msg}"
        );
    };

    // Truncated at many offsets: inside the length, inside the header, inside the data.
    for cut in [
        0,
        1,
        7,
        8,
        9,
        n / 2,
        8 + n - 1,
        8 + n,
        8 + n + 1,
        good.len() - 1,
    ] {
        check(&good[..cut], "");
    }
    check(&good[..4], "not a safetensors file");
    check(&good[..good.len() - 1], "truncated");
    // Trailing garbage.
    let mut longer = good.clone();
    longer.extend_from_slice(b"xx");
    check(&longer, "trailing");
    // Garbage header lengths.
    for len in [u64::MAX, 1 << 40, (good.len() as u64) * 2, 0, 3] {
        let mut b = good.clone();
        b[..8].copy_from_slice(&len.to_le_bytes());
        check(&b, "");
    }
    // Not JSON / not UTF-8 / not an object.
    let mut b = good.clone();
    b[8] = b'[';
    check(&b, "JSON");
    let mut b = good.clone();
    b[9] = 0xff;
    check(&b, "UTF-8");
    let framed = |header: &str| {
        let mut b = (header.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(&[0u8; 8]);
        b
    };
    check(&framed("[1,2]"), "not a JSON object");
    check(
        &framed(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#),
        "does not match",
    );
    check(
        &framed(r#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#),
        "shape",
    );
    check(
        &framed(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#),
        "data_offsets",
    );
    check(
        &framed(r#"{"a":{"dtype":"F32","shape":[2]}}"#),
        "data_offsets",
    );
    check(
        &framed(r#"{"a":{"shape":[2],"data_offsets":[0,8]}}"#),
        "dtype",
    );
    check(
        &framed(r#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#),
        "Q4",
    );
    check(
        &framed(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#),
        "contiguous",
    );
    check(
        &framed(
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}}"#,
        ),
        "shape",
    );
    check(
        &framed(r#"{"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#),
        "metadata",
    );
    check(
        &framed(r#"{"__metadata__":[],"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#),
        "metadata",
    );
    check(&framed(r#"{"a":7}"#), "not a JSON object");

    // Random bytes and random single-byte flips in the header: an error or (for a flip that
    // keeps the header meaningful) a successful load, but never a panic.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in [5usize, 64, 1000, 10_000] {
        let b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        check(&b, "");
    }
    for _ in 0..300 {
        let mut b = good.clone();
        let i = (next() as usize) % (8 + n);
        b[i] = next() as u8;
        std::fs::write(&path, &b).unwrap();
        match load(&path) {
            Ok(_) | Err(Error::Checkpoint(_)) => {}
            Err(e) => panic!("unexpected error kind: {e:?}"),
        }
    }

    // A missing file is an I/O error naming the path.
    let err = load(&dir.path().join("missing.safetensors")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("missing.safetensors"));
}

#[test]
fn check_matches_lists_every_difference() {
    let path = Path::new("runs/x/student.safetensors");
    let ck = Checkpoint {
        tensors: vec![
            tensor("conv1.weight", &[32, 3, 3, 3], 0),
            tensor("conv1.bias", &[32], 0),
            tensor("fc1.weight", &[500, 4096], 0),
            tensor("extra.weight", &[2], 0),
            tensor("extra.bias", &[1], 0),
        ],
        metadata: [("arch".to_string(), "student".to_string())].into(),
        dtype: StoreDtype::F32,
    };
    let exp = |v: &[(&str, &[usize])]| -> Vec<(String, Vec<usize>)> {
        v.iter().map(|(n, s)| (n.to_string(), s.to_vec())).collect()
    };
    let expected = exp(&[
        ("conv1.weight", &[32, 1, 3, 3]),
        ("conv1.bias", &[32]),
        ("fc1.weight", &[500, 3136]),
        ("fc2.weight", &[10, 500]),
        ("fc2.bias", &[10]),
    ]);
    let msg = expect_ckpt_err(check_matches(&expected, &ck, path), "does not match");
    for needle in [
        "runs/x/student.safetensors",
        "2 missing, 2 unexpected, 2 shape mismatches",
        "missing: fc2.weight [10, 500]",
        "missing: fc2.bias [10]",
        "unexpected: extra.weight [2]",
        "unexpected: extra.bias [1]",
        "conv1.weight: expected [32, 1, 3, 3], found [32, 3, 3, 3]",
        "fc1.weight: expected [500, 3136], found [500, 4096]",
        "arch = student",
    ] {
        assert!(msg.contains(needle), "`{needle}` missing from:\n{msg}");
    }
    assert!(
        !msg.contains("conv1.bias"),
        "matching tensors are not listed:\n{msg}"
    );

    let exact: Vec<(String, Vec<usize>)> = ck
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    check_matches(&exact, &ck, path).unwrap();
}

/// Cross-check with the reference Python reader (`safetensors.numpy`, the parser PyTorch's
/// `safetensors.torch.load_file` uses). Skipped, with a note, when python3 or its `safetensors`
/// package is missing; set DISTILL_REQUIRE_PYTHON=1 to make that a failure instead.
#[test]
fn python_safetensors_reads_our_files() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/inspect_checkpoint.py");
    let has_python = std::process::Command::new("python3")
        .args(["-c", "import safetensors.numpy, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !has_python {
        assert!(
            std::env::var_os("DISTILL_REQUIRE_PYTHON").is_none(),
            "DISTILL_REQUIRE_PYTHON is set but python3 with safetensors + numpy is not available"
        );
        eprintln!("skipping: python3 with `safetensors` and `numpy` not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tensors = vec![
        tensor("conv1.weight", &[4, 1, 3, 3], 1),
        tensor("conv1.bias", &[4], 2),
        tensor("fc2.weight", &[3, 5], 3),
    ];
    for (dtype, np_dtype) in [(StoreDtype::F32, "float32"), (StoreDtype::F16, "float16")] {
        let path = dir.path().join(format!("{np_dtype}.safetensors"));
        save(&path, &tensors, &meta(), dtype).unwrap();
        let out = std::process::Command::new("python3")
            .arg(&script)
            .arg(&path)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let meta_py: BTreeMap<String, String> =
            serde_json::from_value(v["metadata"].clone()).unwrap();
        assert_eq!(meta_py, meta());
        let ours = load(&path).unwrap();
        assert_eq!(v["tensors"].as_object().unwrap().len(), tensors.len());
        for t in &ours.tensors {
            let p = &v["tensors"][&t.name];
            assert_eq!(p["dtype"], np_dtype, "{}", t.name);
            assert_eq!(p["shape"], serde_json::json!(t.shape));
            let vals: Vec<f64> = serde_json::from_value(p["values"].clone()).unwrap();
            // Python prints the exact f64 of each f32; serde_json may parse it 1 ulp (of f64)
            // off, which narrowing to f32 removes.
            let py32: Vec<f32> = vals.iter().map(|&x| x as f32).collect();
            assert_eq!(
                py32, t.data,
                "{}: python and Rust read the same values",
                t.name
            );
        }
    }
}
