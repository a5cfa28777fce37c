//! `metrics.jsonl`: every finished epoch of every run in a directory, one JSON line each,
//! appended as it happens (so a stopped run keeps its history). Wraps the caller's observer.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::train::{EpochRecord, Observer};
use crate::{Error, Result};

/// An [`Observer`] that appends every epoch record to `metrics.jsonl` and forwards every call.
pub struct MetricsLog<'a> {
    file: std::fs::File,
    path: PathBuf,
    inner: &'a mut dyn Observer,
    error: Option<Error>,
}

impl<'a> MetricsLog<'a> {
    /// Appends to `dir/metrics.jsonl` (created when missing).
    pub fn open(dir: &Path, inner: &'a mut dyn Observer) -> Result<MetricsLog<'a>> {
        Self::open_file(&dir.join("metrics.jsonl"), inner)
    }

    /// Appends to the file `path` (created, with its folder, when missing).
    pub fn open_file(path: &Path, inner: &'a mut dyn Observer) -> Result<MetricsLog<'a>> {
        let path = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(MetricsLog {
            file,
            path,
            inner,
            error: None,
        })
    }

    /// The first write that failed, if any (the run goes on; the caller reports it at the end).
    pub fn finish(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

impl Observer for MetricsLog<'_> {
    fn epoch_start(&mut self, run: &str, epoch: usize, epochs: usize, batches: usize) {
        self.inner.epoch_start(run, epoch, epochs, batches)
    }
    fn batch(&mut self, done: usize, loss: Option<f64>, ips: f64) {
        self.inner.batch(done, loss, ips)
    }
    fn epoch_end(&mut self, record: &EpochRecord) {
        let line = serde_json::to_string(record).unwrap_or_default();
        if let Err(e) = writeln!(self.file, "{line}").and_then(|_| self.file.flush()) {
            self.error.get_or_insert(Error::io(&self.path, e));
        }
        self.inner.epoch_end(record)
    }
    fn message(&mut self, text: &str) {
        self.inner.message(text)
    }
}
