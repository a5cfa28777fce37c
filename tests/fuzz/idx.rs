//! IDX files, raw and gzip: `idx::read_images` / `read_labels` on one mutated file, and
//! `data::load` on a dataset folder whose files are mutated (which adds the count agreement
//! between images and labels, and the class inference from the labels).

use std::io::Write;
use std::path::Path;

use distill::data::idx::{read_images, read_labels};
use distill::data::{load_with_warnings, LoadOptions};
use distill::rng::Rng;
use distill::Error;

use crate::{byte_mutation, run_cases, Case, Field, Mutator, Seed, Verdict};

/// An IDX file: type code, dimensions and element bytes.
fn idx_bytes(code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, code, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// Its size fields: the type code, the rank and every dimension.
fn idx_fields(rank: usize) -> Vec<Field> {
    let mut f = vec![Field::Byte(2), Field::Byte(3)];
    f.extend((0..rank).map(|i| Field::Be32(4 + 4 * i)));
    f
}

fn seed(name: &str, code: u8, dims: &[u32], data: Vec<u8>) -> Seed {
    Seed::new(name, idx_bytes(code, dims, &data), idx_fields(dims.len()))
}

fn ramp(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 37 % 256) as u8).collect()
}

fn be(values: &[i64], width: usize) -> Vec<u8> {
    values
        .iter()
        .flat_map(|&v| v.to_be_bytes()[8 - width..].to_vec())
        .collect()
}

/// Image files of every supported rank and label files of every integer type.
fn seeds() -> Vec<Seed> {
    vec![
        seed("images N×H×W", 0x08, &[3, 2, 3], ramp(18)),
        seed("images N×W", 0x08, &[4, 5], ramp(20)),
        seed("images N×H×W×C", 0x08, &[2, 2, 2, 3], ramp(24)),
        seed("images N×C×H×W", 0x08, &[2, 3, 2, 2], ramp(24)),
        seed("labels u8", 0x08, &[3], vec![0, 2, 1]),
        seed("labels N×1", 0x08, &[3, 1], vec![1, 1, 0]),
        seed("labels i8", 0x09, &[3], vec![0, 1, 2]),
        seed("labels i16", 0x0B, &[3], be(&[2, 0, 1], 2)),
        seed("labels i32", 0x0C, &[4], be(&[0, 1, 2, 3], 4)),
        seed("f32", 0x0D, &[2], be(&[0x3F80_0000, 0], 4)),
        seed("f64", 0x0E, &[1], vec![0x3F, 0xF0, 0, 0, 0, 0, 0, 0]),
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Both readers on one file: each either rejects it with `Error::Data` or returns values
/// consistent with themselves.
fn check_file(path: &Path) -> Verdict {
    match read_images(path) {
        Ok(im) => {
            if !(1..=4).contains(&im.channels) || im.height == 0 || im.width == 0 {
                return Err(format!(
                    "images of {}×{}×{}",
                    im.channels, im.height, im.width
                ));
            }
            if im.pixels.len() != im.count * im.channels * im.height * im.width {
                return Err(format!(
                    "{} pixel bytes for {} images of {}×{}×{}",
                    im.pixels.len(),
                    im.count,
                    im.channels,
                    im.height,
                    im.width
                ));
            }
        }
        Err(e) => crate::expect_variant(&e, "Data", |e| matches!(e, Error::Data(_)))?,
    }
    match read_labels(path) {
        Ok(_) => Ok(()),
        Err(e) => crate::expect_variant(&e, "Data", |e| matches!(e, Error::Data(_))),
    }
}

/// One mutated IDX file, raw.
#[test]
fn idx_raw_files() {
    let dir = crate::scratch_dir();
    let path = dir.path().join("file-idx3-ubyte");
    let m = Mutator::new(seeds());
    run_cases(
        "idx",
        0x1D5,
        3000,
        |rng| m.mutate(rng),
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            check_file(&path)
        },
    );
}

/// One mutated IDX file, gzipped: half the cases mutate the compressed stream (the gzip
/// reader), half mutate the IDX bytes and then compress them (the IDX checks behind it).
#[test]
fn idx_gzip_files() {
    let dir = crate::scratch_dir();
    let path = dir.path().join("file-idx3-ubyte.gz");
    let raw = Mutator::new(seeds());
    let gz = Mutator::new(
        seeds()
            .into_iter()
            .map(|s| Seed::new(&format!("{} gz", s.name), gzip(&s.bytes), Vec::new()))
            .collect(),
    );
    run_cases(
        "idx-gz",
        0x1D56,
        1500,
        |rng| {
            if rng.below(2) == 0 {
                gz.mutate(rng)
            } else {
                let c = raw.mutate(rng);
                Case {
                    origin: format!("gzip({})", c.origin),
                    bytes: gzip(&c.bytes),
                }
            }
        },
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            check_file(&path)
        },
    );
}

