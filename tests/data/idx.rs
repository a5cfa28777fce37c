//! IDX files: raw and gzip, other ranks and label types, declared classes, and every
//! bad-input case.

use std::path::Path;

use distill::data::idx::write_idx_u8;
use distill::data::{load, load_with_warnings, LoadOptions};

use crate::assert_data_err;

/// Six 2×3 images with pixel value 10·i + p, labels i % 3.
fn tiny_idx(dir: &Path, gz: bool) {
    let ext = if gz { ".gz" } else { "" };
    let imgs: Vec<u8> = (0..6u8)
        .flat_map(|i| (0..6u8).map(move |p| 10 * i + p))
        .collect();
    let labels: Vec<u8> = (0..6u8).map(|i| i % 3).collect();
    write_idx_u8(
        &dir.join(format!("train-images-idx3-ubyte{ext}")),
        &[6, 2, 3],
        &imgs,
    )
    .unwrap();
    write_idx_u8(
        &dir.join(format!("train-labels-idx1-ubyte{ext}")),
        &[6],
        &labels,
    )
    .unwrap();
    write_idx_u8(
        &dir.join(format!("t10k-images-idx3-ubyte{ext}")),
        &[2, 2, 3],
        &imgs[..12],
    )
    .unwrap();
    write_idx_u8(
        &dir.join(format!("t10k-labels-idx1-ubyte{ext}")),
        &[2],
        &labels[..2],
    )
    .unwrap();
}

/// Declared classes (`classes.txt`, or Fashion-MNIST's ten for a folder named so) bound the
/// labels: a label at or above their count is a corrupt file, never a new class. Data without
/// declared classes infers them, and says so.
#[test]
fn labels_beyond_the_declared_classes_are_an_error() {
    // A Fashion-MNIST folder with one training label byte set to 200.
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("fashion-mnist-corrupt");
    std::fs::create_dir(&dir).unwrap();
    let imgs: Vec<u8> = vec![7; 6 * 4];
    let mut labels: Vec<u8> = (0..6u8).map(|i| i % 10).collect();
    labels[4] = 200;
    write_idx_u8(&dir.join("train-images-idx3-ubyte"), &[6, 2, 2], &imgs).unwrap();
    write_idx_u8(&dir.join("train-labels-idx1-ubyte"), &[6], &labels).unwrap();
    write_idx_u8(&dir.join("t10k-images-idx3-ubyte"), &[2, 2, 2], &imgs[..8]).unwrap();
    write_idx_u8(&dir.join("t10k-labels-idx1-ubyte"), &[2], &[0, 1]).unwrap();
    let r = load(&dir, &LoadOptions::default());
    assert_data_err(r, "train-labels-idx1-ubyte", "label 200 of image 4");

    // The same through classes.txt.
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(dir.path(), false);
    std::fs::write(dir.path().join("classes.txt"), "a\nb\n").unwrap();
    let r = load(dir.path(), &LoadOptions::default());
    assert_data_err(
        r,
        "train-labels-idx1-ubyte",
        "not one of the dataset's 2 classes",
    );
    std::fs::write(dir.path().join("classes.txt"), "a\nb\nc\n").unwrap();
    let ds = load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(ds.class_names, vec!["a", "b", "c"]);
    std::fs::write(dir.path().join("classes.txt"), "\n").unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "classes.txt",
        "no classes",
    );

    // No declared classes: inferred from the labels, with a warning that counts them.
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(dir.path(), false);
    let (ds, warnings) = load_with_warnings(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(ds.num_classes(), 3);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("3 classes inferred"), "{warnings:?}");
}

#[test]
fn idx_raw_and_gzip_load_the_same() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        tiny_idx(dir.path(), gz);
        let ds = load(dir.path(), &LoadOptions::default()).unwrap();
        assert_eq!((ds.channels, ds.height, ds.width), (1, 2, 3));
        assert_eq!(ds.train.len(), 6);
        assert_eq!(ds.test.len(), 2);
        assert_eq!(ds.train.image(2), &[20, 21, 22, 23, 24, 25]);
        assert_eq!(ds.train.labels, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(ds.class_names, vec!["0", "1", "2"]);
        let mean = (0..6)
            .flat_map(|i| (0..6).map(move |p| 10 * i + p))
            .sum::<u32>() as f32
            / 36.0
            / 255.0;
        assert!((ds.mean[0] - mean).abs() < 1e-6);
    }
}

