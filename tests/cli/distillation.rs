//! Distillation beyond the labelled images: transfer sets in `run` and `distill`.

use super::*;

/// `run --transfer all`: the baseline sees the labelled fraction, the KD student every
/// training image (soft targets on all, labels on the fraction), for the epochs that keep the
/// baseline's optimiser steps; the report counts both kinds of image.
#[test]
fn run_with_transfer_all_and_distill_with_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let rep = ok_json(&[
        "run",
        "--out",
        s(&a),
        "--max-train",
        "500",
        "--max-test",
        "100",
        "--teacher-epochs",
        "1",
        "--epochs",
        "10",
        "--label-fraction",
        "0.1",
        "--transfer",
        "all",
    ]);
    let labelled = rep["transfer_labelled_images"].as_u64().unwrap();
    assert!((45..=55).contains(&labelled), "{labelled} labelled images");
    assert_eq!(
        rep["transfer_soft_only_images"].as_u64(),
        Some(500 - labelled)
    );
    assert_eq!(rep["baseline"][0]["train_images"].as_u64(), Some(labelled));
    assert_eq!(rep["kd"][0]["train_images"].as_u64(), Some(500));
    // 10 epochs over 1/10 of the images, ×10/3 the steps: 3 epochs over all of them.
    assert_eq!(rep["kd_epochs"].as_u64(), Some(3));
    let lines = metrics(&a);
    assert_eq!(lines.iter().filter(|l| l["run"] == "kd").count(), 3);
    assert_eq!(lines.iter().filter(|l| l["run"] == "baseline").count(), 10);
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(md.contains("with the teacher's soft targets"), "{md}");

    // `distill --transfer DIR`: a flat folder of images (no class folders) joins the
    // labelled images as soft targets only.
    let pics = tmp.path().join("unlabelled");
    std::fs::create_dir(&pics).unwrap();
    for i in 0..7u8 {
        let img: Vec<u8> = (0..28 * 28)
            .map(|p| (p as u8).wrapping_mul(i + 1))
            .collect();
        distill::data::save_png(&pics.join(format!("{i}.png")), &img, 1, 28, 28).unwrap();
    }
    let out = ok_json(&[
        "distill",
        "--teacher",
        s(&a.join("teacher/best.safetensors")),
        "--out",
        s(&tmp.path().join("kd")),
        "--max-train",
        "200",
        "--max-test",
        "100",
        "--epochs",
        "1",
        "--label-fraction",
        "0.1",
        "--transfer",
        s(&pics),
    ]);
    // 10% of 200, stratified per class (rounded per class), plus the folder's 7.
    let n = out["train_images"].as_u64().unwrap();
    assert!((17..=23).contains(&(n - 7)), "{out}");

    fails(
        &["run", "--transfer", "/no/such/folder", "--max-train", "100"],
        "--transfer",
    );
}

/// `run --teachers 2 --student-arch c8-c16-f32`: two teachers with their own seeds, their
/// ensemble's accuracy and each one's in the report, and a student of the asked-for spec.
#[test]
fn run_with_two_teachers_and_a_small_student() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let rep = ok_json(&[
        "run",
        "--out",
        s(&a),
        "--max-train",
        "300",
        "--max-test",
        "100",
        "--teacher-epochs",
        "1",
        "--epochs",
        "1",
        "--teachers",
        "2",
        "--ensemble",
        "logits",
        "--student-arch",
        "c8-c16-f32",
    ]);
    let teachers = rep["teachers"].as_array().unwrap();
    assert_eq!(teachers.len(), 2);
    assert_eq!(teachers[0]["seed"].as_u64(), Some(0));
    assert_eq!(teachers[1]["seed"].as_u64(), Some(1));
    assert_ne!(teachers[0]["history"], teachers[1]["history"]);
    let ens = num(&rep, "ensemble_accuracy");
    assert!((0.0..=1.0).contains(&ens));
    assert!(a.join("teacher2/best.safetensors").is_file());
    assert_eq!(rep["student_stats"]["arch"], "c8-c16-f32");
    let params = 8 * 9 + 8 + 16 * 8 * 9 + 16 + 32 * 16 * 49 + 32 + 10 * 32 + 10;
    assert_eq!(rep["student_stats"]["parameters"].as_u64(), Some(params));
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(md.contains("ensemble of 2 teachers"), "{md}");

    // distill from both checkpoints; a bad spec and a bad ensemble are clear errors.
    let out = ok_json(&[
        "distill",
        "--teacher",
        s(&a.join("teacher/best.safetensors")),
        "--teacher",
        s(&a.join("teacher2/best.safetensors")),
        "--student-arch",
        "c4-f8",
        "--out",
        s(&tmp.path().join("kd")),
        "--max-train",
        "100",
        "--max-test",
        "50",
        "--epochs",
        "1",
    ]);
    assert_eq!(out["arch"], "c4-f8");
    fails(
        &["run", "--student-arch", "c8-f", "--max-train", "100"],
        "c16-c32-f128",
    );
    fails(
        &["run", "--ensemble", "median", "--max-train", "100"],
        "--ensemble",
    );
}
