//! The figures the docs quote against their records (docs/results/README.md).
//!
//! - Every row of the results tables (the README's, and docs/performance.md's figures of
//!   earlier defaults) names its record (the last column links it), and every number in the row's figure cell is a figure of that record at the precision
//!   written, in the unit written after it; the row's command is the record's, its date is
//!   the record's, and it says the record's load conditions ("under load", "quiet", "load
//!   unknown").
//! - Every figure a doc marks as quoted, by `<!-- record: docs/results/NAME.json FIGURE -->`
//!   right after it (outside a code span), is the named figure of that record, in its unit.
//! - Every record in docs/results/ loads and validates, is quoted somewhere, and names a
//!   command that still works: `distill …` and `cargo run --release -- …` arguments parse with
//!   today's command line (the binary with `DISTILL_PARSE_ONLY=1`), `cargo bench --bench NAME`
//!   names a bench target, `python3 benches/….py` names a yardstick driver whose `--help`
//!   lists every option used, and every `NAME=value` in front is a variable the code reads
//!   (or, for the few in `SYSTEM_VARIABLES`, one the system reads).

use std::path::{Path, PathBuf};
use std::process::Command;

use distill::bench::record::{Figure, Record};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A number as written in a doc: its value and how many decimals it shows.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Written {
    value: f64,
    decimals: usize,
}

impl Written {
    /// Whether `v` shows as this number at this precision.
    fn matches(self, v: f64) -> bool {
        let half_unit = 0.5 * 10f64.powi(-(self.decimals as i32));
        (v - self.value).abs() <= half_unit + 1e-9 * v.abs().max(1.0)
    }
}

/// The units a doc writes after a number, longest first.
const UNITS: [&str; 14] = [
    "parameters",
    "GFLOP/s",
    "points",
    "epochs",
    "cores",
    "img/s",
    "TFLOP",
    "seeds",
    "GB/s",
    "MiB",
    "ms",
    "%",
    "×",
    "s",
];

/// Whether a record's unit is the one written (`%` also reads a difference of percentages,
/// as in `92.20 ± 0.17%`).
fn same_unit(written: &str, recorded: &str) -> bool {
    written == recorded || (written == "%" && recorded == "points")
}

/// The numbers of `text` with the unit written right after each (if any). Code spans are
/// left out, as are digits inside words (`AVX2`, `c32`, `1024³` counts as 1024).
fn numbers(text: &str) -> Vec<(Written, Option<&'static str>)> {
    let mut out = Vec::new();
    let mut in_code = false;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (_, c) = chars[i];
        if c == '`' {
            in_code = !in_code;
            i += 1;
            continue;
        }
        let prev = i.checked_sub(1).map(|j| chars[j].1);
        let starts = c.is_ascii_digit()
            && !in_code
            && !prev.is_some_and(|p| p.is_alphanumeric() || p == '_' || p == '.' || p == ',');
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        let mut digits = String::new();
        let mut decimals = None;
        while j < chars.len() {
            let ch = chars[j].1;
            let next_digit = chars.get(j + 1).is_some_and(|n| n.1.is_ascii_digit());
            if ch.is_ascii_digit() {
                digits.push(ch);
                if let Some(d) = decimals.as_mut() {
                    *d += 1;
                }
            } else if ch == ',' && next_digit && decimals.is_none() {
                // a thousands separator
            } else if ch == '.' && next_digit && decimals.is_none() {
                digits.push('.');
                decimals = Some(0);
            } else {
                break;
            }
            j += 1;
        }
        let rest = &text[chars.get(j).map_or(text.len(), |c| c.0)..];
        let after = rest.trim_start_matches(' ');
        let unit = UNITS.iter().copied().find(|u| {
            after.starts_with(u)
                && !after[u.len()..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_alphanumeric())
        });
        let value: f64 = digits.parse().expect("digits parse");
        out.push((
            Written {
                value,
                decimals: decimals.unwrap_or(0),
            },
            unit,
        ));
        i = j;
    }
    out
}

/// The problems of `number` (with `unit`) against `figures`: none when some figure matches.
fn find_match<'a>(
    figures: &'a [Figure],
    number: Written,
    unit: Option<&str>,
) -> Option<&'a Figure> {
    figures
        .iter()
        .find(|f| number.matches(f.value) && unit.is_none_or(|u| same_unit(u, &f.unit)))
}

/// A row of one of the README's results tables.
#[derive(Debug)]
struct Row {
    line: usize,
    figure: String,
    machine: String,
    command: String,
    record: PathBuf,
}

/// The results tables: the README's `## Results` section, and the figures measured with
/// earlier defaults, kept in docs/performance.md (its record links relative to docs/).
const RESULTS_DOCS: [(&str, &str); 2] = [("README.md", ""), ("docs/performance.md", "docs")];