#[test]
fn idx_rank_four_hwc_and_rank_two_and_int_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    // Two 2×2 RGB images stored N×H×W×C; pixel (y,x) channel c = 100c + 10y + x + i.
    let mut hwc = Vec::new();
    for i in 0..2u8 {
        for y in 0..2u8 {
            for x in 0..2u8 {
                for c in 0..3u8 {
                    hwc.push(100 * c + 10 * y + x + i);
                }
            }
        }
    }
    write_idx_u8(&p.join("train-images-idx4-ubyte"), &[2, 2, 2, 3], &hwc).unwrap();
    write_idx_u8(&p.join("t10k-images-idx4-ubyte"), &[2, 2, 2, 3], &hwc).unwrap();
    // Labels as big-endian i32 (type 0x0C).
    let mut lab = vec![0, 0, 0x0C, 1, 0, 0, 0, 2];
    lab.extend_from_slice(&1i32.to_be_bytes());
    lab.extend_from_slice(&0i32.to_be_bytes());
    std::fs::write(p.join("train-labels-idx1-ubyte"), &lab).unwrap();
    std::fs::write(p.join("t10k-labels-idx1-ubyte"), &lab).unwrap();
    let ds = load(p, &LoadOptions::default()).unwrap();
    assert_eq!((ds.channels, ds.height, ds.width), (3, 2, 2));
    assert_eq!(ds.train.labels, vec![1, 0]);
    // Planar: channel 0 plane, then channel 1, then 2.
    assert_eq!(
        ds.train.image(1),
        &[1, 2, 11, 12, 101, 102, 111, 112, 201, 202, 211, 212]
    );
    // Converted to grey on request.
    let g = load(
        p,
        &LoadOptions {
            grey: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(g.channels, 1);
    assert_eq!(g.train.image_len(), 4);

    // Rank 2: N×D vectors are 1×1×D images.
    let d2 = tempfile::tempdir().unwrap();
    write_idx_u8(
        &d2.path().join("train-images-idx2-ubyte"),
        &[2, 5],
        &[1; 10],
    )
    .unwrap();
    write_idx_u8(&d2.path().join("t10k-images-idx2-ubyte"), &[1, 5], &[2; 5]).unwrap();
    write_idx_u8(&d2.path().join("train-labels-idx1-ubyte"), &[2], &[0, 1]).unwrap();
    write_idx_u8(&d2.path().join("t10k-labels-idx1-ubyte"), &[1], &[1]).unwrap();
    let ds = load(d2.path(), &LoadOptions::default()).unwrap();
    assert_eq!((ds.channels, ds.height, ds.width), (1, 1, 5));
}

#[test]
fn idx_resize_on_request() {
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(dir.path(), false);
    let ds = load(
        dir.path(),
        &LoadOptions {
            size: Some((4, 6)),
            grey: Some(false),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((ds.channels, ds.height, ds.width), (3, 4, 6));
    assert_eq!(ds.train.images.len(), 6 * 3 * 24);
    assert_eq!(ds.mean.len(), 3);
}

#[test]
fn idx_wrong_magic_number() {
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(dir.path(), false);
    let f = dir.path().join("train-labels-idx1-ubyte");
    let mut b = std::fs::read(&f).unwrap();
    b[0] = 0x12;
    std::fs::write(&f, b).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "train-labels-idx1-ubyte",
        "magic number",
    );
    // An unknown type code is a bad magic number too.
    let mut b = std::fs::read(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    b[2] = 0x07;
    tiny_idx(dir.path(), false);
    std::fs::write(dir.path().join("t10k-images-idx3-ubyte"), b).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "t10k-images-idx3-ubyte",
        "magic number 0x00000703",
    );
}

#[test]
fn idx_truncated_and_corrupt_gzip() {
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(dir.path(), true);
    let f = dir.path().join("train-images-idx3-ubyte.gz");
    let good = std::fs::read(&f).unwrap();
    std::fs::write(&f, &good[..good.len() / 2]).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "train-images-idx3-ubyte.gz",
        "truncated or corrupt gzip",
    );
    // Flip bytes in the middle of the deflate stream (or its CRC): corrupt, not truncated.
    let mut bad = good.clone();
    let n = bad.len();
    for b in &mut bad[12..n - 8] {
        *b ^= 0x5A;
    }
    std::fs::write(&f, &bad).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "train-images-idx3-ubyte.gz",
        "gzip",
    );
    // A wrong CRC alone.
    let mut bad = good;
    bad[n - 8] ^= 0xFF;
    std::fs::write(&f, &bad).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "train-images-idx3-ubyte.gz",
        "gzip",
    );
}

#[test]
fn idx_count_mismatch_and_truncated_data_and_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(dir.path(), false);
    write_idx_u8(
        &dir.path().join("train-labels-idx1-ubyte"),
        &[5],
        &[0, 1, 2, 0, 1],
    )
    .unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "train-images-idx3-ubyte",
        "6 images but",
    );

    tiny_idx(dir.path(), false);
    let f = dir.path().join("t10k-images-idx3-ubyte");
    let b = std::fs::read(&f).unwrap();
    std::fs::write(&f, &b[..b.len() - 3]).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        "t10k-images-idx3-ubyte",
        "truncated",
    );

    tiny_idx(dir.path(), false);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte")).unwrap();
    assert_data_err(
        load(dir.path(), &LoadOptions::default()),
        dir.path().to_str().unwrap(),
        "missing t10k-labels",
    );
}
