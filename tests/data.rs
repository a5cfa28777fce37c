//! Data loading and batching: the shipped Fashion-MNIST, small files of every format written
//! here, every bad-input case, and the determinism of shuffling and augmentation.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use distill::data::idx::write_idx_u8;
use distill::data::{
    batches, default_data_dir, load, load_with_warnings, try_batches, Augment, BatchConfig,
    Dataset, Format, LoadOptions, Split,
};
use distill::Error;

// ---------------------------------------------------------------- the shipped Fashion-MNIST

/// The shipped set, loaded once per test binary, and the seconds that took.
fn fashion_timed() -> &'static (Dataset, f64) {
    static DS: OnceLock<(Dataset, f64)> = OnceLock::new();
    DS.get_or_init(|| {
        let t = Instant::now();
        let ds = load(&default_data_dir(), &LoadOptions::default()).expect("shipped data loads");
        let s = t.elapsed().as_secs_f64();
        eprintln!("loaded the shipped Fashion-MNIST in {s:.3} s (this profile)");
        (ds, s)
    })
}

fn fashion() -> &'static Dataset {
    &fashion_timed().0
}

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

// ---------------------------------------------------------------- IDX

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

fn err_text(e: Error) -> String {
    e.to_string()
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

fn assert_data_err(r: Result<Dataset, Error>, file: &str, what: &str) {
    let e = match r {
        Ok(_) => panic!("expected an error naming {file} ({what})"),
        Err(e) => e,
    };
    let msg = err_text(e);
    eprintln!("{msg}");
    assert!(msg.contains(file), "error does not name {file}: {msg}");
    assert!(
        msg.to_lowercase().contains(&what.to_lowercase()),
        "error does not say '{what}': {msg}"
    );
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

// ---------------------------------------------------------------- CIFAR

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

// ---------------------------------------------------------------- image folders

fn save(img: &image::DynamicImage, path: &Path, fmt: image::ImageFormat) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save_with_format(path, fmt).unwrap();
}

fn grey(v: u8, w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, y| {
        image::Luma([v.wrapping_add((x + 3 * y) as u8)])
    }))
}

fn rgb(v: u8, w: u32, h: u32) -> image::DynamicImage {
    image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, _| {
        image::Rgb([v, v / 2, x as u8])
    }))
}

