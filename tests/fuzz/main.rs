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
//! - takes longer than [`CASE_TIME_LIMIT`].
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

/// The longest one case may take, even in a debug build on a busy machine. The inputs are a
/// few KiB, so any case near this is a parser doing work out of proportion to its input.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(2);

/// A case still running after this long is a hang: the watchdog names it and aborts.
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
/// `Err` describing anything else; a panic, an allocation over [`alloc_bound`] or a case
/// slower than [`CASE_TIME_LIMIT`] fail the case too.
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
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&case.bytes)));
        let elapsed = t.elapsed();
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
        if elapsed > CASE_TIME_LIMIT {
            problems.push(format!("took {elapsed:?}, over {CASE_TIME_LIMIT:?}"));
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

// ---------------------------------------------------------------------------------------------
// The mutation engine.

/// A size or type field of a seed file that mutations set to extremes.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    Byte(usize),
    Be16(usize),
    Be32(usize),
    Le64(usize),
}

impl Field {
    fn offset(self) -> usize {
        match self {
            Field::Byte(o) | Field::Be16(o) | Field::Be32(o) | Field::Le64(o) => o,
        }
    }
    fn width(self) -> usize {
        match self {
            Field::Byte(_) => 1,
            Field::Be16(_) => 2,
            Field::Be32(_) => 4,
            Field::Le64(_) => 8,
        }
    }
    fn read(self, b: &[u8]) -> u64 {
        let o = self.offset();
        let s = &b[o..o + self.width()];
        match self {
            Field::Byte(_) => s[0] as u64,
            Field::Be16(_) => u16::from_be_bytes([s[0], s[1]]) as u64,
            Field::Be32(_) => u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as u64,
            Field::Le64(_) => u64::from_le_bytes(s.try_into().unwrap()),
        }
    }
    /// Writes `v` truncated to the field's width.
    fn write(self, b: &mut [u8], v: u64) {
        let o = self.offset();
        match self {
            Field::Byte(_) => b[o] = v as u8,
            Field::Be16(_) => b[o..o + 2].copy_from_slice(&(v as u16).to_be_bytes()),
            Field::Be32(_) => b[o..o + 4].copy_from_slice(&(v as u32).to_be_bytes()),
            Field::Le64(_) => b[o..o + 8].copy_from_slice(&v.to_le_bytes()),
        }
    }
}

/// A valid file and its size fields.
#[derive(Clone, Debug)]
pub struct Seed {
    pub name: String,
    pub bytes: Vec<u8>,
    pub fields: Vec<Field>,
}

impl Seed {
    pub fn new(name: &str, bytes: Vec<u8>, fields: Vec<Field>) -> Seed {
        for f in &fields {
            assert!(f.offset() + f.width() <= bytes.len(), "{name}: {f:?}");
        }
        Seed {
            name: name.into(),
            bytes,
            fields,
        }
    }
}

/// Extremes a size field is set to, besides the original ± 1, × 2 and a random value.
const EXTREMES: [u64; 11] = [
    0,
    1,
    2,
    0x7F,
    0xFF,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    u32::MAX as u64,
    1 << 32,
    u64::MAX,
];

/// Bytes that often mean something to a parser.
const INTERESTING: [u8; 8] = [0, 1, 0x7F, 0x80, 0xFF, b'0', b'{', b'"'];

/// Makes mutated inputs from a set of seeds.
pub struct Mutator {
    pub seeds: Vec<Seed>,
}

impl Mutator {
    pub fn new(seeds: Vec<Seed>) -> Mutator {
        assert!(!seeds.is_empty());
        Mutator { seeds }
    }

    /// One mutated input: a seed with one to three mutations stacked, and what was done.
    pub fn mutate(&self, rng: &mut Rng) -> Case {
        let s = &self.seeds[rng.below(self.seeds.len())];
        let mut bytes = s.bytes.clone();
        let mut done = vec![s.name.clone()];
        let rounds = 1 + rng.below(3);
        for _ in 0..rounds {
            done.push(self.mutate_once(rng, s, &mut bytes));
        }
        Case {
            origin: done.join(" → "),
            bytes,
        }
    }

