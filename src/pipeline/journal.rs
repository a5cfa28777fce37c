//! A study's journal: one JSON file per finished run in `DIR/journal/`, and one for the
//! teachers, each written whole and atomically (to a temporary file in the same folder, then
//! renamed over its name).
//!
//! The journal is what lets a study be split over machines that share nothing but a
//! directory (NFS, a Kubernetes volume): a run is finished exactly when its record exists, and
//! a record is never seen half-written. On NFS a rename within one directory is atomic at the
//! server, so readers on every client see either no record or the whole one; appends to a
//! shared file and advisory locks are not dependable there (O_APPEND is emulated by the client,
//! and `flock` works only where the mount and the server support it), so nothing here depends
//! on them. Every record has a name of its own, so no two writers ever replace each other's
//! file, and the order in which records appear does not matter.
//!
//! A record holds the run's settings (checked before a finished run is skipped), its metrics,
//! and its checkpoint files with their SHA-256 and size, so a merge can tell a finished run
//! from one whose files were lost or damaged on the way.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::study::Method;
use super::RunSummary;
use crate::fs::write_atomic;
use crate::train::{HintConfig, KdConfig, TrainConfig};
use crate::{Error, Result};

/// The journal's folder inside a study directory.
pub const JOURNAL_DIR: &str = "journal";
/// The teachers' record, written by the teachers stage.
pub const TEACHERS_RECORD: &str = "teachers.json";
/// The version of the record format.
pub const VERSION: u32 = 1;

/// A file and what it held when the record was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSum {
    /// Relative to the study directory (`/`-separated), or as the settings name it for a
    /// teacher loaded from outside the study.
    pub file: PathBuf,
    /// Lower-case hex, as `sha256sum` prints it.
    pub sha256: String,
    pub bytes: u64,
}

impl FileSum {
    /// The checksum of `root/file` (or of `file` alone when it is absolute or `root` is `None`).
    pub fn of(root: Option<&Path>, file: &Path) -> Result<FileSum> {
        let path = resolve(root, file);
        let (sha256, bytes) = sha256_file(&path)?;
        Ok(FileSum {
            file: file.to_path_buf(),
            sha256,
            bytes,
        })
    }

    /// `Ok(None)` when the file still holds what the record says; else why not.
    pub fn check(&self, root: Option<&Path>) -> Result<Option<String>> {
        let path = resolve(root, &self.file);
        if !path.is_file() {
            return Ok(Some(format!("{} is missing", path.display())));
        }
        let (sha256, bytes) = sha256_file(&path)?;
        if sha256 != self.sha256 || bytes != self.bytes {
            return Ok(Some(format!(
                "{} has SHA-256 {sha256} ({bytes} bytes), the journal says {} ({} bytes)",
                path.display(),
                self.sha256,
                self.bytes
            )));
        }
        Ok(None)
    }
}

fn resolve(root: Option<&Path>, file: &Path) -> PathBuf {
    match root {
        Some(r) if file.is_relative() => r.join(file),
        _ => file.to_path_buf(),
    }
}

/// SHA-256 (hex) and size of a file, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex(&hasher.finalize()), bytes))
}

/// SHA-256 of bytes, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a student run was trained with: a finished run is skipped only when its record
/// says exactly this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSettings {
    pub method: Method,
    pub seed: u64,
    pub train: TrainConfig,
    pub train_images: usize,
    pub kd: Option<KdConfig>,
    pub hint: Option<HintConfig>,
}

/// One finished student run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub version: u32,
    pub run: String,
    pub settings: RunSettings,
    pub summary: RunSummary,
    /// `last.safetensors` (the model the final accuracy is of) and `best.safetensors`.
    pub checkpoints: Vec<FileSum>,
    /// The shard that trained it (`2/3`), or `None` when one process ran the whole study.
    pub shard: Option<String>,
    pub device: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub finished: String,
}

/// One teacher as the students will read it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TeacherEntry {
    pub summary: RunSummary,
    /// Its weights: `teacher/last.safetensors` inside the study, or the checkpoint the
    /// settings name (`loaded`).
    pub checkpoint: FileSum,
    pub loaded: bool,
}

/// The teachers stage's outcome: everything the student runs and a merge need from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TeachersRecord {
    pub version: u32,
    pub teachers: Vec<TeacherEntry>,
    /// Test accuracy of the teachers' combined prediction (a study with `kd-ensemble`).
    pub ensemble_accuracy: Option<f64>,
    /// The students' labelled images, and the transfer set: its size and how many of its
    /// images have labels (0 and 0 without a transfer method).
    pub labelled_images: usize,
    pub transfer_images: usize,
    pub transfer_labelled: usize,
    pub device: String,
    pub finished: String,
}

