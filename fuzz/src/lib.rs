//! What the fuzz targets share: a scratch folder per process (the parsers read paths).

use std::path::PathBuf;

/// `$TMPDIR/distill-fuzz-<pid>/<name>`, its folder created.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("distill-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir.join(name)
}

/// Writes `data` to the scratch file `name` and returns its path.
pub fn write(name: &str, data: &[u8]) -> PathBuf {
    let p = scratch(name);
    std::fs::write(&p, data).expect("scratch file");
    p
}
