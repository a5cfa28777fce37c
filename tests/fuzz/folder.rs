//! Image folders through `data::load`: a class folder holding one mutated PNG or JPEG next to
//! a class holding the valid original.

use std::io::Cursor;
use std::path::Path;

use distill::data::{load_with_warnings, LoadOptions};
use distill::rng::Rng;
use distill::Error;
use image::{DynamicImage, ImageFormat};

use crate::{run_cases, Case, Field, Mutator, Seed};

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// PNG: the IHDR's width, height, bit depth and colour type.
const PNG_FIELDS: [Field; 4] = [
    Field::Be32(16),
    Field::Be32(20),
    Field::Byte(24),
    Field::Byte(25),
];

/// JPEG: the frame header's precision, height, width and component count.
fn jpeg_fields(b: &[u8]) -> Vec<Field> {
    let sof = b
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline frame header");
    vec![
        Field::Byte(sof + 4),
        Field::Be16(sof + 5),
        Field::Be16(sof + 7),
        Field::Byte(sof + 9),
    ]
}

fn seeds() -> Vec<Seed> {
    let grey = image::GrayImage::from_fn(4, 4, |x, y| image::Luma([(x * 50 + y * 13) as u8]));
    let rgb = image::RgbImage::from_fn(3, 3, |x, y| image::Rgb([x as u8 * 80, y as u8 * 80, 7]));
    let rgba16 = image::ImageBuffer::from_fn(2, 2, |x, y| {
        image::Rgba([x as u16 * 9000, 3, y as u16, 65535])
    });
    let jpeg_rgb =
        image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 * 30, y as u8 * 30, 99]));
    let jpeg_grey = image::GrayImage::from_fn(8, 8, |x, y| image::Luma([(x * y) as u8 * 4]));
    let png = |name: &str, img: DynamicImage| {
        Seed::new(name, encode(img, ImageFormat::Png), PNG_FIELDS.to_vec())
    };
    let jpeg = |name: &str, img: DynamicImage| {
        let b = encode(img, ImageFormat::Jpeg);
        let f = jpeg_fields(&b);
        Seed::new(name, b, f)
    };
    vec![
        png("png grey 4×4", DynamicImage::ImageLuma8(grey)),
        png("png rgb 3×3", DynamicImage::ImageRgb8(rgb)),
        png("png rgba16 2×2", DynamicImage::ImageRgba16(rgba16)),
        jpeg("jpeg rgb 8×8", DynamicImage::ImageRgb8(jpeg_rgb)),
        jpeg("jpeg grey 8×8", DynamicImage::ImageLuma8(jpeg_grey)),
    ]
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Recomputes a PNG's IHDR checksum, so that a mutated header reaches the decoder's size
/// checks instead of stopping at the checksum.
fn fix_ihdr_crc(b: &mut [u8]) {
    if b.len() >= 33 && &b[12..16] == b"IHDR" {
        let crc = crc32(&b[12..29]);
        b[29..33].copy_from_slice(&crc.to_be_bytes());
    }
}

fn write_folder(root: &Path, ext: &str, mutated: &[u8], valid: &[u8]) {
    let _ = std::fs::remove_dir_all(root);
    for (class, bytes) in [("a", mutated), ("b", valid)] {
        let d = root.join(class);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("img.{ext}")), bytes).unwrap();
    }
}

/// A case's first byte picks the seed (the valid image of class `b` and the file extension)
/// and whether to resize to 4×4.
#[test]
fn image_folders() {
    let tmp = crate::scratch_dir();
    let root = tmp.path().join("images");
    let seeds = seeds();
    let m = Mutator::new(seeds.clone());
    run_cases(
        "folder",
        0xF07D,
        1200,
        |rng: &mut Rng| {
            let k = rng.below(seeds.len());
            let resize = rng.below(4) == 0;
            let s = &seeds[k];
            let mut bytes = s.bytes.clone();
            let mut done = vec![s.name.clone()];
            for _ in 0..1 + rng.below(3) {
                done.push(m.mutate_once(rng, s, &mut bytes));
            }
            if rng.below(4) != 0 {
                fix_ihdr_crc(&mut bytes);
            }
            if resize {
                done.push("resized to 4×4".into());
            }
            bytes.insert(0, k as u8 | (resize as u8) << 7);
            Case {
                origin: done.join(" → "),
                bytes,
            }
        },
        |bytes| {
            let tag = bytes.first().copied().unwrap_or(0);
            let s = &seeds[(tag & 0x7F) as usize % seeds.len()];
            let ext = if s.name.starts_with("png") {
                "png"
            } else {
                "jpg"
            };
            write_folder(&root, ext, bytes.get(1..).unwrap_or_default(), &s.bytes);
            let opts = LoadOptions {
                size: (tag & 0x80 != 0).then_some((4, 4)),
                ..LoadOptions::default()
            };
            match load_with_warnings(&root, &opts).map(|(ds, _)| ds) {
                Ok(ds) => {
                    let per = ds.channels * ds.height * ds.width;
                    if ![1, 3].contains(&ds.channels) || per == 0 || ds.num_classes() != 2 {
                        return Err(format!(
                            "{}×{}×{} images, {} classes",
                            ds.channels,
                            ds.height,
                            ds.width,
                            ds.num_classes()
                        ));
                    }
                    if opts.size.is_some_and(|s| s != (ds.height, ds.width)) {
                        return Err(format!("not resized: {}×{}", ds.height, ds.width));
                    }
                    for s in [&ds.train, &ds.test] {
                        if s.images.len() != s.len() * per || s.labels.iter().any(|&l| l >= 2) {
                            return Err(format!(
                                "{} bytes for {} images of {per}, labels {:?}",
                                s.images.len(),
                                s.len(),
                                s.labels
                            ));
                        }
                    }
                    if ds.train.len() != 2 {
                        return Err(format!("{} training images of 2", ds.train.len()));
                    }
                    Ok(())
                }
                Err(e) => crate::expect_variant(&e, "Data", |e| matches!(e, Error::Data(_))),
            }
        },
    );
}