    /// One mutation of `bytes` (which came from `seed`): its description.
    pub fn mutate_once(&self, rng: &mut Rng, seed: &Seed, bytes: &mut Vec<u8>) -> String {
        // Size fields are the point: a third of the mutations set one when the seed has any.
        if !seed.fields.is_empty() && rng.below(3) == 0 {
            let f = seed.fields[rng.below(seed.fields.len())];
            if f.offset() + f.width() <= bytes.len() {
                let old = f.read(bytes);
                let v = match rng.below(EXTREMES.len() + 4) {
                    i if i < EXTREMES.len() => EXTREMES[i],
                    i if i == EXTREMES.len() => old.wrapping_add(1),
                    i if i == EXTREMES.len() + 1 => old.wrapping_sub(1),
                    i if i == EXTREMES.len() + 2 => old.wrapping_mul(2),
                    _ => rng.next_u64(),
                };
                f.write(bytes, v);
                return format!("set {f:?} to {v:#x}");
            }
        }
        byte_mutation(rng, bytes, &self.seeds)
    }
}

/// One format-blind mutation of `bytes`; `others` supply splices.
pub fn byte_mutation(rng: &mut Rng, bytes: &mut Vec<u8>, others: &[Seed]) -> String {
    let len = bytes.len();
    match rng.below(8) {
        0 if len > 0 => {
            let n = 1 + rng.below(8);
            for _ in 0..n {
                let i = rng.below(len);
                bytes[i] ^= 1 << rng.below(8);
            }
            format!("flip {n} bits")
        }
        1 if len > 0 => {
            let n = 1 + rng.below(4);
            for _ in 0..n {
                let i = rng.below(len);
                bytes[i] = if rng.below(2) == 0 {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next_u64() as u8
                };
            }
            format!("set {n} bytes")
        }
        2 => {
            let to = rng.below(len + 1);
            bytes.truncate(to);
            format!("truncate to {to}")
        }
        3 => {
            let n = 1 + rng.below(256);
            if rng.below(2) == 0 || len == 0 {
                bytes.extend((0..n).map(|_| rng.next_u64() as u8));
                format!("append {n} random bytes")
            } else {
                let from = rng.below(len);
                let chunk: Vec<u8> = bytes[from..].iter().copied().take(n).collect();
                bytes.extend_from_slice(&chunk);
                format!("append a copy of bytes {from}..")
            }
        }
        4 => {
            let other = &others[rng.below(others.len())];
            let cut_a = rng.below(len + 1);
            let cut_b = rng.below(other.bytes.len() + 1);
            bytes.truncate(cut_a);
            bytes.extend_from_slice(&other.bytes[cut_b..]);
            format!("splice at {cut_a} with {}[{cut_b}..]", other.name)
        }
        5 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            bytes.drain(from..from + n);
            format!("delete {n} bytes at {from}")
        }
        6 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let chunk: Vec<u8> = bytes[from..from + n].to_vec();
            let at = rng.below(len + 1);
            bytes.splice(at..at, chunk);
            format!("copy {n} bytes from {from} to {at}")
        }
        _ => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(16);
            let fill = INTERESTING[rng.below(INTERESTING.len())];
            bytes.splice(at..at, std::iter::repeat_n(fill, n));
            format!("insert {n} × {fill:#04x} at {at}")
        }
    }
}

/// Numbers that JSON and TOML size and offset fields are set to.
const NUMBER_EXTREMES: [&str; 16] = [
    "0",
    "1",
    "-1",
    "2",
    "255",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "1e308",
    "1e999",
    "-0",
    "0.5",
    "1.5e-320",
];

