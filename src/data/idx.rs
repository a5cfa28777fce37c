//! IDX files (the MNIST family's format: MNIST, Fashion-MNIST, KMNIST, EMNIST), raw or gzip.
//!
//! Layout: a 4-byte magic number `00 00 TT RR` (TT = element type: 08 u8, 09 i8, 0B i16,
//! 0C i32, 0D f32, 0E f64; RR = rank), then RR big-endian u32 dimensions, then the elements,
//! big-endian, row-major. Gzip is recognised by its own magic bytes (1F 8B), not by the name.
//!
//! Checks, each an [`Error::Data`] naming the file: a truncated or corrupt gzip stream, a bad
//! magic number (non-zero first bytes, unknown type, rank 0), a header cut short, data shorter
//! or longer than the dimensions say, a zero dimension; image files must hold u8 elements of
//! rank 2 (N×W), 3 (N×H×W) or 4 (N×H×W×C when the last dimension is ≤ 4, else N×C×H×W);
//! label files must hold rank-1 non-negative integers; image and label counts must agree.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::data::Split;
use crate::{Error, Result};

/// The element type named by an IDX magic number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxType {
    U8,
    I8,
    I16,
    I32,
    F32,
    F64,
}

impl IdxType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x08 => IdxType::U8,
            0x09 => IdxType::I8,
            0x0B => IdxType::I16,
            0x0C => IdxType::I32,
            0x0D => IdxType::F32,
            0x0E => IdxType::F64,
            _ => return None,
        })
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            IdxType::U8 | IdxType::I8 => 1,
            IdxType::I16 => 2,
            IdxType::I32 | IdxType::F32 => 4,
            IdxType::F64 => 8,
        }
    }
}

/// One IDX file as stored: its element type, dimensions and the element bytes (big-endian,
/// header removed).
#[derive(Clone, Debug)]
pub struct IdxArray {
    pub path: PathBuf,
    pub dtype: IdxType,
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Images read from an IDX file, converted to planar N×C×H×W bytes.
#[derive(Clone, Debug)]
pub struct IdxImages {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
    pub count: usize,
}

fn data_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Data(format!("{}: {what}", path.display()))
}

/// Reads a whole file, transparently gunzipping it when it starts with the gzip magic bytes.
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    gunzip_if_gz(path, raw)
}

/// `raw` gunzipped when it starts with the gzip magic bytes, else as it is; `path` names it
/// in errors.
pub fn gunzip_if_gz(path: &Path, raw: Vec<u8>) -> Result<Vec<u8>> {
    if raw.len() < 2 || raw[0] != 0x1F || raw[1] != 0x8B {
        return Ok(raw);
    }
    // The gzip trailer holds the uncompressed size mod 2^32: a capacity hint, capped so a
    // corrupt trailer cannot ask for absurd memory.
    let hint = if raw.len() >= 18 {
        let t = &raw[raw.len() - 4..];
        u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize
    } else {
        0
    };
    let mut out = Vec::with_capacity(hint.min(raw.len().saturating_mul(64)));
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| data_err(path, format_args!("truncated or corrupt gzip stream ({e})")))?;
    Ok(out)
}

/// Reads and checks one IDX file (raw or gzip) of any type and rank.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    parse_idx(path, read_maybe_gz(path)?)
}

