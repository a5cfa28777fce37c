//! Files written whole or not at all. Checkpoints, reports, records, plots, journals and the
//! autotune cache all go through [`write_atomic`]: the bytes go to a uniquely named temporary
//! file in the same directory (same file system, so the rename is atomic), which is fsynced and
//! then renamed over the target. On any error the temporary file is removed and a file already
//! at the target is left untouched.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: a uniquely named temporary file in the same directory,
/// fsync, then rename over `path`. On error the temporary file is removed and whatever was at
/// `path` before is untouched. The parent directory must exist.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let file_name = path.file_name().ok_or_else(|| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
        )
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };

    // create_new makes the name unique even across processes sharing the directory.
    let (tmp, mut file) = loop {
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(
            ".{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let tmp = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(&tmp, e)),
        }
    };

    // Named by the file the caller asked for: the temporary name means nothing to a user.
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            let kept = if path.exists() {
                "the previous version is unchanged"
            } else {
                "nothing was written"
            };
            Error::io(
                path,
                std::io::Error::new(e.kind(), format!("cannot write it ({e}); {kept}")),
            )
        });
    // Closed before the rename (a no-op type in a browser, which has no files).
    #[allow(clippy::drop_non_drop)]
    drop(file);
    let result = written.and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    // Make the rename itself durable. Best effort: not every platform can open a directory.
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
