//! The shipped Fashion-MNIST: counts, known pixels and labels, the data folder, label
//! fractions.

use std::io::Read;
use std::path::Path;

use distill::data::{default_data_dir, Format};

use crate::{fashion, fashion_timed};

#[test]
fn loading_the_shipped_set_is_fast() {
    let s = fashion_timed().1;
    // Release: well under a second (the bench measures it); debug (flate2 and miniz_oxide
    // optimised, the rest not): a few tenths, with room for a loaded machine.
    let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
    assert!(s < limit, "loading took {s:.3} s");
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn shipped_fashion_mnist_counts_pixels_labels_balance() {
    let ds = fashion();
    assert_eq!(ds.name, "fashion-mnist");
    assert_eq!((ds.channels, ds.height, ds.width), (1, 28, 28));
    assert_eq!(ds.train.len(), 60_000);
    assert_eq!(ds.test.len(), 10_000);
    assert_eq!(ds.train.images.len(), 60_000 * 784);
    assert_eq!(ds.class_names.len(), 10);
    assert_eq!(ds.class_names[0], "T-shirt/top");
    assert_eq!(ds.class_names[9], "Ankle boot");
    assert_eq!(
        &ds.train.labels[..10],
        &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5],
        "first training labels"
    );
    assert_eq!(&ds.test.labels[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    // Known pixels of the first training image (an ankle boot) and the first test image.
    let im = ds.train.image(0);
    assert_eq!(im.len(), 784);
    assert_eq!(im[3 * 28 + 15], 13);
    assert_eq!(im[3 * 28 + 16], 73);
    assert_eq!(im[14 * 28 + 25], 255);
    assert_eq!(im.iter().map(|&v| v as u32).sum::<u32>(), 76_247);
    let t = ds.test.image(0);
    assert_eq!(t[14 * 28 + 14], 110);
    assert_eq!(t.iter().map(|&v| v as u32).sum::<u32>(), 33_456);
    // Balanced classes.
    assert_eq!(ds.train.class_counts(10), vec![6000; 10]);
    assert_eq!(ds.test.class_counts(10), vec![1000; 10]);
    // The well-known normalisation constants of Fashion-MNIST.
    assert!((ds.mean[0] - 0.2860).abs() < 1e-4, "mean {:?}", ds.mean);
    assert!((ds.std[0] - 0.3530).abs() < 1e-4, "std {:?}", ds.std);
}

#[test]
fn first_shipped_image_saved_as_png_matches_the_raw_bytes() {
    let ds = fashion();
    let raw = gunzip(&default_data_dir().join("train-images-idx3-ubyte.gz"));
    let raw_first = &raw[16..16 + 784];
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("first.png");
    ds.save_png(&ds.train, 0, &png).unwrap();
    let back = image::open(&png).unwrap();
    assert_eq!((back.width(), back.height()), (28, 28));
    assert!(matches!(back, image::DynamicImage::ImageLuma8(_)));
    assert_eq!(back.to_luma8().as_raw().as_slice(), raw_first);
}

#[test]
fn default_data_dir_finds_the_shipped_files() {
    let d = default_data_dir();
    assert!(d.join("train-images-idx3-ubyte.gz").is_file(), "{d:?}");
    assert_eq!(distill::data::detect_format(&d).unwrap(), Format::Idx);
}

#[test]
fn label_fraction_is_stratified_and_seeded() {
    let ds = fashion();
    let a = ds.train.label_fraction(0.01, 7).unwrap();
    assert_eq!(a.len(), 600);
    assert_eq!(a.class_counts(10), vec![60; 10]);
    assert_eq!(a, ds.train.label_fraction(0.01, 7).unwrap());
    assert_ne!(a, ds.train.label_fraction(0.01, 8).unwrap());
    // A tiny fraction still keeps one image per class.
    let b = ds.train.label_fraction(1e-9, 7).unwrap();
    assert_eq!(b.class_counts(10), vec![1; 10]);
    // Smaller fractions nest inside larger ones with the same seed.
    let ia = ds.train.label_fraction_indices(0.01, 7).unwrap();
    let ib = ds.train.label_fraction_indices(0.02, 7).unwrap();
    assert!(ia.iter().all(|i| ib.binary_search(i).is_ok()));
    assert!(ds.train.label_fraction(0.0, 1).is_err());
    assert!(ds.train.label_fraction(1.5, 1).is_err());
    let t = ds.test.take(5);
    assert_eq!(t.len(), 5);
    assert_eq!(t.image(4), ds.test.image(4));
    let s = ds.test.subset(&[3, 1]);
    assert_eq!(s.labels, vec![ds.test.labels[3], ds.test.labels[1]]);
    assert_eq!(s.image(0), ds.test.image(3));
}