fn journal_dir(dir: &Path) -> PathBuf {
    dir.join(JOURNAL_DIR)
}

/// `DIR/journal/<run>.json`.
pub fn record_path(dir: &Path, run: &str) -> PathBuf {
    journal_dir(dir).join(format!("{run}.json"))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let json = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Other(format!("cannot serialise {}: {e}", path.display())))?;
    write_atomic(path, json.as_bytes())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        Error::Resume(format!(
            "{} is not a distill journal record: {e}",
            path.display()
        ))
    })
}

/// Writes a run's record (atomically).
pub fn write_run(dir: &Path, record: &RunRecord) -> Result<()> {
    write_json(&record_path(dir, &record.run), record)
}

/// The record of `run`, if it finished.
pub fn read_run(dir: &Path, run: &str) -> Result<Option<RunRecord>> {
    let path = record_path(dir, run);
    let rec: Option<RunRecord> = read_json(&path)?;
    if let Some(r) = &rec {
        check_version(&path, r.version)?;
        if r.run != run {
            return Err(Error::Resume(format!(
                "{} holds the record of '{}', not of '{run}'",
                path.display(),
                r.run
            )));
        }
    }
    Ok(rec)
}

/// Writes the teachers' record (atomically).
pub fn write_teachers(dir: &Path, record: &TeachersRecord) -> Result<()> {
    write_json(&journal_dir(dir).join(TEACHERS_RECORD), record)
}

/// The teachers' record, if the teachers stage has finished.
pub fn read_teachers(dir: &Path) -> Result<Option<TeachersRecord>> {
    let path = journal_dir(dir).join(TEACHERS_RECORD);
    let rec: Option<TeachersRecord> = read_json(&path)?;
    if let Some(r) = &rec {
        check_version(&path, r.version)?;
    }
    Ok(rec)
}

fn check_version(path: &Path, version: u32) -> Result<()> {
    if version != VERSION {
        return Err(Error::Resume(format!(
            "{} is a journal record of version {version}; this distill reads version {VERSION}",
            path.display()
        )));
    }
    Ok(())
}

/// The checkpoint files of the run in `dir/<run>/` that its record lists.
pub fn run_checkpoints(dir: &Path, run: &str) -> Result<Vec<FileSum>> {
    ["last.safetensors", "best.safetensors"]
        .iter()
        .map(|f| FileSum::of(Some(dir), &Path::new(run).join(f)))
        .collect()
}

/// Why a record's files no longer match it, if they do not.
pub fn check_run_files(dir: &Path, record: &RunRecord) -> Result<Option<String>> {
    for f in &record.checkpoints {
        if let Some(why) = f.check(Some(dir))? {
            return Ok(Some(why));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_standard_vectors() {
        // FIPS 180-2, appendix B.1 and B.2, and the empty message.
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_file_sum_sees_a_changed_or_missing_file() {
        let tmp = std::env::temp_dir().join(format!("distill-journal-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("run")).unwrap();
        // Larger than one read block, so the streaming path is exercised.
        let data: Vec<u8> = (0..(3 << 20) + 7).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(tmp.join("run/a.bin"), &data).unwrap();
        let sum = FileSum::of(Some(&tmp), Path::new("run/a.bin")).unwrap();
        assert_eq!(sum.sha256, sha256_hex(&data));
        assert_eq!(sum.bytes, data.len() as u64);
        assert_eq!(sum.check(Some(&tmp)).unwrap(), None);
        let mut changed = data.clone();
        changed[12345] ^= 1;
        std::fs::write(tmp.join("run/a.bin"), &changed).unwrap();
        let why = sum.check(Some(&tmp)).unwrap().unwrap();
        assert!(why.contains("the journal says"), "{why}");
        std::fs::remove_file(tmp.join("run/a.bin")).unwrap();
        let why = sum.check(Some(&tmp)).unwrap().unwrap();
        assert!(why.contains("missing"), "{why}");
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn a_garbled_record_is_a_clear_error_and_an_absent_one_is_none() {
        let tmp = std::env::temp_dir().join(format!("distill-journal-r-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join(JOURNAL_DIR)).unwrap();
        assert!(read_run(&tmp, "ce-seed0").unwrap().is_none());
        assert!(read_teachers(&tmp).unwrap().is_none());
        std::fs::write(record_path(&tmp, "ce-seed0"), b"{\"version\": 1, \"run\"").unwrap();
        let e = read_run(&tmp, "ce-seed0").unwrap_err().to_string();
        assert!(
            e.contains("ce-seed0.json is not a distill journal record"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
