//! What survives when things go wrong: a second process writing to the same run directory is
//! refused (and a killed one leaves no stale lock), Ctrl-C stops at the end of a batch and
//! keeps the finished epochs, and a full disk keeps the last good checkpoint. Each ends with
//! the same command continuing the run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A small student training that takes a few seconds per epoch.
fn train_args(out: &Path, epochs: usize) -> Vec<String> {
    [
        "--device",
        "cpu",
        "train",
        "--arch",
        "student",
        "--out",
        s(out),
        "--max-train",
        "1024",
        "--max-test",
        "128",
        "--batch-size",
        "64",
        "--epochs",
        &epochs.to_string(),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

fn spawn(args: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .env_remove("DISTILL_DEVICE")
        .env_remove("DISTILL_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the distill binary starts")
}

fn run_args(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    distill(&refs)
}

/// Waits (up to a minute) until `ready` holds, failing if the child exits first.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() {
        if let Some(status) = child.try_wait().unwrap() {
            let out = stderr_of(child);
            panic!("distill exited ({status}) before {what}:\n{out}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a child printed on stderr (call once it has exited).
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn epochs_logged(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_second_writer_is_refused_and_a_killed_one_leaves_no_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut first = spawn(&train_args(&out, 30));
    let lock = out.join(".distill.lock");
    wait_until(&mut first, "the run directory is locked", || {
        std::fs::read_to_string(&lock).is_ok_and(|t| t.contains("pid"))
    });

    let second = run_args(&train_args(&out, 30));
    let stderr = text(&second.stderr);
    assert!(!second.status.success(), "the second writer ran:\n{stderr}");
    assert!(
        stderr.contains("in use by another distill process")
            && stderr.contains(s(&out))
            && stderr.contains(&format!("pid {}", first.id())),
        "{stderr}"
    );

    // SIGKILL: no clean-up runs, yet the operating system releases the lock.
    first.kill().unwrap();
    first.wait().unwrap();
    let third = run_args(&train_args(&out, 1));
    assert!(third.status.success(), "{}", text(&third.stderr));
}

#[test]
fn ctrl_c_stops_at_the_end_of_a_batch_and_the_run_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut child = spawn(&train_args(&out, 30));
    wait_until(&mut child, "the first epoch ends", || {
        epochs_logged(&out) >= 1
    });
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no stop within a minute of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = stderr_of(&mut child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopped during epoch") && stderr.contains("the same command continues"),
        "{stderr}"
    );
    let done = epochs_logged(&out);
    assert!(done >= 1, "{stderr}");
    assert!(
        stderr.contains(&format!("epochs 1–{done} are kept")),
        "{stderr}"
    );

    let next = run_args(&train_args(&out, done + 1));
    let stderr = text(&next.stderr);
    assert!(next.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("resumed after epoch {done}")),
        "{stderr}"
    );
    assert_eq!(epochs_logged(&out), done + 1);
}

/// A file-size limit (`ulimit -f`, with SIGXFSZ ignored so the write fails instead of killing
/// the process) stands in for a full disk.
#[cfg(unix)]
#[test]
fn a_full_disk_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let first = run_args(&train_args(&out, 1));
    assert!(first.status.success(), "{}", text(&first.stderr));
    let files = [
        "best.safetensors",
        "last.safetensors",
        "last.state.safetensors",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(out.join(f)).unwrap())
        .collect();

    let mut limited = Command::new("bash");
    limited
        .arg("-c")
        .arg(r#"trap '' XFSZ; ulimit -f 256; exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_distill"))
        .args(train_args(&out, 2))
        .env_remove("DISTILL_DEVICE")
        .env_remove("DISTILL_DATA")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    let full = limited.output().unwrap();
    let stderr = text(&full.stderr);
    assert!(!full.status.success(), "wrote past the limit:\n{stderr}");
    assert!(
        stderr.contains("cannot write it")
            && stderr.contains("the previous version is unchanged")
            && stderr.contains("last.safetensors"),
        "{stderr}"
    );
    for (f, bytes) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(out.join(f)).unwrap(), bytes, "{f} changed");
    }
    let leftovers: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let resumed = run_args(&train_args(&out, 2));
    let stderr = text(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("resumed after epoch 1"), "{stderr}");
    assert_eq!(epochs_logged(&out), 2);
}
