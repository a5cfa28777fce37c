//! Checkpoints: safetensors files that PyTorch reads and writes as-is.
//!
//! # File format (safetensors, <https://github.com/huggingface/safetensors>)
//!
//! ```text
//! [ 8 bytes: N, little-endian u64 ][ N bytes: JSON header, padded with spaces ][ data ]
//! ```
//!
//! The header is one JSON object. Each tensor has an entry
//! `"name": {"dtype": "F32", "shape": [64, 1, 3, 3], "data_offsets": [begin, end]}` where the
//! offsets are byte offsets into the data section (which starts right after the header); the
//! tensors tile the data section exactly, without gaps or overlap. Elements are little-endian,
//! row-major (C order). The optional `"__metadata__"` entry is a flat string → string map; we
//! keep the architecture spec, input normalisation, class names and metrics there. We write
//! the header with keys sorted (and metadata from a `BTreeMap`), so the same tensors give the
//! same bytes on every run.
//!
//! # Why PyTorch names and layouts
//!
//! Tensors are named and laid out as in a PyTorch `state_dict` (`conv1.weight` as
//! `[out, in, kh, kw]`, `fc1.weight` as `[out, in]`, the flatten before `fc1` in NCHW order), so
//! `model.load_state_dict(safetensors.torch.load_file(path))` loads our checkpoints into the
//! PyTorch modules of the presets' layout (see `scripts/check_pytorch_load.py`), and a teacher
//! trained in PyTorch and saved with `safetensors.torch.save_file` loads here. f16 export halves the student's size;
//! BF16 files (common from PyTorch) are read too. Everything is converted to f32 on load.
//!
//! # Atomicity
//!
//! [`save`] never leaves a half-written file at the target path: it writes through
//! [`crate::fs::write_atomic`], so a crash mid-write can at worst leave a stray
//! `.<name>.<pid>.<n>.tmp` file next to the target, never a truncated checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use half::{bf16, f16};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::fs::write_atomic;

/// Largest header we accept (the reference implementation's limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;
const METADATA_KEY: &str = "__metadata__";

/// One tensor of a checkpoint, by its PyTorch `state_dict` name.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// How the tensors are stored on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDtype {
    F32,
    F16,
}

/// A loaded checkpoint: tensors in file order (the order they were saved in), as f32.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub tensors: Vec<NamedTensor>,
    pub metadata: BTreeMap<String, String>,
    /// `F16` when every tensor is stored as a 16-bit float (F16 or BF16), `F32` otherwise.
    pub dtype: StoreDtype,
}

