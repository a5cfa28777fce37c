//! Datasets and batching. [`load`] reads a folder in any supported format (IDX, CIFAR-10/100
//! binaries, image folders) into a [`Dataset`]: raw bytes for a training and a test [`Split`],
//! the image shape, class names and the training split's per-channel mean and std. [`batches`]
//! turns a split into shuffled, augmented, normalised f32 batches on a background thread.
//!
//! Files: `idx.rs`, `cifar.rs`, `folder.rs` (formats), `split.rs` (subsets), `convert.rs`
//! (grey/RGB, resizing, PNG), `batch.rs` (batching).

mod batch;
pub mod cifar;
mod convert;
mod folder;
pub mod idx;
mod input;
mod split;

use std::path::{Path, PathBuf};

use rayon::prelude::*;

pub use batch::{
    batches, epoch_order, num_batches, try_batches, Augment, Batch, BatchConfig, BatchIter,
    Batcher, QUEUE_DEPTH,
};
pub use convert::{convert_split, decode_image, decode_limit, read_image_planar, save_png};
pub use folder::load_unlabelled;
pub use input::InputSpec;
pub use split::Split;

use crate::{Error, Result};

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// How to load a dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadOptions {
    /// Resize every image to (height, width). None: keep the stored size (image folders: all
    /// images must share one size).
    pub size: Option<(usize, usize)>,
    /// Some(true): convert to 1 grey channel; Some(false): to 3 RGB channels; None: keep
    /// (image folders: grey when every image is grey).
    pub grey: Option<bool>,
    /// Image folders without a `test/` folder: the fraction of each class held out for test.
    pub test_fraction: f64,
    /// Seed of the held-out split.
    pub seed: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            size: None,
            grey: None,
            test_fraction: 0.2,
            seed: 0,
        }
    }
}

/// The formats [`load`] recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Idx,
    Cifar10,
    Cifar100,
    ImageFolder,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    pub train: Split,
    pub test: Split,
    /// Per-channel mean of the training split, 0..1 scale.
    pub mean: Vec<f32>,
    /// Per-channel (population) std of the training split, 0..1 scale; 1 where it is 0.
    pub std: Vec<f32>,
}