/// Checks and parses the bytes of one (gunzipped) IDX file; `path` names it in errors.
pub fn parse_idx(path: &Path, mut buf: Vec<u8>) -> Result<IdxArray> {
    if buf.len() < 4 {
        return Err(data_err(
            path,
            format_args!("too short for an IDX header ({} bytes)", buf.len()),
        ));
    }
    let magic = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let dtype = IdxType::from_code(buf[2]);
    let rank = buf[3] as usize;
    let dtype = match dtype {
        Some(t) if buf[0] == 0 && buf[1] == 0 && rank > 0 => t,
        _ => {
            return Err(data_err(
                path,
                format_args!(
                    "bad IDX magic number 0x{magic:08X} (expected 0x0000TTRR with type TT in \
                     08,09,0B,0C,0D,0E and rank RR ≥ 1, e.g. 0x00000803 for images, \
                     0x00000801 for labels)"
                ),
            ))
        }
    };
    let header = 4 + 4 * rank;
    if buf.len() < header {
        return Err(data_err(
            path,
            format_args!(
                "IDX header cut short: rank {rank} needs {header} header bytes, file has {}",
                buf.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([buf[o], buf[o + 1], buf[o + 2], buf[o + 3]]) as usize
        })
        .collect();
    if dims.contains(&0) {
        return Err(data_err(
            path,
            format_args!("IDX dimensions {dims:?} contain a zero"),
        ));
    }
    let expected = dims
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| data_err(path, format_args!("IDX dimensions {dims:?} overflow")))?;
    let found = buf.len() - header;
    if found != expected {
        let what = if found < expected {
            "truncated"
        } else {
            "too long"
        };
        return Err(data_err(
            path,
            format_args!(
                "IDX data {what}: dimensions {} of {dtype:?} need {expected} bytes, found {found}",
                fmt_dims(&dims)
            ),
        ));
    }
    buf.drain(..header);
    Ok(IdxArray {
        path: path.to_path_buf(),
        dtype,
        dims,
        data: buf,
    })
}

fn fmt_dims(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Reads an IDX image file into planar N×C×H×W bytes (see the module header for ranks).
pub fn read_images(path: &Path) -> Result<IdxImages> {
    images_of(read_idx(path)?)
}

/// [`read_images`] of a file's bytes (raw or gzip), named `name` in errors: what a page
/// fetched.
pub fn images_from_bytes(name: &Path, raw: Vec<u8>) -> Result<IdxImages> {
    images_of(parse_idx(name, gunzip_if_gz(name, raw)?)?)
}

fn images_of(a: IdxArray) -> Result<IdxImages> {
    let path = a.path.as_path();
    if a.dtype != IdxType::U8 {
        return Err(data_err(
            path,
            format_args!(
                "IDX images must be unsigned bytes (type 0x08), this file holds {:?}",
                a.dtype
            ),
        ));
    }
    let n = a.dims[0];
    let (c, h, w, hwc) = match a.dims[..] {
        [_, w] => (1, 1, w, false),
        [_, h, w] => (1, h, w, false),
        [_, h, w, c] if c <= 4 => (c, h, w, true),
        [_, c, h, w] if c <= 4 => (c, h, w, false),
        _ => {
            return Err(data_err(
                path,
                format_args!(
                    "IDX images of dimensions {} are not supported (rank 2 N×W, 3 N×H×W, or 4 \
                     N×H×W×C / N×C×H×W with at most 4 channels)",
                    fmt_dims(&a.dims)
                ),
            ))
        }
    };
    let pixels = if hwc && c > 1 {
        let mut out = vec![0u8; a.data.len()];
        let plane = h * w;
        for (src, dst) in a
            .data
            .chunks_exact(c * plane)
            .zip(out.chunks_exact_mut(c * plane))
        {
            for p in 0..plane {
                for ch in 0..c {
                    dst[ch * plane + p] = src[p * c + ch];
                }
            }
        }
        out
    } else {
        a.data
    };
    Ok(IdxImages {
        channels: c,
        height: h,
        width: w,
        pixels,
        count: n,
    })
}

/// Reads an IDX label file: rank 1 (or N×1), integer elements, none negative.
pub fn read_labels(path: &Path) -> Result<Vec<u32>> {
    labels_of(read_idx(path)?)
}

/// [`read_labels`] of a file's bytes (raw or gzip), named `name` in errors.
pub fn labels_from_bytes(name: &Path, raw: Vec<u8>) -> Result<Vec<u32>> {
    labels_of(parse_idx(name, gunzip_if_gz(name, raw)?)?)
}

fn labels_of(a: IdxArray) -> Result<Vec<u32>> {
    let path = a.path.as_path();
    let ok_shape = a.dims.len() == 1 || (a.dims.len() == 2 && a.dims[1] == 1);
    if !ok_shape {
        return Err(data_err(
            path,
            format_args!(
                "IDX labels must have rank 1, this file has dimensions {}",
                fmt_dims(&a.dims)
            ),
        ));
    }
    let labels: Vec<i64> = match a.dtype {
        IdxType::U8 => return Ok(a.data.iter().map(|&b| b as u32).collect()),
        IdxType::I8 => a.data.iter().map(|&b| b as i8 as i64).collect(),
        IdxType::I16 => a
            .data
            .chunks_exact(2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]) as i64)
            .collect(),
        IdxType::I32 => a
            .data
            .chunks_exact(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as i64)
            .collect(),
        t => {
            return Err(data_err(
                path,
                format_args!("IDX labels must be integers, this file holds {t:?}"),
            ))
        }
    };
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u32::try_from(l)
                .map_err(|_| data_err(path, format_args!("label {i} is negative ({l})")))
        })
        .collect()
}

