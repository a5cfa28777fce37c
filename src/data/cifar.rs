//! CIFAR-10 and CIFAR-100 binary batches (the "binary version" from the CIFAR site).
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, each a run of 3073-byte records: 1 label byte (0–9), then 3072 pixel
//! bytes, already planar (1024 red, 1024 green, 1024 blue, rows top to bottom). Class names
//! come from `batches.meta.txt` when present.
//! CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, 3074-byte records: coarse
//! label (0–19), fine label (0–99), 3072 pixel bytes. We use the fine labels; class names come
//! from `fine_label_names.txt` when present.
//!
//! Checks, each an [`Error::Data`] naming the file: a size that is zero or not a whole number
//! of records, a label out of range, a missing training or test file. Files may be gzipped.

use std::path::{Path, PathBuf};

use crate::data::idx::read_maybe_gz;
use crate::data::Split;
use crate::{Error, Result};

pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

pub const PIXELS: usize = 3 * 32 * 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    Cifar10,
    Cifar100,
}

impl CifarKind {
    fn label_bytes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 1,
            CifarKind::Cifar100 => 2,
        }
    }
    fn classes(self) -> usize {
        match self {
            CifarKind::Cifar10 => 10,
            CifarKind::Cifar100 => 100,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            CifarKind::Cifar10 => "cifar-10",
            CifarKind::Cifar100 => "cifar-100",
        }
    }
}

/// The files of a CIFAR dataset found in one folder.
#[derive(Clone, Debug)]
pub struct CifarFiles {
    pub kind: CifarKind,
    pub dir: PathBuf,
    pub train: Vec<PathBuf>,
    pub test: PathBuf,
}

fn strip_gz(name: &str) -> &str {
    name.strip_suffix(".gz").unwrap_or(name)
}

/// Looks for CIFAR binaries in `dir` (or its `cifar-10-batches-bin/`, `cifar-100-binary/`
/// sub-folder). `Ok(None)` when there are none; an error when a needed file is missing.
pub fn find_files(dir: &Path) -> Result<Option<CifarFiles>> {
    for sub in ["cifar-10-batches-bin", "cifar-100-binary"] {
        let d = dir.join(sub);
        if d.is_dir() {
            if let Some(f) = find_in(&d)? {
                return Ok(Some(f));
            }
        }
    }
    find_in(dir)
}

fn find_in(dir: &Path) -> Result<Option<CifarFiles>> {
    let mut train10: Vec<(u32, PathBuf)> = Vec::new();
    let (mut test10, mut train100, mut test100) = (None, None, None);
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if !p.is_file() {
            continue;
        }
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let name = strip_gz(name).to_string();
        if let Some(num) = name
            .strip_prefix("data_batch_")
            .and_then(|r| r.strip_suffix(".bin"))
        {
            if let Ok(k) = num.parse::<u32>() {
                train10.push((k, p));
            }
        } else if name == "test_batch.bin" {
            test10 = Some(p);
        } else if name == "train.bin" {
            train100 = Some(p);
        } else if name == "test.bin" {
            test100 = Some(p);
        }
    }
    train10.sort();
    let missing = |what: &str| {
        Error::Data(format!(
            "{}: CIFAR dataset is missing {what}",
            dir.display()
        ))
    };
    if !train10.is_empty() || test10.is_some() {
        if train10.is_empty() {
            return Err(missing("data_batch_*.bin (the training batches)"));
        }
        return Ok(Some(CifarFiles {
            kind: CifarKind::Cifar10,
            dir: dir.to_path_buf(),
            train: train10.into_iter().map(|(_, p)| p).collect(),
            test: test10.ok_or_else(|| missing("test_batch.bin"))?,
        }));
    }
    if train100.is_some() || test100.is_some() {
        return Ok(Some(CifarFiles {
            kind: CifarKind::Cifar100,
            dir: dir.to_path_buf(),
            train: vec![train100.ok_or_else(|| missing("train.bin"))?],
            test: test100.ok_or_else(|| missing("test.bin"))?,
        }));
    }
    Ok(None)
}

/// Reads one binary batch file, appending its images and labels to `out`.
pub fn read_batch(path: &Path, kind: CifarKind, out: &mut Split) -> Result<()> {
    let bytes = read_maybe_gz(path)?;
    let lb = kind.label_bytes();
    let rec = lb + PIXELS;
    if bytes.is_empty() || bytes.len() % rec != 0 {
        return Err(Error::Data(format!(
            "{}: size {} bytes is not a whole, non-zero number of {rec}-byte {} records",
            path.display(),
            bytes.len(),
            kind.name()
        )));
    }
    let n = bytes.len() / rec;
    out.images.reserve(n * PIXELS);
    out.labels.reserve(n);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        let label = r[lb - 1] as u32;
        if label as usize >= kind.classes() {
            return Err(Error::Data(format!(
                "{}: record {i} has label {label}, {} labels are 0..{}",
                path.display(),
                kind.name(),
                kind.classes() - 1
            )));
        }
        if kind == CifarKind::Cifar100 && r[0] >= 20 {
            return Err(Error::Data(format!(
                "{}: record {i} has coarse label {}, CIFAR-100 coarse labels are 0..19",
                path.display(),
                r[0]
            )));
        }
        out.labels.push(label);
        out.images.extend_from_slice(&r[lb..]);
    }
    Ok(())
}

fn class_names(files: &CifarFiles) -> Vec<String> {
    let (file, builtin): (&str, &[&str]) = match files.kind {
        CifarKind::Cifar10 => ("batches.meta.txt", &CIFAR10_CLASSES),
        CifarKind::Cifar100 => ("fine_label_names.txt", &CIFAR100_CLASSES),
    };
    if let Ok(text) = std::fs::read_to_string(files.dir.join(file)) {
        let names: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if names.len() == builtin.len() {
            return names;
        }
    }
    builtin.iter().map(|s| s.to_string()).collect()
}

/// Loads a CIFAR dataset: (class names, train, test). Images are 3×32×32.
pub fn load(files: &CifarFiles) -> Result<(Vec<String>, Split, Split)> {
    let (train, test) = rayon::join(
        || -> Result<Split> {
            let mut s = Split::default();
            for p in &files.train {
                read_batch(p, files.kind, &mut s)?;
            }
            Ok(s)
        },
        || -> Result<Split> {
            let mut s = Split::default();
            read_batch(&files.test, files.kind, &mut s)?;
            Ok(s)
        },
    );
    Ok((class_names(files), train?, test?))
}