impl Dataset {
    /// A dataset from its splits: checks the shapes and labels, computes mean and std.
    pub fn from_splits(
        name: impl Into<String>,
        (channels, height, width): (usize, usize, usize),
        class_names: Vec<String>,
        train: Split,
        test: Split,
    ) -> Result<Dataset> {
        let name = name.into();
        let per = channels * height * width;
        for (what, s) in [("training", &train), ("test", &test)] {
            if per == 0 || s.images.len() != s.len() * per {
                return Err(Error::Data(format!(
                    "{name}: {what} split has {} bytes for {} images of {channels}×{height}×{width}",
                    s.images.len(),
                    s.len()
                )));
            }
            if let Some(&l) = s.labels.iter().find(|&&l| l as usize >= class_names.len()) {
                return Err(Error::Data(format!(
                    "{name}: {what} label {l} is out of range for {} classes",
                    class_names.len()
                )));
            }
        }
        if train.is_empty() {
            return Err(Error::Data(format!("{name}: no training images")));
        }
        let (mean, std) = channel_stats(&train, channels);
        Ok(Dataset {
            name,
            channels,
            height,
            width,
            class_names,
            train,
            test,
            mean,
            std,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes per image, C·H·W.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// A training batch config with this dataset's normalisation (shuffled, no augmentation).
    pub fn batch_config(&self, batch_size: usize, seed: u64) -> BatchConfig {
        BatchConfig {
            batch_size,
            seed,
            mean: self.mean.clone(),
            std: self.std.clone(),
            ..Default::default()
        }
    }

    /// Writes image `i` of `split` as PNG.
    pub fn save_png(&self, split: &Split, i: usize, path: &Path) -> Result<()> {
        save_png(path, split.image(i), self.channels, self.height, self.width)
    }
}

/// Per-channel mean and population std of a split's images on the 0..1 scale (std 1 where
/// it would be 0). Exact integer sums, so the result does not depend on thread count.
pub fn channel_stats(split: &Split, channels: usize) -> (Vec<f32>, Vec<f32>) {
    let per = split.image_len();
    if per == 0 || channels == 0 {
        return (vec![0.0; channels], vec![1.0; channels]);
    }
    let plane = per / channels;
    // Byte histograms per channel, summed over chunks of images in parallel.
    let hist = split
        .images
        .par_chunks(per * 256)
        .map(|chunk| {
            let mut h = vec![[0u64; 256]; channels];
            for img in chunk.chunks_exact(per) {
                for (c, hc) in h.iter_mut().enumerate() {
                    for &v in &img[c * plane..(c + 1) * plane] {
                        hc[v as usize] += 1;
                    }
                }
            }
            h
        })
        .reduce(
            || vec![[0u64; 256]; channels],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(&b) {
                    for (p, q) in x.iter_mut().zip(y) {
                        *p += q;
                    }
                }
                a
            },
        );
    let mut mean = Vec::with_capacity(channels);
    let mut std = Vec::with_capacity(channels);
    for h in &hist {
        let n: u64 = h.iter().sum();
        let s: u128 = h
            .iter()
            .enumerate()
            .map(|(v, &k)| v as u128 * k as u128)
            .sum();
        let s2: u128 = h
            .iter()
            .enumerate()
            .map(|(v, &k)| (v * v) as u128 * k as u128)
            .sum();
        let m = s as f64 / n as f64;
        let var = (s2 as f64 / n as f64 - m * m).max(0.0);
        let sd = var.sqrt() / 255.0;
        mean.push((m / 255.0) as f32);
        std.push(if sd > 0.0 { sd as f32 } else { 1.0 });
    }
    (mean, std)
}

/// Which format the folder at `path` holds.
pub fn detect_format(path: &Path) -> Result<Format> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Err(Error::Data(format!(
            "{}: not a folder (give the folder that holds the dataset's files)",
            path.display()
        )));
    }
    if idx::find_files(path)?.is_some() {
        return Ok(Format::Idx);
    }
    if let Some(f) = cifar::find_files(path)? {
        return Ok(match f.kind {
            cifar::CifarKind::Cifar10 => Format::Cifar10,
            cifar::CifarKind::Cifar100 => Format::Cifar100,
        });
    }
    Ok(Format::ImageFolder)
}

fn folder_name(path: &Path) -> String {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dataset".into())
}

/// The most classes an IDX dataset without declared class names may have (its largest label
/// + 1). Far above any real dataset's (EMNIST has 62, ImageNet-21k 21,841).
pub const MAX_INFERRED_CLASSES: usize = 1 << 16;

