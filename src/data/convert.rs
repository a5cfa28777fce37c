//! Between planar C×H×W bytes and image files through the `image` crate: reading one file,
//! grey/RGB conversion, resizing (bilinear), and writing one image as PNG. Only 1- and
//! 3-channel images convert.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, GrayImage, RgbImage};
use rayon::prelude::*;

use crate::data::Split;
use crate::{Error, Result};

/// Planar C×H×W bytes (C = 1 or 3) as an `image` value.
pub fn to_image(
    pixels: &[u8],
    channels: usize,
    height: usize,
    width: usize,
) -> Result<DynamicImage> {
    let plane = height * width;
    if pixels.len() != channels * plane {
        return Err(Error::Data(format!(
            "{} bytes are not a {channels}×{height}×{width} image",
            pixels.len()
        )));
    }
    let (w, h) = (width as u32, height as u32);
    match channels {
        1 => Ok(DynamicImage::ImageLuma8(
            GrayImage::from_raw(w, h, pixels.to_vec()).expect("sizes checked"),
        )),
        3 => {
            let mut hwc = vec![0u8; 3 * plane];
            for p in 0..plane {
                for c in 0..3 {
                    hwc[p * 3 + c] = pixels[c * plane + p];
                }
            }
            Ok(DynamicImage::ImageRgb8(
                RgbImage::from_raw(w, h, hwc).expect("sizes checked"),
            ))
        }
        c => Err(Error::Data(format!(
            "cannot convert {c}-channel images (only 1 or 3)"
        ))),
    }
}

/// The most bytes an image file of `file_len` bytes may decode to: 4 MiB + 1024 × its size,
/// at most 512 MiB (the `image` crate's own default).
///
/// The decoder allocates the whole output from the width and height in the header before it
/// reads any pixel data, so without a limit tied to the file a 100-byte PNG claiming
/// 10000×10000 pixels makes a 100 MB allocation (and the default limit allows 512 MiB).
/// Real images stay far below this: photos compress 5–20×, and even a blank PNG cannot beat
/// deflate's ratio of about 1032:1; 4 MiB covers small files of large flat images.
pub fn decode_limit(file_len: u64) -> u64 {
    (4u64 << 20)
        .saturating_add(file_len.saturating_mul(1024))
        .min(512 << 20)
}

/// Decodes the image file at `path` (any format the `image` crate reads, guessed from its
/// bytes), refusing headers that claim more pixels than [`decode_limit`] allows.
pub fn decode_image(path: &Path) -> Result<DynamicImage> {
    let mut reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let file_len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let max = decode_limit(file_len);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => Error::Data(format!(
            "{}: image too large for its file: decoding it needs more than {max} bytes, the \
             most a {file_len}-byte image file may decode to (a corrupt header?)",
            path.display()
        )),
        e => Error::Data(format!("{}: unreadable image: {e}", path.display())),
    })
}

/// The image file at `path` as planar bytes of `channels` (1 or 3) × `height` × `width`
/// (resized bilinearly when its size differs).
pub fn read_image_planar(
    path: &Path,
    channels: usize,
    height: usize,
    width: usize,
) -> Result<Vec<u8>> {
    if channels != 1 && channels != 3 {
        return Err(Error::InvalidArgument(format!(
            "{channels}-channel images: only 1 (grey) and 3 (RGB) are supported"
        )));
    }
    let mut out = Vec::with_capacity(channels * height * width);
    append_planar(&decode_image(path)?, channels, height, width, &mut out);
    Ok(out)
}

/// An image resized to `height×width` (bilinear, when the size differs) and converted to
/// planar bytes with `channels` = 1 (luma) or 3 (RGB), appended to `out`.
pub fn append_planar(
    img: &DynamicImage,
    channels: usize,
    height: usize,
    width: usize,
    out: &mut Vec<u8>,
) {
    let (w, h) = (width as u32, height as u32);
    let resized;
    let img = if img.width() != w || img.height() != h {
        resized = img.resize_exact(w, h, FilterType::Triangle);
        &resized
    } else {
        img
    };
    if channels == 1 {
        match img {
            DynamicImage::ImageLuma8(g) => out.extend_from_slice(g.as_raw()),
            _ => out.extend_from_slice(img.to_luma8().as_raw()),
        }
    } else {
        let rgb = img.to_rgb8();
        let raw = rgb.as_raw();
        let plane = height * width;
        let start = out.len();
        out.resize(start + 3 * plane, 0);
        let dst = &mut out[start..];
        for p in 0..plane {
            for c in 0..3 {
                dst[c * plane + p] = raw[p * 3 + c];
            }
        }
    }
}

/// Converts every image of a split from `from` = (C, H, W) to `to` = (C, H, W). Returns the
/// split unchanged when the shapes agree.
pub fn convert_split(
    split: Split,
    from: (usize, usize, usize),
    to: (usize, usize, usize),
) -> Result<Split> {
    if from == to || split.is_empty() {
        return Ok(split);
    }
    if ![1, 3].contains(&to.0) {
        return Err(Error::Data(format!(
            "cannot convert to {}-channel images (only 1 or 3)",
            to.0
        )));
    }
    let per = from.0 * from.1 * from.2;
    let parts: Vec<Result<Vec<u8>>> = split
        .images
        .par_chunks(per)
        .map(|px| {
            let img = to_image(px, from.0, from.1, from.2)?;
            let mut out = Vec::with_capacity(to.0 * to.1 * to.2);
            append_planar(&img, to.0, to.1, to.2, &mut out);
            Ok(out)
        })
        .collect();
    let mut images = Vec::with_capacity(split.len() * to.0 * to.1 * to.2);
    for p in parts {
        images.extend_from_slice(&p?);
    }
    Ok(Split {
        images,
        labels: split.labels,
    })
}

/// Writes planar C×H×W bytes (C = 1 or 3) as a PNG file (8-bit grey or RGB).
pub fn save_png(
    path: &Path,
    pixels: &[u8],
    channels: usize,
    height: usize,
    width: usize,
) -> Result<()> {
    let img = to_image(pixels, channels, height, width)?;
    img.save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| match e {
            image::ImageError::IoError(io) => Error::io(path, io),
            e => Error::Data(format!("{}: cannot write PNG: {e}", path.display())),
        })
}
