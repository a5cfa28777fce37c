//! One writer per run directory: an advisory lock on `DIR/.distill.lock`, held for the life of
//! the job. The operating system releases it when the process ends, however it ends, so a
//! killed run can be resumed at once. The file stays behind (deleting it on release would let
//! a process that opened the old file and one that creates a new one both hold "the" lock); it
//! records who holds or last held the lock, for the error a second writer gets.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The lock file's name inside a run directory.
pub const LOCK_FILE: &str = ".distill.lock";

/// An exclusive lock on a run directory, released on drop.
#[derive(Debug)]
pub struct RunDirLock {
    file: File,
    dir: PathBuf,
}

impl RunDirLock {
    /// Creates `dir` if needed and locks it, or fails with [`Error::Busy`] naming the process
    /// that holds it.
    pub fn acquire(dir: &Path) -> Result<RunDirLock> {
        Self::lock(dir, false)
    }

    /// A shared lock on `dir`: any number of shared holders at once (a study's shards), none
    /// while another process holds [`RunDirLock::acquire`]'s exclusive one, and the reverse.
    /// A shared holder leaves the note of who holds the lock as it was.
    pub fn acquire_shared(dir: &Path) -> Result<RunDirLock> {
        Self::lock(dir, true)
    }

    fn lock(dir: &Path, shared: bool) -> Result<RunDirLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        // No truncation before the lock is ours: the holder's note must survive a failed try.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let tried = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match tried {
            Ok(()) if shared => {
                return Ok(RunDirLock {
                    file,
                    dir: dir.to_path_buf(),
                })
            }
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(Error::Busy(format!(
                    "{} is in use by another distill process ({}); wait for it to finish or stop it first",
                    dir.display(),
                    holder.trim()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let note = holder_note();
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()));
        written.map_err(|e| Error::io(&path, e))?;
        Ok(RunDirLock {
            file,
            dir: dir.to_path_buf(),
        })
    }

    /// The locked directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RunDirLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

/// `pid 1234: distill train --out runs/x`: who holds the lock.
fn holder_note() -> String {
    let args: Vec<String> = std::env::args().collect();
    format!("pid {}: {}", std::process::id(), args.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let tmp = std::env::temp_dir().join(format!("distill-lock-{}", std::process::id()));
        let first = RunDirLock::acquire(&tmp).unwrap();
        // Locks belong to open files, so a second open in the same process conflicts too.
        match RunDirLock::acquire(&tmp) {
            Err(Error::Busy(msg)) => {
                assert!(
                    msg.contains(&format!("pid {}", std::process::id())),
                    "{msg}"
                );
                assert!(msg.contains(&tmp.display().to_string()), "{msg}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        let again = RunDirLock::acquire(&tmp).unwrap();
        assert_eq!(again.dir(), tmp.as_path());
        assert!(matches!(
            RunDirLock::acquire_shared(&tmp),
            Err(Error::Busy(_))
        ));
        drop(again);
        // Shared holders live together and keep the exclusive one out until the last goes.
        let a = RunDirLock::acquire_shared(&tmp).unwrap();
        let b = RunDirLock::acquire_shared(&tmp).unwrap();
        assert!(matches!(RunDirLock::acquire(&tmp), Err(Error::Busy(_))));
        drop(a);
        assert!(matches!(RunDirLock::acquire(&tmp), Err(Error::Busy(_))));
        drop(b);
        drop(RunDirLock::acquire(&tmp).unwrap());
        let _ = std::fs::remove_dir_all(&tmp);
    }
}