/// The rows of every table in the `## Results…` section of `readme` (named `label`), with
/// record links relative to `base`.
fn results_rows(readme: &str, label: &str, base: &str) -> Result<Vec<Row>, String> {
    let start = readme
        .find("\n## Results")
        .ok_or(format!("{label} has no `## Results` section"))?;
    let body = &readme[start + 1..];
    let end = body[3..].find("\n## ").map_or(body.len(), |e| e + 3);
    let first_line = readme[..start + 1].lines().count() + 1;
    let mut rows = Vec::new();
    for (k, line) in body[..end].lines().enumerate() {
        let line_no = first_line + k;
        if !line.starts_with('|') || line.starts_with("|---") || line.starts_with("| what |") {
            continue;
        }
        let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
        if cells.len() != 5 {
            return Err(format!(
                "{label} line {line_no}: {} cells, expected what | figure | machine, date, load | command | record",
                cells.len()
            ));
        }
        let link = cells[4];
        let path = link
            .split("](")
            .nth(1)
            .and_then(|p| p.split(')').next())
            .ok_or_else(|| format!("{label} line {line_no}: no record link in `{link}`"))?;
        rows.push(Row {
            line: line_no,
            figure: cells[1].to_string(),
            machine: cells[2].to_string(),
            command: cells[3].trim().trim_matches('`').to_string(),
            record: Path::new(base).join(path),
        });
    }
    if rows.is_empty() {
        return Err(format!("{label}'s results section has no table rows"));
    }
    Ok(rows)
}

/// Every problem of a document's results tables against their records.
fn check_results(readme: &str, label: &str, base: &str) -> Vec<String> {
    let rows = match results_rows(readme, label, base) {
        Ok(r) => r,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    for row in rows {
        let at = format!("{label} line {}", row.line);
        let rec = match Record::load(&root().join(&row.record)) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                continue;
            }
        };
        for (n, unit) in numbers(&row.figure) {
            if find_match(&rec.figures, n, unit).is_none() {
                let mut near: Vec<&Figure> = rec.figures.iter().collect();
                near.sort_by(|a, b| {
                    (a.value - n.value)
                        .abs()
                        .total_cmp(&(b.value - n.value).abs())
                });
                problems.push(format!(
                    "{at}: {}{} is no figure of {} (nearest: {})",
                    n.value,
                    unit.map_or(String::new(), |u| format!(" {u}")),
                    row.record.display(),
                    near.iter()
                        .take(3)
                        .map(|f| format!("{} = {} {}", f.name, f.value, f.unit))
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
        }
        if row.command != rec.command {
            problems.push(format!(
                "{at}: the command `{}` is not the record's `{}`",
                row.command, rec.command
            ));
        }
        if !row.machine.contains(&rec.date) {
            problems.push(format!("{at}: the date is not the record's {}", rec.date));
        }
        let words = rec.load.conditions.words();
        if !row.machine.contains(words) {
            problems.push(format!(
                "{at}: the record says `{words}` about the load; the row must say so"
            ));
        }
    }
    problems
}

/// A figure a doc marks as quoted: `<!-- record: PATH FIGURE -->` after it.
#[derive(Debug)]
struct Marker {
    at: String,
    before: String,
    record: PathBuf,
    figure: String,
}

fn markers(file: &str, text: &str) -> Vec<Marker> {
    const OPEN: &str = "<!-- record:";
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let mut rest = line;
        let mut consumed = 0;
        while let Some(i) = rest.find(OPEN) {
            let close = rest[i..].find("-->").map_or(rest.len(), |c| i + c);
            let inner = rest[i + OPEN.len()..close].trim();
            let (path, figure) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
            let before = &line[..consumed + i];
            // A marker inside a code span is an example, not a quote.
            if before.matches('`').count() % 2 == 0 {
                out.push(Marker {
                    at: format!("{file} line {}", k + 1),
                    before: before.to_string(),
                    record: PathBuf::from(path),
                    figure: figure.trim().to_string(),
                });
            }
            consumed += (close + 3).min(rest.len());
            rest = &rest[(close + 3).min(rest.len())..];
        }
    }
    out
}

/// Every problem of the quoted figures of `text` (a doc named `file`).
fn check_markers(file: &str, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for m in markers(file, text) {
        let rec = match Record::load(&root().join(&m.record)) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{}: {e}", m.at));
                continue;
            }
        };
        let Some(fig) = rec.figure(&m.figure) else {
            problems.push(format!(
                "{}: {} has no figure `{}`",
                m.at,
                m.record.display(),
                m.figure
            ));
            continue;
        };
        let before = m.before.replace('*', "");
        let Some((n, unit)) = numbers(&before).last().copied() else {
            problems.push(format!("{}: no number before the marker", m.at));
            continue;
        };
        if !n.matches(fig.value) || unit.is_some_and(|u| !same_unit(u, &fig.unit)) {
            problems.push(format!(
                "{}: the doc says {}{}; {} has `{}` = {} {}",
                m.at,
                n.value,
                unit.map_or(String::new(), |u| format!(" {u}")),
                m.record.display(),
                fig.name,
                fig.value,
                fig.unit
            ));
        }
    }
    problems
}