/// Class names of an IDX dataset, and a warning when they were inferred.
///
/// Declared names come from `classes.txt` (one per line) or, for a folder whose name says
/// fashion, Fashion-MNIST's ten; every label must then be below their count (a label at or
/// above it is a corrupt file, not a new class). Only data with no declared classes infers
/// them from the largest label ("0", "1", …), which must be below [`MAX_INFERRED_CLASSES`].
fn idx_class_names(
    dir: &Path,
    name: &str,
    files: &idx::IdxFiles,
    train: &Split,
    test: &Split,
) -> Result<(Vec<String>, Option<String>)> {
    let declared = match std::fs::read_to_string(dir.join("classes.txt")) {
        Ok(text) => Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect::<Vec<_>>(),
        ),
        Err(_) if name.to_ascii_lowercase().contains("fashion") => Some(
            FASHION_MNIST_CLASSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        Err(_) => None,
    };
    if let Some(names) = declared {
        if names.is_empty() {
            return Err(Error::Data(format!(
                "{}: classes.txt names no classes",
                dir.display()
            )));
        }
        for (labels_file, split) in [(&files.train_labels, train), (&files.test_labels, test)] {
            if let Some(i) = split.labels.iter().position(|&l| l as usize >= names.len()) {
                return Err(Error::Data(format!(
                    "{}: label {} of image {i} is not one of the dataset's {} classes (0..{})",
                    labels_file.display(),
                    split.labels[i],
                    names.len(),
                    names.len() - 1
                )));
            }
        }
        return Ok((names, None));
    }
    // Inferred classes are a table indexed by label: a label from a corrupt file (an i32 label
    // file can hold 2^31 − 1) must not size it.
    for (labels_file, split) in [(&files.train_labels, train), (&files.test_labels, test)] {
        if let Some(i) = split
            .labels
            .iter()
            .position(|&l| l as usize >= MAX_INFERRED_CLASSES)
        {
            return Err(Error::Data(format!(
                "{}: label {} of image {i} is too large: without a classes.txt the classes are \
                 inferred from the largest label, and at most {MAX_INFERRED_CLASSES} are (add a \
                 classes.txt to declare them)",
                labels_file.display(),
                split.labels[i],
            )));
        }
    }
    let k = train.class_counts(0).len().max(test.class_counts(0).len());
    let warning = format!(
        "{}: no classes.txt; {k} classes inferred from the labels (0..{})",
        dir.display(),
        k.saturating_sub(1)
    );
    Ok(((0..k).map(|i| i.to_string()).collect(), Some(warning)))
}

/// Loads the dataset in the folder at `path`, detecting its format; warnings (skipped files)
/// go to stderr. See [`load_with_warnings`].
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let (ds, warnings) = load_with_warnings(path, opts)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    Ok(ds)
}

/// Loads the dataset in the folder at `path` and returns the warnings instead of printing
/// them. IDX and CIFAR images are converted too when `opts` asks for another size or
/// channel count.
pub fn load_with_warnings(path: &Path, opts: &LoadOptions) -> Result<(Dataset, Vec<String>)> {
    let format = detect_format(path)?;
    let name = match format {
        Format::Cifar10 => "cifar-10".to_string(),
        Format::Cifar100 => "cifar-100".to_string(),
        _ => folder_name(path),
    };
    let (shape, class_names, train, test, warnings) = match format {
        Format::Idx => {
            let files = idx::find_files(path)?.expect("detected");
            let (c, h, w, train, test) = idx::load(&files)?;
            let (names, inferred) = idx_class_names(path, &name, &files, &train, &test)?;
            (
                (c, h, w),
                names,
                train,
                test,
                inferred.into_iter().collect(),
            )
        }
        Format::Cifar10 | Format::Cifar100 => {
            let files = cifar::find_files(path)?.expect("detected");
            let (names, train, test) = cifar::load(&files)?;
            ((3, 32, 32), names, train, test, Vec::new())
        }
        Format::ImageFolder => {
            let l = folder::load(path, opts)?;
            let shape = (l.channels, l.height, l.width);
            (shape, l.class_names, l.train, l.test, l.warnings)
        }
    };
    let target = (
        match opts.grey {
            Some(true) => 1,
            Some(false) => 3,
            None => shape.0,
        },
        opts.size.map_or(shape.1, |s| s.0),
        opts.size.map_or(shape.2, |s| s.1),
    );
    let (train, test) = if target != shape {
        let (a, b) = rayon::join(
            || convert_split(train, shape, target),
            || convert_split(test, shape, target),
        );
        (a?, b?)
    } else {
        (train, test)
    };
    let ds = Dataset::from_splits(name, target, class_names, train, test)?;
    Ok((ds, warnings))
}

/// Where the shipped Fashion-MNIST lives: `$DISTILL_DATA` when set, else
/// `./datasets/fashion-mnist` when it exists, else the one next to this crate's sources.
pub fn default_data_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("DISTILL_DATA") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let local = PathBuf::from("datasets").join("fashion-mnist");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets")
        .join("fashion-mnist")
}