/// The four files of a dataset folder; a case replaces one of them (chosen by its first
/// byte, which is stripped) with the mutated bytes.
fn folder_seeds() -> [Vec<u8>; 4] {
    [
        idx_bytes(0x08, &[4, 2, 3], &ramp(24)),
        idx_bytes(0x08, &[4], &[0, 1, 2, 1]),
        idx_bytes(0x08, &[2, 2, 3], &ramp(12)),
        idx_bytes(0x08, &[2], &[1, 0]),
    ]
}

const FOLDER_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// `data::load` on a folder with one mutated file: a `Data` error or a consistent dataset.
#[test]
fn idx_dataset_folders() {
    let root = crate::scratch_dir();
    let dir = root.path().join("mnist-like");
    std::fs::create_dir(&dir).unwrap();
    let valid = folder_seeds();
    // Label files of the other integer types, which can hold labels up to 2^31 − 1.
    let mut all: Vec<Seed> = valid
        .iter()
        .enumerate()
        .map(|(i, b)| Seed::new(FOLDER_FILES[i], b.clone(), idx_fields(b[3] as usize)))
        .collect();
    all.push(seed("train labels i32", 0x0C, &[4], be(&[0, 1, 2, 3], 4)));
    all.push(seed("train labels i16", 0x0B, &[4], be(&[3, 1, 2, 0], 2)));
    let m = Mutator::new(all.clone());
    run_cases(
        "idx-folder",
        0xF01D,
        1500,
        |rng: &mut Rng| {
            let s = &all[rng.below(all.len())];
            let slot = FOLDER_FILES.iter().position(|f| s.name == *f).unwrap_or(1) as u8;
            let mut bytes = s.bytes.clone();
            let mut done = vec![s.name.clone()];
            for _ in 0..1 + rng.below(2) {
                done.push(m.mutate_once(rng, s, &mut bytes));
            }
            if rng.below(8) == 0 {
                done.push(byte_mutation(rng, &mut bytes, &all));
            }
            bytes.insert(0, slot);
            Case {
                origin: done.join(" → "),
                bytes,
            }
        },
        |bytes| {
            let slot = bytes.first().map_or(0, |&b| b as usize % 4);
            for (i, name) in FOLDER_FILES.iter().enumerate() {
                let content = if i == slot {
                    bytes.get(1..).unwrap_or_default()
                } else {
                    &valid[i][..]
                };
                std::fs::write(dir.join(name), content).unwrap();
            }
            match load_with_warnings(&dir, &LoadOptions::default()).map(|(ds, _)| ds) {
                Ok(ds) => {
                    let per = ds.channels * ds.height * ds.width;
                    for s in [&ds.train, &ds.test] {
                        if per == 0 || s.images.len() != s.len() * per {
                            return Err(format!(
                                "{} bytes for {} images of {per}",
                                s.images.len(),
                                s.len()
                            ));
                        }
                        if let Some(l) = s.labels.iter().find(|&&l| l as usize >= ds.num_classes())
                        {
                            return Err(format!("label {l} of {} classes", ds.num_classes()));
                        }
                    }
                    Ok(())
                }
                Err(e) => crate::expect_variant(&e, "Data", |e| matches!(e, Error::Data(_))),
            }
        },
    );
}