/// README.md and every markdown file under docs/.
fn docs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

fn relative(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// `DISTILL_PARSE_ONLY=1 distill ARGS`: `Err(clap's message)` when they do not parse.
fn parses(args: &[String]) -> Result<(), String> {
    let out = Command::new(env!("CARGO_BIN_EXE_distill"))
        .args(args)
        .env("DISTILL_PARSE_ONLY", "1")
        .output()
        .expect("the distill binary runs");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The source text an environment variable must appear in to be read.
fn sources() -> String {
    let mut text = read(&root().join("build.rs"));
    for dir in ["src", "benches", "kernels/src"] {
        let mut stack = vec![root().join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    text.push_str(&read(&p));
                }
            }
        }
    }
    text
}

/// Variables a record's command may set that the system reads, not this code: the name, and
/// who reads it.
const SYSTEM_VARIABLES: [(&str, &str); 1] = [(
    "VK_ICD_FILENAMES",
    "the Vulkan loader: which driver (ICD) to load",
)];

/// Whether `command` still works (see the module header); `Err(why not)`.
fn check_command(command: &str, sources: &str, benches: &[String]) -> Result<(), String> {
    let words: Vec<String> = command.split_whitespace().map(String::from).collect();
    let mut rest: &[String] = &words;
    while let Some((first, tail)) = rest.split_first() {
        let Some((name, _)) = first.split_once('=') else {
            break;
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
        {
            break;
        }
        let read_by_the_system = SYSTEM_VARIABLES.iter().any(|(v, _)| *v == name);
        if !read_by_the_system && !sources.contains(&format!("\"{name}\"")) {
            return Err(format!("`{name}` is read by no code"));
        }
        rest = tail;
    }
    let w: Vec<&str> = rest.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["distill", args @ ..] | ["cargo", "run", "--release", "--", args @ ..] => {
            let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            parses(&args).map_err(|e| format!("does not parse with today's CLI: {e}"))
        }
        ["cargo", "bench", "--bench", name, ..] => {
            if benches.iter().any(|b| b == name) {
                Ok(())
            } else {
                Err(format!("there is no bench target `{name}`"))
            }
        }
        // An outside yardstick's driver (benches/*.py): it exists, and its --help names every
        // option the command uses.
        ["python3", script, args @ ..] if script.starts_with("benches/") => {
            let path = root().join(script);
            if !path.is_file() {
                return Err(format!("there is no script `{script}`"));
            }
            let help = std::process::Command::new("python3")
                .arg(&path)
                .arg("--help")
                .output()
                .map_err(|e| format!("python3 {script} --help: {e}"))?;
            let help = String::from_utf8_lossy(&help.stdout);
            for flag in args.iter().filter(|a| a.starts_with("--")) {
                let flag = flag.split('=').next().unwrap_or(flag);
                if !help.contains(flag) {
                    return Err(format!("`{script}` has no option `{flag}`"));
                }
            }
            Ok(())
        }
        _ => Err(
            "not a `distill …`, `cargo run --release -- …`, `cargo bench --bench …` or \
             `python3 benches/….py` command"
                .into(),
        ),
    }
}

