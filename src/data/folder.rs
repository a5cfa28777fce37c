//! Image folders, as torchvision's ImageFolder: one sub-folder per class (class names sorted,
//! class k = k-th name), images anywhere below it. Either `root/train/<class>/…` and
//! `root/test/<class>/…` (or `val/`), or `root/<class>/…` (or only `root/train/`) with a
//! seeded, class-stratified held-out fraction for the test split.
//!
//! Formats: whatever the `image` crate reads (PNG, JPEG, BMP, GIF, TIFF, WebP, PNM, TGA),
//! detected from the content. Images are converted to grey or RGB (auto: grey when every image
//! is grey). All images must share one size, unless a library caller sets
//! [`LoadOptions::size`], which resizes every image to it (bilinear); the command line has no
//! option for it, so a folder given to `--data` must hold images of one size.
//!
//! Checks, each an [`Error::Data`] naming the file or folder: an unreadable image, an empty
//! class folder, a folder with no class folders or no images, a test class that training lacks,
//! images of differing sizes where no size is set. A file whose extension is not an image format's is
//! skipped with one warning; hidden files (`.DS_Store`) are skipped silently.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use rayon::prelude::*;

use crate::data::convert::{append_planar, decode_image};
use crate::data::{LoadOptions, Split};
use crate::rng::Rng;
use crate::{Error, Result};

const IMAGE_EXTENSIONS: [&str; 16] = [
    "png", "jpg", "jpeg", "jpe", "bmp", "dib", "gif", "tif", "tiff", "webp", "pbm", "pgm", "ppm",
    "pnm", "pam", "tga",
];

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    v.sort();
    Ok(v)
}

fn is_hidden(p: &Path) -> bool {
    p.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Image files below `dir`, recursively, sorted by path.
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>, warnings: &mut Vec<String>) -> Result<()> {
    for p in sorted_entries(dir)? {
        if is_hidden(&p) {
            continue;
        }
        if p.is_dir() {
            collect_images(&p, out, warnings)?;
        } else if is_image_name(&p) {
            out.push(p);
        } else {
            warnings.push(format!("{}: not an image file, skipped", p.display()));
        }
    }
    Ok(())
}

/// The class folders of `dir` (sorted) with their image files.
fn scan_classes(dir: &Path, warnings: &mut Vec<String>) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let mut classes = Vec::new();
    for p in sorted_entries(dir)? {
        if !p.is_dir() || is_hidden(&p) {
            continue;
        }
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut files = Vec::new();
        collect_images(&p, &mut files, warnings)?;
        if files.is_empty() {
            return Err(Error::Data(format!(
                "{}: class folder '{name}' contains no images",
                p.display()
            )));
        }
        classes.push((name, files));
    }
    if classes.is_empty() {
        return Err(Error::Data(format!(
            "{}: no images found (expected one sub-folder of images per class)",
            dir.display()
        )));
    }
    Ok(classes)
}

/// Files with their class index.
type Labelled = Vec<(PathBuf, u32)>;

/// Splits each class's files into (train, test) with a seeded, stratified held-out fraction.
fn hold_out(classes: &[(String, Vec<PathBuf>)], fraction: f64, seed: u64) -> (Labelled, Labelled) {
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (k, (_, files)) in classes.iter().enumerate() {
        let n = files.len();
        let n_test = ((fraction * n as f64).round() as usize).min(n.saturating_sub(1));
        let mut order: Vec<usize> = (0..n).collect();
        Rng::derive(seed, "holdout", k as u64).shuffle(&mut order);
        let mut is_test = vec![false; n];
        for &i in &order[..n_test] {
            is_test[i] = true;
        }
        for (i, f) in files.iter().enumerate() {
            let dst = if is_test[i] { &mut test } else { &mut train };
            dst.push((f.clone(), k as u32));
        }
    }
    (train, test)
}

fn is_grey(img: &DynamicImage) -> bool {
    matches!(
        img,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    )
}

/// What an image folder holds once decoded.
pub struct Loaded {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub class_names: Vec<String>,
    pub train: Split,
    pub test: Split,
    pub warnings: Vec<String>,
}

