//! Data loading and batching: the shipped Fashion-MNIST, small files of every format written
//! here, every bad-input case, and the determinism of shuffling and augmentation.

mod batching;
mod cifar;
mod folder;
mod idx;
mod shipped;

use std::sync::OnceLock;
use std::time::Instant;

use distill::data::{default_data_dir, load, Dataset, LoadOptions};
use distill::Error;

/// The shipped set, loaded once per test binary, and the seconds that took.
fn fashion_timed() -> &'static (Dataset, f64) {
    static DS: OnceLock<(Dataset, f64)> = OnceLock::new();
    DS.get_or_init(|| {
        let t = Instant::now();
        let ds = load(&default_data_dir(), &LoadOptions::default()).expect("shipped data loads");
        let s = t.elapsed().as_secs_f64();
        eprintln!("loaded the shipped Fashion-MNIST in {s:.3} s (this profile)");
        (ds, s)
    })
}

fn fashion() -> &'static Dataset {
    &fashion_timed().0
}

fn err_text(e: Error) -> String {
    e.to_string()
}

/// Asserts that `r` is an error whose message names `file` and says `what` (any case).
fn assert_data_err(r: Result<Dataset, Error>, file: &str, what: &str) {
    let e = match r {
        Ok(_) => panic!("expected an error naming {file} ({what})"),
        Err(e) => e,
    };
    let msg = err_text(e);
    eprintln!("{msg}");
    assert!(msg.contains(file), "error does not name {file}: {msg}");
    assert!(
        msg.to_lowercase().contains(&what.to_lowercase()),
        "error does not say '{what}': {msg}"
    );
}