#[test]
fn image_folder_split_layout_every_format() {
    use image::ImageFormat as F;
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    // Classes written out of order: names must come back sorted.
    save(&rgb(200, 8, 6), &r.join("train/zebra/a.png"), F::Png);
    save(&rgb(100, 8, 6), &r.join("train/zebra/b.bmp"), F::Bmp);
    save(&rgb(50, 8, 6), &r.join("train/ant/c.jpg"), F::Jpeg);
    save(&rgb(60, 8, 6), &r.join("train/ant/d.tiff"), F::Tiff);
    save(&rgb(70, 8, 6), &r.join("train/ant/e.gif"), F::Gif);
    save(&rgb(80, 8, 6), &r.join("train/ant/f.ppm"), F::Pnm);
    save(&rgb(90, 8, 6), &r.join("train/ant/g.tga"), F::Tga);
    save(&rgb(95, 8, 6), &r.join("train/ant/h.webp"), F::WebP);
    save(&rgb(10, 8, 6), &r.join("test/zebra/x.png"), F::Png);
    let ds = load(r, &LoadOptions::default()).unwrap();
    assert_eq!(ds.class_names, vec!["ant", "zebra"]);
    assert_eq!((ds.channels, ds.height, ds.width), (3, 6, 8));
    assert_eq!(ds.train.labels, vec![0, 0, 0, 0, 0, 0, 1, 1]);
    assert_eq!(ds.test.labels, vec![1]);
    // zebra/a.png is lossless: planar R, G, B.
    let a = ds.train.image(6);
    assert_eq!((a[0], a[48], a[96 + 5]), (200, 100, 5));
    // Grey and resized on request.
    let g = load(
        r,
        &LoadOptions {
            grey: Some(true),
            size: Some((4, 4)),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!((g.channels, g.height, g.width), (1, 4, 4));
    assert_eq!(g.train.images.len(), 8 * 16);
}

#[test]
fn image_folder_held_out_fraction_and_auto_grey() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    for k in 0..10u8 {
        save(
            &grey(k, 5, 4),
            &r.join(format!("cat/{k}.png")),
            image::ImageFormat::Png,
        );
        save(
            &grey(k + 100, 5, 4),
            &r.join(format!("dog/{k}.png")),
            image::ImageFormat::Png,
        );
    }
    let opts = LoadOptions {
        test_fraction: 0.3,
        seed: 5,
        ..Default::default()
    };
    let a = load(r, &opts).unwrap();
    assert_eq!(a.channels, 1, "all-grey folder loads as grey");
    assert_eq!((a.height, a.width), (4, 5));
    assert_eq!(a.train.len(), 14);
    assert_eq!(a.test.class_counts(2), vec![3, 3]);
    assert!(a.train.image(0)[0] < 100);
    let b = load(r, &opts).unwrap();
    assert_eq!(a, b, "same seed, same held-out split");
    let c = load(
        r,
        &LoadOptions {
            seed: 6,
            ..opts.clone()
        },
    )
    .unwrap();
    assert_ne!(a.test, c.test, "another seed, another held-out split");
}

#[test]
fn image_folder_stray_file_is_skipped_with_one_warning() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    save(&grey(1, 3, 3), &r.join("a/1.png"), image::ImageFormat::Png);
    save(&grey(2, 3, 3), &r.join("b/2.png"), image::ImageFormat::Png);
    std::fs::write(r.join("a/notes.txt"), "hello").unwrap();
    std::fs::write(r.join("a/.DS_Store"), "x").unwrap();
    let (ds, warnings) = load_with_warnings(
        r,
        &LoadOptions {
            test_fraction: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(ds.train.len(), 2);
    assert_eq!(ds.test.len(), 0);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("notes.txt"), "{warnings:?}");
}

#[test]
fn image_folder_bad_inputs() {
    let opts = LoadOptions::default();
    // An empty class folder.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    save(&grey(1, 3, 3), &r.join("a/1.png"), image::ImageFormat::Png);
    std::fs::create_dir(r.join("b")).unwrap();
    assert_data_err(load(r, &opts), "b", "class folder 'b' contains no images");
    // An unreadable image.
    save(&grey(1, 3, 3), &r.join("b/2.png"), image::ImageFormat::Png);
    std::fs::write(r.join("b/3.png"), b"\x89PNG not really").unwrap();
    assert_data_err(load(r, &opts), "3.png", "unreadable image");
    // A folder with no images at all.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("readme.txt"), "nothing").unwrap();
    assert_data_err(
        load(empty.path(), &opts),
        empty.path().to_str().unwrap(),
        "no images found",
    );
    // Different sizes without a chosen size.
    let mixed = tempfile::tempdir().unwrap();
    save(
        &grey(1, 3, 3),
        &mixed.path().join("a/1.png"),
        image::ImageFormat::Png,
    );
    save(
        &grey(1, 4, 3),
        &mixed.path().join("a/2.png"),
        image::ImageFormat::Png,
    );
    assert_data_err(load(mixed.path(), &opts), "2.png", "choose a size");
    // A test class that training lacks.
    let split = tempfile::tempdir().unwrap();
    save(
        &grey(1, 3, 3),
        &split.path().join("train/a/1.png"),
        image::ImageFormat::Png,
    );
    save(
        &grey(1, 3, 3),
        &split.path().join("test/q/1.png"),
        image::ImageFormat::Png,
    );
    assert_data_err(load(split.path(), &opts), "q", "no training folder");
    // Not a folder / missing.
    let missing = r.join("nope");
    assert!(matches!(load(&missing, &opts), Err(Error::Io { .. })));
}

// ---------------------------------------------------------------- batching

/// n images of 1×4×4, image i = bytes i*16 .. i*16+16 (mod 256), label i % 3.
fn ramp_split(n: usize) -> Split {
    Split {
        images: (0..n * 16).map(|v| v as u8).collect(),
        labels: (0..n as u32).map(|i| i % 3).collect(),
    }
}

#[test]
fn batches_cover_the_split_once_normalised() {
    let split = Arc::new(ramp_split(10));
    let cfg = BatchConfig {
        batch_size: 4,
        seed: 3,
        mean: vec![0.5],
        std: vec![0.25],
        ..Default::default()
    };
    let it = batches(split.clone(), 1, 4, 4, &cfg, 0);
    assert_eq!(it.len(), 3);
    assert_eq!(it.num_batches(), 3);
    let all: Vec<_> = it.collect();
    assert_eq!(
        all.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    assert_eq!(all[2].shape, [2, 1, 4, 4]);
    let mut seen: Vec<usize> = all.iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    let b = &all[0];
    for (k, &i) in b.indices.iter().enumerate() {
        assert_eq!(b.labels[k], split.labels[i]);
        for p in 0..16 {
            let want = (split.image(i)[p] as f32 / 255.0 - 0.5) / 0.25;
            assert!((b.images[k * 16 + p] - want).abs() < 1e-6);
        }
    }
    // drop_last
    let it = batches(
        split.clone(),
        1,
        4,
        4,
        &BatchConfig {
            drop_last: true,
            ..cfg.clone()
        },
        0,
    );
    assert_eq!(it.len(), 2);
    assert!(it.map(|b| b.len()).all(|n| n == 4));
    // No shuffle: in order.
    let it = batches(split, 1, 4, 4, &BatchConfig::eval(4, vec![], vec![]), 0);
    let idx: Vec<usize> = it.flat_map(|b| b.indices).collect();
    assert_eq!(idx, (0..10).collect::<Vec<_>>());
}

#[test]
fn shuffle_and_augmentation_are_a_function_of_seed_and_epoch() {
    let split = Arc::new(ramp_split(50));
    let cfg = BatchConfig {
        batch_size: 8,
        seed: 11,
        augment: Augment {
            crop_padding: 2,
            hflip: true,
        },
        ..Default::default()
    };
    let run =
        |cfg: &BatchConfig, epoch| batches(split.clone(), 1, 4, 4, cfg, epoch).collect::<Vec<_>>();
    let a = run(&cfg, 1);
    assert_eq!(a, run(&cfg, 1), "same seed and epoch, same batches");
    let b = run(&cfg, 2);
    assert_ne!(a[0].indices, b[0].indices, "another epoch, another order");
    let c = run(
        &BatchConfig {
            seed: 12,
            ..cfg.clone()
        },
        1,
    );
    assert_ne!(a[0].indices, c[0].indices, "another seed, another order");
    // Each image's augmentation does not depend on the batch size.
    let d = run(
        &BatchConfig {
            batch_size: 3,
            ..cfg.clone()
        },
        1,
    );
    let per_image = |bs: &[distill::data::Batch]| {
        let mut v: Vec<(usize, Vec<f32>)> = bs
            .iter()
            .flat_map(|b| {
                b.indices
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| (i, b.images[k * 16..(k + 1) * 16].to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v
    };
    assert_eq!(per_image(&a), per_image(&d));
    // Augmentation really changes some images.
    let plain = run(
        &BatchConfig {
            augment: Augment::default(),
            ..cfg.clone()
        },
        1,
    );
    assert_ne!(per_image(&a), per_image(&plain));
}

#[test]
fn crop_and_flip_move_pixels_as_expected() {
    // One 1×3×3 image 1..9; without normalisation x = byte/255.
    let split = Arc::new(Split {
        images: (1..=9).collect(),
        labels: vec![0],
    });
    let get = |aug: Augment, epoch| {
        let cfg = BatchConfig {
            batch_size: 1,
            augment: aug,
            ..Default::default()
        };
        let b = batches(split.clone(), 1, 3, 3, &cfg, epoch).next().unwrap();
        b.images
            .iter()
            .map(|x| (x * 255.0).round() as u8)
            .collect::<Vec<u8>>()
    };
    let mut flips = 0;
    let mut crops = std::collections::HashSet::new();
    for epoch in 0..64 {
        let f = get(
            Augment {
                crop_padding: 0,
                hflip: true,
            },
            epoch,
        );
        if f == [3, 2, 1, 6, 5, 4, 9, 8, 7] {
            flips += 1;
        } else {
            assert_eq!(f, (1..=9).collect::<Vec<u8>>());
        }
        let c = get(
            Augment {
                crop_padding: 1,
                hflip: false,
            },
            epoch,
        );
        // Every crop is the image shifted by dy, dx in -1..=1 with zero fill.
        let ok = (-1i32..=1).any(|dy| {
            (-1i32..=1).any(|dx| {
                let want: Vec<u8> = (0..9)
                    .map(|p| {
                        let (y, x) = (p / 3 + dy, p % 3 + dx);
                        if (0..3).contains(&y) && (0..3).contains(&x) {
                            (y * 3 + x + 1) as u8
                        } else {
                            0
                        }
                    })
                    .collect();
                want == c
            })
        });
        assert!(ok, "epoch {epoch}: {c:?} is not a shifted copy");
        crops.insert(c);
    }
    assert!((16..=48).contains(&flips), "flips {flips} of 64");
    assert!(crops.len() >= 6, "only {} distinct crops", crops.len());
}

#[test]
fn dropping_the_iterator_early_stops_the_thread() {
    let split = Arc::new(ramp_split(10_000));
    for _ in 0..20 {
        let mut it = batches(
            split.clone(),
            1,
            4,
            4,
            &BatchConfig {
                batch_size: 2,
                ..Default::default()
            },
            0,
        );
        assert!(it.next().is_some());
        drop(it); // joins the producer; a hang here fails the test by timeout
    }
    // A bad config is an error from try_batches.
    assert!(try_batches(
        split.clone(),
        1,
        4,
        4,
        &BatchConfig {
            batch_size: 0,
            ..Default::default()
        },
        0
    )
    .is_err());
    assert!(try_batches(split.clone(), 3, 4, 4, &BatchConfig::default(), 0).is_err());
    let cfg = BatchConfig {
        mean: vec![0.1, 0.2],
        std: vec![1.0, 1.0],
        ..Default::default()
    };
    assert!(try_batches(split, 1, 4, 4, &cfg, 0).is_err());
}

#[test]
fn batches_of_the_shipped_set() {
    let ds = fashion();
    let train = Arc::new(ds.train.clone());
    let mut cfg = ds.batch_config(128, 0);
    cfg.drop_last = true;
    let it = batches(train, ds.channels, ds.height, ds.width, &cfg, 0);
    assert_eq!(it.len(), 468);
    let mut n = 0;
    let mut sum = 0f64;
    for b in it.take(50) {
        assert_eq!(b.shape, [128, 1, 28, 28]);
        sum += b.images.iter().map(|&x| x as f64).sum::<f64>();
        n += b.images.len();
    }
    // Normalised with the training mean and std: the mean is close to 0.
    assert!((sum / n as f64).abs() < 0.05, "mean {}", sum / n as f64);
    let _ = std::io::stderr().flush();
}
