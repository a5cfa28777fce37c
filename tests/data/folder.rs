//! Image folders: every image format, split and held-out layouts, stray files, bad inputs.

use std::path::Path;

use distill::data::{load, load_with_warnings, LoadOptions};
use distill::Error;

use crate::assert_data_err;

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
    assert_data_err(load(mixed.path(), &opts), "2.png", "must share one size");
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