/// One mutation of JSON (or TOML) text that keeps most of its structure: a number set to an
/// extreme, a string emptied or lengthened, a token deleted, repeated or swapped with one of
/// another seed, or (one time in four) a byte-level mutation.
pub fn text_mutation(rng: &mut Rng, text: &mut Vec<u8>, others: &[Seed]) -> String {
    if rng.below(4) == 0 {
        return byte_mutation(rng, text, others);
    }
    let tokens = tokenize(text);
    if tokens.is_empty() {
        return byte_mutation(rng, text, others);
    }
    let numbers: Vec<&(usize, usize)> = tokens
        .iter()
        .filter(|(a, _)| text[*a] == b'-' || text[*a].is_ascii_digit())
        .collect();
    let strings: Vec<&(usize, usize)> = tokens.iter().filter(|(a, _)| text[*a] == b'"').collect();
    let (what, (a, b), new): (&str, (usize, usize), Vec<u8>) = match rng.below(6) {
        0 | 1 if !numbers.is_empty() => {
            let t = *numbers[rng.below(numbers.len())];
            let v = NUMBER_EXTREMES[rng.below(NUMBER_EXTREMES.len())];
            ("number", t, v.as_bytes().to_vec())
        }
        2 if !strings.is_empty() => {
            let t = *strings[rng.below(strings.len())];
            let v = match rng.below(4) {
                0 => b"\"\"".to_vec(),
                1 => format!("\"{}\"", "x".repeat(1 + rng.below(300))).into_bytes(),
                2 => b"\"\\ud800\"".to_vec(),
                _ => b"\"__metadata__\"".to_vec(),
            };
            ("string", t, v)
        }
        3 => ("delete", tokens[rng.below(tokens.len())], Vec::new()),
        4 => {
            let t = tokens[rng.below(tokens.len())];
            let mut v = text[t.0..t.1].to_vec();
            v.extend_from_slice(&text[t.0..t.1]);
            ("repeat", t, v)
        }
        _ => {
            let t = tokens[rng.below(tokens.len())];
            let other = &others[rng.below(others.len())];
            let theirs = tokenize(&other.bytes);
            let v = if theirs.is_empty() {
                Vec::new()
            } else {
                let (c, d) = theirs[rng.below(theirs.len())];
                other.bytes[c..d].to_vec()
            };
            ("swap", t, v)
        }
    };
    let desc = format!(
        "{what} token {:?} → {:?}",
        String::from_utf8_lossy(&text[a..b]),
        String::from_utf8_lossy(&new)
    );
    text.splice(a..b, new);
    desc
}

/// Token spans of JSON-like text: strings (with escapes), numbers and words, single
/// punctuation bytes; whitespace skipped.
fn tokenize(t: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let c = t[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'"' {
            i += 1;
            while i < t.len() && t[i] != b'"' {
                i += if t[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(t.len());
        } else if c == b'-' || c.is_ascii_alphanumeric() {
            while i < t.len() && (t[i].is_ascii_alphanumeric() || b"+-._".contains(&t[i])) {
                i += 1;
            }
        } else {
            i += 1;
        }
        out.push((start, i));
    }
    out
}

/// One case: a seed of `seeds` with one to three text mutations stacked.
pub fn mutate_text(rng: &mut Rng, seeds: &[Seed]) -> Case {
    let s = &seeds[rng.below(seeds.len())];
    let mut bytes = s.bytes.clone();
    let mut done = vec![s.name.clone()];
    for _ in 0..1 + rng.below(3) {
        done.push(text_mutation(rng, &mut bytes, seeds));
    }
    Case {
        origin: done.join(" → "),
        bytes,
    }
}

/// The engine itself: same seed, same cases; every mutation kind is reached.
#[test]
fn mutations_are_deterministic_and_varied() {
    let seeds = vec![Seed::new(
        "s",
        (0u8..64).collect(),
        vec![
            Field::Be32(4),
            Field::Le64(8),
            Field::Be16(20),
            Field::Byte(3),
        ],
    )];
    let m = Mutator::new(seeds.clone());
    let run = |seed| {
        let mut rng = Rng::new(seed);
        (0..500).map(|_| m.mutate(&mut rng)).collect::<Vec<_>>()
    };
    let (a, b) = (run(7), run(7));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.origin, &x.bytes), (&y.origin, &y.bytes));
    }
    let all: String = a.iter().map(|c| c.origin.as_str()).collect();
    for kind in [
        "flip",
        "set 1 bytes",
        "truncate",
        "append",
        "splice",
        "delete",
        "copy",
        "insert",
        "set Be32",
        "set Le64",
        "set Be16",
        "set Byte",
    ] {
        assert!(all.contains(kind), "no '{kind}' mutation in 500 cases");
    }
    let json = vec![Seed::new(
        "j",
        br#"{"a": [1, 2], "b": "x"}"#.to_vec(),
        vec![],
    )];
    let mut rng = Rng::new(1);
    let texts: Vec<Case> = (0..300).map(|_| mutate_text(&mut rng, &json)).collect();
    assert!(texts.iter().any(|c| c.origin.contains("number token")));
    assert!(texts.iter().any(|c| c.origin.contains("string token")));
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
