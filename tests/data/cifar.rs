//! CIFAR-10 and CIFAR-100 binary batches.

use distill::data::{load, LoadOptions};

use crate::assert_data_err;

/// A CIFAR record: label bytes then 3072 pixels with value (label·7 + channel + k) % 256.
fn cifar_records(labels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, l) in labels.iter().enumerate() {
        out.extend_from_slice(l);
        for c in 0..3usize {
            out.extend((0..1024).map(|_| ((l[l.len() - 1] as usize * 7 + c + k) % 256) as u8));
        }
    }
    out
}

#[test]
fn cifar10_batches_load() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-10-batches-bin");
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("data_batch_1.bin"), cifar_records(&[&[3], &[9]])).unwrap();
    std::fs::write(d.join("data_batch_2.bin"), cifar_records(&[&[0]])).unwrap();
    std::fs::write(d.join("test_batch.bin"), cifar_records(&[&[5]])).unwrap();
    let ds = load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(ds.name, "cifar-10");
    assert_eq!((ds.channels, ds.height, ds.width), (3, 32, 32));
    assert_eq!(ds.train.labels, vec![3, 9, 0]);
    assert_eq!(ds.test.labels, vec![5]);
    assert_eq!(ds.class_names[0], "airplane");
    let im = ds.train.image(1);
    assert_eq!((im[0], im[1024], im[2048]), (64, 65, 66));
    assert_eq!(ds.mean.len(), 3);
    // batches.meta.txt names the classes when present.
    let names: String = (0..10).map(|i| format!("c{i}\n")).collect();
    std::fs::write(d.join("batches.meta.txt"), names).unwrap();
    let ds = load(&d, &LoadOptions::default()).unwrap();
    assert_eq!(ds.class_names[3], "c3");
}

#[test]
fn cifar100_uses_fine_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("train.bin"), cifar_records(&[&[1, 42], &[19, 99]])).unwrap();
    std::fs::write(d.join("test.bin"), cifar_records(&[&[0, 7]])).unwrap();
    let ds = load(d, &LoadOptions::default()).unwrap();
    assert_eq!(ds.name, "cifar-100");
    assert_eq!(ds.class_names.len(), 100);
    assert_eq!(ds.class_names[99], "worm");
    assert_eq!(ds.train.labels, vec![42, 99]);
    assert_eq!(ds.test.labels, vec![7]);
    let g = load(
        d,
        &LoadOptions {
            grey: Some(true),
            size: Some((16, 16)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((g.channels, g.height, g.width), (1, 16, 16));
}

#[test]
fn cifar_bad_size_and_bad_label() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut rec = cifar_records(&[&[3], &[4]]);
    rec.pop();
    std::fs::write(d.join("data_batch_1.bin"), &rec).unwrap();
    std::fs::write(d.join("test_batch.bin"), cifar_records(&[&[5]])).unwrap();
    assert_data_err(
        load(d, &LoadOptions::default()),
        "data_batch_1.bin",
        "not a whole",
    );
    std::fs::write(d.join("data_batch_1.bin"), cifar_records(&[&[3], &[10]])).unwrap();
    assert_data_err(
        load(d, &LoadOptions::default()),
        "data_batch_1.bin",
        "record 1 has label 10",
    );
    std::fs::remove_file(d.join("test_batch.bin")).unwrap();
    std::fs::write(d.join("data_batch_1.bin"), cifar_records(&[&[3]])).unwrap();
    assert_data_err(
        load(d, &LoadOptions::default()),
        "",
        "missing test_batch.bin",
    );
}
