//! Structured mutation tests of every parser of user files (see `docs/fuzzing.md`).
//!
//! Each parser module starts from a few valid files, derives thousands of mutated inputs from
//! them with a fixed seed ([`Mutator`]: bit flips, byte sets, truncation, extension, splices of
//! two files, and size fields set to extremes), and runs every input through the parser with
//! [`run_cases`], which fails naming the case and seed when the parser
//!
//! - panics (each case runs under `catch_unwind`),
//! - returns something other than a typed error or a consistent value (the module's check),
//! - makes one allocation larger than [`alloc_bound`] of the input's size (the counting
//!   allocator below records the largest single allocation while a case runs), or
//! - hangs (a watchdog aborts the binary, naming the case, after [`HANG_LIMIT`]).
//!
//! The inputs that once broke a parser live in `tests/fuzz/corpus/<parser>/` and are replayed
//! first, unmutated, on every run. A failing input is written to
//! `target/tmp/fuzz-failures/<parser>/` so it can be studied and added to the corpus.
//!
//! The allocator sees every thread (parsers use rayon), so the cases of all modules run one at
//! a time, under [`FUZZ_LOCK`].

mod cifar;
mod config;
mod folder;
mod idx;
mod mutate;
mod report;
mod safetensors;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use distill::rng::Rng;
pub use mutate::*;

// ---------------------------------------------------------------------------------------------
// The counting allocator.

/// The largest single allocation (or reallocation target) since the last [`reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Requests above this are refused: the process aborts (after naming the running case), as it
/// would on a machine without the memory. Far above every bound [`alloc_bound`] gives, so a
/// request this large has already failed the case.
const HARD_CAP: usize = 4 << 30;

struct Counting;

fn note(size: usize) -> bool {
    PEAK.fetch_max(size, Ordering::Relaxed);
    if size > HARD_CAP {
        runaway(size);
        return false;
    }
    true
}

// SAFETY: every call is forwarded to `System` unchanged; refusing a request (null) is allowed.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !note(layout.size()) {
            return std::ptr::null_mut();
        }
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !note(new_size) {
            return std::ptr::null_mut();
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn reset_peak() {
    PEAK.store(0, Ordering::Relaxed);
}

fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// The running case, for the message of a refused allocation (which aborts the process).
static RUNNING: Mutex<String> = Mutex::new(String::new());

/// Writes the running case's name straight to the process's stderr, allocating nothing.
fn runaway(size: usize) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(b"\nfuzz: refused an allocation of ");
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = size;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let _ = err.write_all(&digits[i..]);
    let _ = err.write_all(b" bytes in case ");
    if let Ok(name) = RUNNING.try_lock() {
        let _ = err.write_all(name.as_bytes());
    }
    let _ = err.write_all(b"\n");
}

// ---------------------------------------------------------------------------------------------
// Bounds.

/// The largest single allocation a parser may make for an input of `input_len` bytes:
/// 64 MiB + 64 × the input's length.
///
/// - The 64 MiB floor covers fixed working memory (decoder tables, the rayon pool, a gzip
///   window) and what a small file may legitimately decode to: a gzip stream or PNG can expand
///   about 1000-fold, and the image decoder's own limit ([`distill::data::decode_image`]) lets
///   a file of n bytes decode to 4 MiB + 1024·n, which for the inputs here (a few KiB) stays
///   well under 64 MiB.
/// - 64 × the length covers parsers that hold a few copies of their input or widen it (u8
///   labels to u32, f16 to f32 values) and the gzip reader's capacity hint (capped at 64× the
///   compressed size).
///
/// What it rules out is the bug class that matters: an allocation sized from a header field
/// that was never checked against the file (an IDX header claiming 2^32 images of 28×28 would
/// ask for 3 TiB; a label of 2^31 for a 2^31-entry class table).
pub fn alloc_bound(input_len: usize) -> usize {
    (64 << 20) + 64 * input_len
}

/// A case still running after this long is a hang: the watchdog names it and aborts. Cases are
/// not timed otherwise: on a shared machine a wall-clock bound fails for reasons outside the
/// parser, and speed belongs to benchmarks.
const HANG_LIMIT: Duration = Duration::from_secs(60);

/// Serialises the cases of all modules (the allocator's peak is process-wide).
static FUZZ_LOCK: Mutex<()> = Mutex::new(());

/// When the running case started, for the watchdog.
static STARTED: Mutex<Option<Instant>> = Mutex::new(None);