/// Loads an image folder (see the module header for layouts).
pub fn load(root: &Path, opts: &LoadOptions) -> Result<Loaded> {
    let mut warnings = Vec::new();
    let train_dir = root.join("train");
    let test_dir = ["test", "val"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir());
    let (class_names, train_files, test_files) = if train_dir.is_dir() && test_dir.is_some() {
        let test_dir = test_dir.unwrap_or_default();
        let classes = scan_classes(&train_dir, &mut warnings)?;
        let names: Vec<String> = classes.iter().map(|(n, _)| n.clone()).collect();
        let train: Labelled = classes
            .iter()
            .enumerate()
            .flat_map(|(k, (_, f))| f.iter().map(move |p| (p.clone(), k as u32)))
            .collect();
        let mut test = Vec::new();
        for (name, files) in scan_classes(&test_dir, &mut warnings)? {
            let k = names.iter().position(|n| *n == name).ok_or_else(|| {
                Error::Data(format!(
                    "{}: test class '{name}' has no training folder in {}",
                    test_dir.join(&name).display(),
                    train_dir.display()
                ))
            })?;
            test.extend(files.into_iter().map(|p| (p, k as u32)));
        }
        (names, train, test)
    } else {
        if !(0.0..1.0).contains(&opts.test_fraction) {
            return Err(Error::Data(format!(
                "{}: held-out test fraction must be in [0, 1), got {}",
                root.display(),
                opts.test_fraction
            )));
        }
        let dir = if train_dir.is_dir() { &train_dir } else { root };
        let classes = scan_classes(dir, &mut warnings)?;
        let (train, test) = hold_out(&classes, opts.test_fraction, opts.seed);
        (classes.into_iter().map(|(n, _)| n).collect(), train, test)
    };

    // Decode (in parallel), resizing straight away when the size is chosen.
    let all: Vec<&(PathBuf, u32)> = train_files.iter().chain(&test_files).collect();
    let decoded: Vec<Result<DynamicImage>> = all
        .par_iter()
        .map(|(p, _)| {
            let img = decode_image(p)?;
            Ok(match opts.size {
                Some((h, w)) if (img.height() as usize, img.width() as usize) != (h, w) => {
                    let small =
                        img.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle);
                    // Keep the grey-ness visible to the channel choice below.
                    if is_grey(&img) {
                        DynamicImage::ImageLuma8(small.to_luma8())
                    } else {
                        small
                    }
                }
                _ => img,
            })
        })
        .collect();
    let images: Vec<DynamicImage> = decoded.into_iter().collect::<Result<_>>()?;
    let (height, width) = match opts.size {
        Some(s) => s,
        None => {
            let first = &images[0];
            let (h, w) = (first.height() as usize, first.width() as usize);
            for (img, (p, _)) in images.iter().zip(&all) {
                if (img.height() as usize, img.width() as usize) != (h, w) {
                    return Err(Error::Data(format!(
                        "{}: image is {}×{} (H×W) but {} is {h}×{w}: an image folder's images must share \
                         one size (resize them first; library callers can set LoadOptions::size)",
                        p.display(),
                        img.height(),
                        img.width(),
                        all[0].0.display()
                    )));
                }
            }
            (h, w)
        }
    };
    let grey = opts.grey.unwrap_or_else(|| images.iter().all(is_grey));
    let channels = if grey { 1 } else { 3 };
    let per = channels * height * width;
    let to_split = |imgs: &[DynamicImage], files: &[(PathBuf, u32)]| {
        let mut s = Split {
            images: Vec::with_capacity(imgs.len() * per),
            labels: files.iter().map(|(_, k)| *k).collect(),
        };
        for img in imgs {
            append_planar(img, channels, height, width, &mut s.images);
        }
        s
    };
    let n_train = train_files.len();
    let train = to_split(&images[..n_train], &train_files);
    let test = to_split(&images[n_train..], &test_files);
    Ok(Loaded {
        channels,
        height,
        width,
        class_names,
        train,
        test,
        warnings,
    })
}

/// Every image below `dir` (any layout: flat, or in class folders whose names are ignored),
/// sorted by path, converted to `channels × height × width`, as a split whose labels are all
/// `NO_LABEL`: the unlabelled part of a transfer set. Returns the warnings of skipped files.
pub fn load_unlabelled(
    dir: &Path,
    (channels, height, width): (usize, usize, usize),
) -> Result<(Split, Vec<String>)> {
    if !dir.is_dir() {
        return Err(Error::Data(format!(
            "{}: not a folder of images",
            dir.display()
        )));
    }
    if channels != 1 && channels != 3 {
        return Err(Error::InvalidArgument(format!(
            "{channels}-channel images: only 1 (grey) and 3 (RGB) are supported"
        )));
    }
    let mut warnings = Vec::new();
    let mut files = Vec::new();
    collect_images(dir, &mut files, &mut warnings)?;
    if files.is_empty() {
        return Err(Error::Data(format!("{}: no images found", dir.display())));
    }
    let decoded: Vec<Result<DynamicImage>> = files.par_iter().map(|p| decode_image(p)).collect();
    let mut images = Vec::with_capacity(files.len() * channels * height * width);
    for img in decoded {
        append_planar(&img?, channels, height, width, &mut images);
    }
    let labels = vec![crate::ops::NO_LABEL; files.len()];
    Ok((Split { images, labels }, warnings))
}
