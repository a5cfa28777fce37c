//! The mutation engine: seed files with their size and type fields, and the mutations made
//! from them (bit and byte flips, truncation, extension, splices of two seeds, size fields set
//! to extremes; for text, token-level edits).

use distill::rng::Rng;

use crate::Case;

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