/// The four files of an IDX dataset folder.
#[derive(Clone, Debug)]
pub struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

/// Which slot (0 train images, 1 train labels, 2 test images, 3 test labels) a file name
/// fills: names like `train-images-idx3-ubyte(.gz)`, `t10k-labels.idx1-ubyte`,
/// `emnist-letters-test-images-idx3-ubyte.gz`.
fn slot(name: &str) -> Option<usize> {
    let n = name.to_ascii_lowercase();
    let stem = n.strip_suffix(".gz").unwrap_or(&n);
    if !stem.contains("idx") || !stem.ends_with("ubyte") {
        return None;
    }
    let split = if n.contains("train") {
        0
    } else if n.contains("t10k") || n.contains("test") {
        2
    } else {
        return None;
    };
    let kind = if n.contains("images") {
        0
    } else if n.contains("labels") {
        1
    } else {
        return None;
    };
    Some(split + kind)
}

/// Finds IDX files in `dir`. `Ok(None)` when there are none at all; an error naming the
/// missing file when only some are there. Raw files win over gzipped copies.
pub fn find_files(dir: &Path) -> Result<Option<IdxFiles>> {
    let mut slots: [Option<PathBuf>; 4] = Default::default();
    let mut any = false;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for p in entries {
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(s) = slot(name) {
            any = true;
            let gz = name.to_ascii_lowercase().ends_with(".gz");
            let replace = match &slots[s] {
                None => true,
                Some(old) => old.to_string_lossy().to_ascii_lowercase().ends_with(".gz") && !gz,
            };
            if replace {
                slots[s] = Some(p);
            }
        }
    }
    if !any {
        return Ok(None);
    }
    let names = [
        "train-images-idx3-ubyte[.gz]",
        "train-labels-idx1-ubyte[.gz]",
        "t10k-images-idx3-ubyte[.gz]",
        "t10k-labels-idx1-ubyte[.gz]",
    ];
    let [a, b, c, d] = slots;
    let get = |p: Option<PathBuf>, i: usize| {
        p.ok_or_else(|| {
            Error::Data(format!(
                "{}: IDX dataset is missing {}",
                dir.display(),
                names[i]
            ))
        })
    };
    Ok(Some(IdxFiles {
        train_images: get(a, 0)?,
        train_labels: get(b, 1)?,
        test_images: get(c, 2)?,
        test_labels: get(d, 3)?,
    }))
}

/// Reads one split (images + labels) and checks that the counts agree.
pub fn read_split(images: &Path, labels: &Path) -> Result<(IdxImages, Vec<u32>)> {
    let (im, lb) = rayon::join(|| read_images(images), || read_labels(labels));
    let (im, lb) = (im?, lb?);
    if im.count != lb.len() {
        return Err(Error::Data(format!(
            "{}: {} images but {} has {} labels (counts must agree)",
            images.display(),
            im.count,
            labels.display(),
            lb.len()
        )));
    }
    Ok((im, lb))
}

/// Loads an IDX dataset folder: (channels, height, width, train, test).
pub fn load(files: &IdxFiles) -> Result<(usize, usize, usize, Split, Split)> {
    let (train, test) = rayon::join(
        || read_split(&files.train_images, &files.train_labels),
        || read_split(&files.test_images, &files.test_labels),
    );
    let ((tri, trl), (tei, tel)) = (train?, test?);
    let (a, b) = (
        (tri.channels, tri.height, tri.width),
        (tei.channels, tei.height, tei.width),
    );
    if a != b {
        return Err(Error::Data(format!(
            "{}: test images are {}×{}×{} but {} holds {}×{}×{} training images",
            files.test_images.display(),
            b.0,
            b.1,
            b.2,
            files.train_images.display(),
            a.0,
            a.1,
            a.2
        )));
    }
    Ok((
        a.0,
        a.1,
        a.2,
        Split {
            images: tri.pixels,
            labels: trl,
        },
        Split {
            images: tei.pixels,
            labels: tel,
        },
    ))
}

/// Writes an IDX file (raw, or gzip when `path` ends in `.gz`): u8 elements with the given
/// dimensions. For tools and tests that need small IDX files.
pub fn write_idx_u8(path: &Path, dims: &[usize], data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut bytes = vec![0u8, 0, 0x08, dims.len() as u8];
    for &d in dims {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    let out = if path.extension().is_some_and(|e| e == "gz") {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).map_err(|e| Error::io(path, e))?;
        enc.finish().map_err(|e| Error::io(path, e))?
    } else {
        bytes
    };
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}
