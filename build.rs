//! Build script: the short git commit for `distill bench` reports (DISTILL_GIT_COMMIT).
//! Without git or a .git directory (a source tarball, a clean CI clone without git) it is
//! "unknown" and the build goes on.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DISTILL_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: HEAD itself (a branch switch) and the branch's ref (a commit).
    // Only files that exist are named: a missing one would rerun this script on every build.
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let head = Path::new(&git_dir).join("HEAD");
        if head.exists() {
            println!("cargo:rerun-if-changed={}", head.display());
        }
        let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or(git_dir);
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let r = Path::new(&common).join(branch);
            if r.exists() {
                println!("cargo:rerun-if-changed={}", r.display());
            }
        }
    }
}