fn start_watchdog() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(250));
            let started = *STARTED.lock().unwrap_or_else(|e| e.into_inner());
            if started.is_some_and(|t| t.elapsed() > HANG_LIMIT) {
                let name = RUNNING.lock().map(|n| n.clone()).unwrap_or_default();
                eprintln!("fuzz: case {name} has run for over {HANG_LIMIT:?}: a hang");
                std::process::abort();
            }
        });
    });
}

// ---------------------------------------------------------------------------------------------
// The runner.

/// What a parser made of one input, once the module has checked it.
pub type Verdict = Result<(), String>;

/// One input: where it came from (for the failure message) and its bytes.
pub struct Case {
    pub origin: String,
    pub bytes: Vec<u8>,
}

/// Replays `tests/fuzz/corpus/<parser>/` and then `n` cases made by `make` (from an [`Rng`]
/// seeded with `seed`), checking each with `check`; fails listing every bad case.
///
/// `check` gets the input and returns `Ok(())` for a typed error or a consistent result, an
/// `Err` describing anything else; a panic or an allocation over [`alloc_bound`] fail the
/// case too.
pub fn run_cases(
    parser: &str,
    seed: u64,
    n: usize,
    mut make: impl FnMut(&mut Rng) -> Case,
    mut check: impl FnMut(&[u8]) -> Verdict,
) {
    let _serial = FUZZ_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    start_watchdog();
    let mut failures = Vec::new();
    let started = Instant::now();
    let corpus = corpus(parser);
    let replayed = corpus.len();
    let mut rng = Rng::new(seed);
    let mut cases = corpus.into_iter().map(|(name, bytes)| Case {
        origin: format!("corpus file {name}"),
        bytes,
    });
    for i in 0..replayed + n {
        let case = match cases.next() {
            Some(c) => c,
            None => make(&mut rng),
        };
        let label = format!("{parser} #{i} (seed {seed}, {})", case.origin);
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = label.clone();
        *STARTED.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        reset_peak();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&case.bytes)));
        let peak = peak();
        *STARTED.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let mut problems = Vec::new();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(what)) => problems.push(what),
            Err(panic) => problems.push(format!("panicked: {}", panic_text(&*panic))),
        }
        let bound = alloc_bound(case.bytes.len());
        if peak > bound {
            problems.push(format!(
                "allocated {peak} bytes at once, over the bound {bound} for {} input bytes",
                case.bytes.len()
            ));
        }
        if !problems.is_empty() {
            let saved = save_failure(parser, i, &case.bytes);
            failures.push(format!(
                "{label}: {} [input: {}]",
                problems.join("; "),
                saved.display()
            ));
        }
    }
    eprintln!(
        "{parser}: {replayed} corpus files + {n} mutated cases in {:.2?}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {} {parser} cases failed:\n{}",
        failures.len(),
        replayed + n,
        failures.join("\n")
    );
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".into())
}

/// The regression corpus of `parser`, sorted by file name.
fn corpus(parser: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(parser);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&p).unwrap();
            (name, bytes)
        })
        .collect()
}

fn save_failure(parser: &str, i: usize, bytes: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-failures")
        .join(parser);
    let path = dir.join(format!("case-{i}.bin"));
    let _ = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, bytes));
    path
}

/// A temporary folder for the files a case writes (the parsers read paths): in memory
/// (`/dev/shm`) where there is one. On a disk shared with builds, rewriting a file thousands
/// of times waits on the file system (ext4 flushes a file truncated and rewritten): 3,000 IDX
/// cases took 10 s there and 0.1 s in memory.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("distill-fuzz-");
        b
    };
    if shm.is_dir() {
        if let Ok(d) = builder().tempdir_in(shm) {
            return d;
        }
    }
    builder().tempdir().unwrap()
}

/// Checks that `e` is the expected typed error variant (`want` names it for the message).
pub fn expect_variant(
    e: &distill::Error,
    want: &str,
    ok: impl Fn(&distill::Error) -> bool,
) -> Verdict {
    if ok(e) {
        Ok(())
    } else {
        Err(format!("expected an Error::{want}, got {e:?}"))
    }
}

/// The allocator sees allocations and the bound is what the docs say.
#[test]
fn the_allocator_records_the_largest_allocation() {
    let _serial = FUZZ_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    reset_peak();
    let v: Vec<u8> = Vec::with_capacity(3 << 20);
    std::hint::black_box(&v);
    assert!(peak() >= 3 << 20);
    assert_eq!(alloc_bound(1000), (64 << 20) + 64_000);
}