/// The `[[bench]]` names of Cargo.toml.
fn bench_targets() -> Vec<String> {
    let manifest: toml::Table = read(&root().join("Cargo.toml")).parse().unwrap();
    manifest["bench"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_readme_results_match_their_records() {
    let mut problems = Vec::new();
    for (doc, base) in RESULTS_DOCS {
        problems.extend(check_results(&read(&root().join(doc)), doc, base));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn quoted_figures_match_their_records() {
    let mut problems = Vec::new();
    let mut quoted = 0;
    for p in docs() {
        let text = read(&p);
        quoted += markers(&relative(&p), &text).len();
        problems.extend(check_markers(&relative(&p), &text));
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
    assert!(quoted > 0, "no doc marks a quoted figure");
}

#[test]
fn every_record_is_valid_quoted_and_its_command_still_works() {
    let dir = root().join("docs/results");
    // (docs/results/README.md describes records; it does not quote them.)
    let mut quotes = String::new();
    for p in docs().iter().filter(|p| !p.starts_with(&dir)) {
        quotes.push_str(&read(p));
    }
    let sources = sources();
    let benches = bench_targets();
    let mut problems = Vec::new();
    let mut count = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        count += 1;
        let name = relative(&p);
        let rec = match Record::load(&p) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        if !quotes.contains(&name) {
            problems.push(format!("{name}: no doc quotes it"));
        }
        if let Err(e) = check_command(&rec.command, &sources, &benches) {
            problems.push(format!("{name}: `{}`: {e}", rec.command));
        }
    }
    assert!(count > 0, "no records in {}", dir.display());
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The checks themselves catch drift: a changed figure, unit, command, date or load word in
/// the README, a changed quoted figure, and commands that no longer work.
#[test]
fn the_checks_catch_drift() {
    let docs: Vec<(&str, &str, String)> = RESULTS_DOCS
        .iter()
        .map(|&(doc, base)| (doc, base, read(&root().join(doc))))
        .collect();
    for (doc, base, text) in &docs {
        assert!(check_results(text, doc, base).is_empty());
    }
    for (from, to, want) in [
        (
            "**KD student 92.20 ± 0.17%",
            "**KD student 92.30 ± 0.17%",
            "92.3 is no figure",
        ),
        ("2.09× the floor", "2.09 points the floor", "2.09 points"),
        ("248 GFLOP/s, 91%", "248 GFLOP/s, 93%", "93 %"),
        ("1,602 s in all", "1,612 s in all", "1612 s"),
        (
            "| `cargo bench --bench train` |",
            "| `cargo bench --bench kernels` |",
            "not the record's",
        ),
        (
            "2026-11-29, load unknown",
            "2026-11-28, load unknown",
            "the date",
        ),
        (
            "2026-12-01, under load | `distill",
            "2026-12-01, quiet | `distill",
            "`under load`",
        ),
    ] {
        let (doc, base, text) = docs
            .iter()
            .find(|(_, _, text)| text.contains(from))
            .unwrap_or_else(|| panic!("no results table has `{from}` any more"));
        let problems = check_results(&text.replacen(from, to, 1), doc, base);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "changing `{from}` to `{to}` went unnoticed: {problems:?}"
        );
    }
    let quoted = "a run took 31 s<!-- record: docs/results/quick-run-2026-12-01.json wall time -->";
    assert!(check_markers("x.md", quoted).is_empty());
    for bad in [
        quoted.replace("31 s", "33 s"),
        quoted.replace("31 s", "31 ms"),
        quoted.replace("wall time", "wall clock"),
        quoted.replace("quick-run", "no-such-run"),
    ] {
        assert_eq!(check_markers("x.md", &bad).len(), 1, "{bad}");
    }
    let (sources, benches) = (sources(), bench_targets());
    let ok = |c: &str| check_command(c, &sources, &benches);
    assert_eq!(ok("cargo run --release -- run --quick"), Ok(()));
    assert_eq!(
        ok("distill --device cpu bench --quick --out x.json"),
        Ok(())
    );
    assert_eq!(
        ok("DISTILL_BENCH_QUICK=1 cargo bench --bench kernels"),
        Ok(())
    );
    assert_eq!(
        ok("python3 benches/tfjs_yardstick/run.py --backends wasm,distill-cpu --steps 2"),
        Ok(())
    );
    for (bad, want) in [
        ("distill run --no-such-flag", "does not parse"),
        ("distill train --arch", "does not parse"),
        ("cargo bench --bench nothing", "no bench target"),
        (
            "DISTILL_BENCH_SECS=0.1 cargo bench --bench kernels",
            "read by no code",
        ),
        ("python3 x.py", "not a"),
        ("python3 benches/nothing.py", "no script"),
        (
            "python3 benches/tfjs_yardstick/run.py --no-such-option 1",
            "has no option",
        ),
    ] {
        let e = ok(bad).unwrap_err();
        assert!(e.contains(want), "{bad}: {e}");
    }
}

#[test]
fn numbers_are_read_as_written() {
    let got: Vec<(f64, usize, Option<&str>)> = numbers(
        "teacher 92.38%, 1,602 s, +3.52 points, 4.0× fewer, `c32-c64` AVX2 1024³ 58–80% of it",
    )
    .into_iter()
    .map(|(w, u)| (w.value, w.decimals, u))
    .collect();
    assert_eq!(
        got,
        [
            (92.38, 2, Some("%")),
            (1602.0, 0, Some("s")),
            (3.52, 2, Some("points")),
            (4.0, 1, Some("×")),
            (1024.0, 0, None),
            (58.0, 0, None),
            (80.0, 0, Some("%")),
        ]
    );
    let w = Written {
        value: 0.29,
        decimals: 2,
    };
    assert!(w.matches(0.285) && w.matches(0.294) && !w.matches(0.296));
}