impl Checkpoint {
    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&NamedTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

fn ckpt_err(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Checkpoint(format!("{}: {what}", path.display()))
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Writes `tensors` and `metadata` to `path` as safetensors, atomically (see the module docs).
///
/// Fails with [`Error::Checkpoint`] before touching the disk when a name is empty, repeated or
/// `__metadata__`, when a tensor's data length is not the product of its shape, or (for `F16`)
/// when a finite value is too large for f16. f16 conversion rounds to nearest, ties to even.
pub fn save(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
    dtype: StoreDtype,
) -> Result<()> {
    let bytes = encode(path, tensors, metadata, dtype)?;
    write_atomic(path, &bytes)
}

/// Validates and serialises a checkpoint into the bytes of a safetensors file (`path` names
/// it in errors).
pub fn encode(
    path: &Path,
    tensors: &[NamedTensor],
    metadata: &BTreeMap<String, String>,
    dtype: StoreDtype,
) -> Result<Vec<u8>> {
    let mut seen = std::collections::BTreeSet::new();
    for t in tensors {
        if t.name.is_empty() {
            return Err(ckpt_err(path, "a tensor has an empty name"));
        }
        if t.name == METADATA_KEY {
            return Err(ckpt_err(
                path,
                "`__metadata__` is reserved and cannot name a tensor",
            ));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(ckpt_err(
                path,
                format!("tensor name `{}` appears twice", t.name),
            ));
        }
        match numel(&t.shape) {
            Some(n) if n == t.data.len() => {}
            Some(n) => {
                return Err(ckpt_err(
                    path,
                    format!(
                        "tensor `{}` has shape {:?} ({n} elements) but {} values",
                        t.name,
                        t.shape,
                        t.data.len()
                    ),
                ))
            }
            None => {
                return Err(ckpt_err(
                    path,
                    format!("tensor `{}` has shape {:?}, too large", t.name, t.shape),
                ))
            }
        }
    }

    let (dtype_name, elem) = match dtype {
        StoreDtype::F32 => ("F32", 4),
        StoreDtype::F16 => ("F16", 2),
    };
    let mut header = Map::new();
    if !metadata.is_empty() {
        let meta: Map<String, Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        header.insert(METADATA_KEY.to_string(), Value::Object(meta));
    }
    let mut offset = 0usize;
    for t in tensors {
        let end = offset + t.data.len() * elem;
        header.insert(
            t.name.clone(),
            serde_json::json!({ "dtype": dtype_name, "shape": t.shape, "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut header_bytes = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| ckpt_err(path, format!("cannot encode the header: {e}")))?;
    // Pad the header with spaces so the data section starts 8-byte aligned (as the reference
    // implementation does; readers may map the data in place).
    header_bytes.resize(header_bytes.len().next_multiple_of(8), b' ');

    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for t in tensors {
        match dtype {
            StoreDtype::F32 => {
                for &x in &t.data {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
            StoreDtype::F16 => {
                for (i, &x) in t.data.iter().enumerate() {
                    let h = f16::from_f32(x);
                    if x.is_finite() && h.is_infinite() {
                        return Err(ckpt_err(
                            path,
                            format!(
                                "tensor `{}` element {i} = {x} does not fit in f16 (max 65504); \
                                 save as F32",
                                t.name
                            ),
                        ));
                    }
                    out.extend_from_slice(&h.to_le_bytes());
                }
            }
        }
    }
    Ok(out)
}

/// Reads a safetensors checkpoint (F32, F16 or BF16 tensors) into f32.
///
/// Anything else (another dtype, a truncated file, a malformed header, a file that is not
/// safetensors at all) is an [`Error::Checkpoint`] naming the file and the problem.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(path, &bytes)
}

/// Parsed header entry of one tensor.
struct Entry {
    name: String,
    dtype: RawDtype,
    shape: Vec<usize>,
    begin: usize,
    end: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RawDtype {
    F32,
    F16,
    BF16,
}

impl RawDtype {
    fn size(self) -> usize {
        match self {
            RawDtype::F32 => 4,
            RawDtype::F16 | RawDtype::BF16 => 2,
        }
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Result<Checkpoint> {
    let (header, data) = split_header(path, bytes)?;
    let mut metadata = BTreeMap::new();
    let mut entries = Vec::new();
    for (name, value) in header {
        if name == METADATA_KEY {
            let Value::Object(meta) = value else {
                return Err(ckpt_err(path, "`__metadata__` is not a JSON object"));
            };
            for (k, v) in meta {
                let Value::String(v) = v else {
                    return Err(ckpt_err(
                        path,
                        format!("metadata `{k}` is not a string (safetensors metadata is string → string)"),
                    ));
                };
                metadata.insert(k, v);
            }
            continue;
        }
        entries.push(parse_entry(path, name, &value)?);
    }

    check_tiling(path, &mut entries, data.len())?;
    let all_half = !entries.is_empty() && entries.iter().all(|e| e.dtype != RawDtype::F32);
    let tensors = entries
        .into_iter()
        .map(|e| NamedTensor {
            data: values(e.dtype, &data[e.begin..e.end]),
            name: e.name,
            shape: e.shape,
        })
        .collect();
    Ok(Checkpoint {
        tensors,
        metadata,
        dtype: if all_half {
            StoreDtype::F16
        } else {
            StoreDtype::F32
        },
    })
}

/// The JSON header (checked: length bounded, UTF-8, an object) and the data section after it.
fn split_header<'b>(
    path: &Path,
    bytes: &'b [u8],
) -> Result<(serde_json::Map<String, Value>, &'b [u8])> {
    let not_st = "not a safetensors file";
    if bytes.len() < 8 {
        return Err(ckpt_err(
            path,
            format!(
                "{not_st}: {} bytes, shorter than the 8-byte header length",
                bytes.len()
            ),
        ));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let available = (bytes.len() - 8) as u64;
    if n > MAX_HEADER_BYTES {
        return Err(ckpt_err(
            path,
            format!("{not_st}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit"),
        ));
    }
    if n > available {
        return Err(ckpt_err(
            path,
            format!(
                "truncated or {not_st}: header length is {n} bytes but only {available} bytes follow"
            ),
        ));
    }
    let n = n as usize;
    let header_text = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|e| ckpt_err(path, format!("{not_st}: header is not UTF-8 ({e})")))?;
    let header: Value = serde_json::from_str(header_text.trim_end())
        .map_err(|e| ckpt_err(path, format!("{not_st}: header is not valid JSON ({e})")))?;
    let Value::Object(header) = header else {
        return Err(ckpt_err(
            path,
            format!("{not_st}: header is not a JSON object"),
        ));
    };
    Ok((header, &bytes[8 + n..]))
}

/// The tensors must tile the data section exactly, in offset order (sorts `entries`).
fn check_tiling(path: &Path, entries: &mut [Entry], data_len: usize) -> Result<()> {
    entries.sort_by_key(|e| (e.begin, e.end));
    let mut cursor = 0usize;
    for e in entries.iter() {
        if e.begin != cursor {
            return Err(ckpt_err(
                path,
                format!(
                    "tensor `{}` starts at byte {} of the data section, expected {cursor} \
                     (tensors must be contiguous, without gaps or overlap)",
                    e.name, e.begin
                ),
            ));
        }
        cursor = e.end;
    }
    if cursor != data_len {
        let what = if cursor > data_len {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(ckpt_err(
            path,
            format!(
                "file {what}: the header describes {cursor} bytes of tensor data, the file holds {}",
                data_len
            ),
        ));
    }
    Ok(())
}

/// The little-endian values of one tensor as f32.
fn values(dtype: RawDtype, raw: &[u8]) -> Vec<f32> {
    match dtype {
        RawDtype::F32 => raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        RawDtype::F16 => raw
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        RawDtype::BF16 => raw
            .chunks_exact(2)
            .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

fn parse_entry(path: &Path, name: String, value: &Value) -> Result<Entry> {
    let bad = |what: &str| ckpt_err(path, format!("tensor `{name}`: {what}"));
    let Value::Object(obj) = value else {
        return Err(bad("header entry is not a JSON object"));
    };
    let dtype = match obj.get("dtype") {
        Some(Value::String(s)) => match s.as_str() {
            "F32" => RawDtype::F32,
            "F16" => RawDtype::F16,
            "BF16" => RawDtype::BF16,
            other => {
                return Err(bad(&format!(
                    "dtype {other} is not supported (F32, F16 and BF16 are)"
                )))
            }
        },
        _ => return Err(bad("missing or non-string `dtype`")),
    };
    let shape = match obj.get("shape") {
        Some(Value::Array(dims)) => dims
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("`shape` must be an array of non-negative integers"))?,
        _ => return Err(bad("missing `shape` array")),
    };
    let (begin, end) = match obj.get("data_offsets") {
        Some(Value::Array(o)) if o.len() == 2 => {
            match (
                o[0].as_u64().and_then(|x| usize::try_from(x).ok()),
                o[1].as_u64().and_then(|x| usize::try_from(x).ok()),
            ) {
                (Some(b), Some(e)) if b <= e => (b, e),
                _ => return Err(bad("`data_offsets` must be [begin, end] with begin <= end")),
            }
        }
        _ => return Err(bad("missing `data_offsets` [begin, end]")),
    };
    let nbytes = numel(&shape).and_then(|n| n.checked_mul(dtype.size()));
    if nbytes != Some(end - begin) {
        return Err(bad(&format!(
            "shape {shape:?} does not match its {} bytes of data",
            end - begin
        )));
    }
    Ok(Entry {
        name,
        dtype,
        shape,
        begin,
        end,
    })
}

/// Checks that `found` holds exactly the tensors `expected` (name, shape) lists.
///
/// The error lists every difference at once: missing names, unexpected names and shape
/// mismatches (expected vs found), so a wrong architecture is diagnosed in one go.
pub fn check_matches(
    expected: &[(String, Vec<usize>)],
    found: &Checkpoint,
    path: &Path,
) -> Result<()> {
    let found_map: BTreeMap<&str, &[usize]> = found
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice()))
        .collect();
    let expected_names: std::collections::BTreeSet<&str> =
        expected.iter().map(|(n, _)| n.as_str()).collect();

    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    for (name, shape) in expected {
        match found_map.get(name.as_str()) {
            None => missing.push(format!("{name} {shape:?}")),
            Some(s) if *s != shape.as_slice() => {
                mismatched.push(format!("{name}: expected {shape:?}, found {s:?}"))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<String> = found
        .tensors
        .iter()
        .filter(|t| !expected_names.contains(t.name.as_str()))
        .map(|t| format!("{} {:?}", t.name, t.shape))
        .collect();
    if missing.is_empty() && unexpected.is_empty() && mismatched.is_empty() {
        return Ok(());
    }
    let mut msg = format!(
        "{}: checkpoint does not match the model ({} missing, {} unexpected, {} shape mismatches)",
        path.display(),
        missing.len(),
        unexpected.len(),
        mismatched.len()
    );
    for (title, items) in [
        ("missing", &missing),
        ("unexpected", &unexpected),
        ("shape mismatch", &mismatched),
    ] {
        for item in items {
            msg.push_str(&format!("\n  {title}: {item}"));
        }
    }
    if let Some(arch) = found.metadata.get("arch") {
        msg.push_str(&format!(
            "\n  (the checkpoint's metadata says arch = {arch})"
        ));
    }
    Err(Error::Checkpoint(msg))
}
