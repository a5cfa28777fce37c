//! CIFAR-10 and CIFAR-100 binary batches, raw and gzip, through `data::load` on a folder in
//! which one file is mutated.

use std::io::Write;
use std::path::PathBuf;

use distill::data::{load_with_warnings, LoadOptions};
use distill::rng::Rng;
use distill::Error;

use crate::{run_cases, Case, Field, Mutator, Seed};

const PIXELS: usize = 3 * 32 * 32;

/// Two records with labels `labels` (one byte each for CIFAR-10, coarse and fine for 100).
fn batch(labels: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        b.extend_from_slice(l);
        b.extend((0..PIXELS).map(|p| ((p * 7 + i * 13) % 256) as u8));
    }
    b
}

/// The label bytes of every record: the fields set to extremes.
fn label_fields(label_bytes: usize, records: usize) -> Vec<Field> {
    (0..records)
        .flat_map(|r| (0..label_bytes).map(move |k| Field::Byte(r * (label_bytes + PIXELS) + k)))
        .collect()
}

struct Layout {
    kind: &'static str,
    files: [&'static str; 2],
    valid: [Vec<u8>; 2],
    classes: usize,
}

fn layouts() -> [Layout; 2] {
    [
        Layout {
            kind: "cifar-10",
            files: ["data_batch_1.bin", "test_batch.bin"],
            valid: [batch(&[&[3], &[9]]), batch(&[&[0], &[5]])],
            classes: 10,
        },
        Layout {
            kind: "cifar-100",
            files: ["train.bin", "test.bin"],
            valid: [batch(&[&[19, 99], &[0, 3]]), batch(&[&[4, 42], &[11, 0]])],
            classes: 100,
        },
    ]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A case's first byte says where its bytes go: bit 0 CIFAR-10 or 100, bit 1 the training or
/// test file, bit 2 gzip them first.
#[test]
fn cifar_batches() {
    let root = crate::scratch_dir();
    let layouts = layouts();
    // One folder per (layout, gzip), holding exactly that layout's two files.
    let dirs: Vec<PathBuf> = (0..4)
        .map(|i| {
            let d = root.path().join(format!("cifar-{i}"));
            std::fs::create_dir(&d).unwrap();
            d
        })
        .collect();
    let mutators: Vec<Mutator> = layouts
        .iter()
        .map(|l| {
            let lb = if l.classes == 10 { 1 } else { 2 };
            Mutator::new(
                (0..2)
                    .map(|f| Seed::new(l.files[f], l.valid[f].clone(), label_fields(lb, 2)))
                    .collect(),
            )
        })
        .collect();
    run_cases(
        "cifar",
        0xC1FA,
        1200,
        |rng: &mut Rng| {
            let which = rng.below(8) as u8;
            let m = &mutators[(which & 1) as usize];
            let seed = &m.seeds[((which >> 1) & 1) as usize];
            let mut bytes = seed.bytes.clone();
            let mut done = vec![seed.name.clone()];
            for _ in 0..1 + rng.below(3) {
                done.push(m.mutate_once(rng, seed, &mut bytes));
            }
            if which & 4 != 0 {
                done.push("gzip".into());
            }
            bytes.insert(0, which);
            Case {
                origin: done.join(" → "),
                bytes,
            }
        },
        |bytes| {
            let which = bytes.first().copied().unwrap_or(0) as usize;
            let body = bytes.get(1..).unwrap_or_default();
            let (l, slot, gz) = (&layouts[which & 1], (which >> 1) & 1, which & 4 != 0);
            let dir = &dirs[(which & 1) * 2 + gz as usize];
            for f in 0..2 {
                let content = if f == slot {
                    body.to_vec()
                } else {
                    l.valid[f].clone()
                };
                let (name, content) = if gz {
                    (format!("{}.gz", l.files[f]), gzip(&content))
                } else {
                    (l.files[f].to_string(), content)
                };
                std::fs::write(dir.join(name), content).unwrap();
            }
            match load_with_warnings(dir, &LoadOptions::default()).map(|(ds, _)| ds) {
                Ok(ds) => {
                    if (ds.channels, ds.height, ds.width) != (3, 32, 32)
                        || ds.num_classes() != l.classes
                    {
                        return Err(format!(
                            "{}: {}×{}×{} images, {} classes",
                            l.kind,
                            ds.channels,
                            ds.height,
                            ds.width,
                            ds.num_classes()
                        ));
                    }
                    for s in [&ds.train, &ds.test] {
                        if s.is_empty() || s.images.len() != s.len() * PIXELS {
                            return Err(format!("{} bytes for {} images", s.images.len(), s.len()));
                        }
                        if let Some(x) = s.labels.iter().find(|&&x| x as usize >= l.classes) {
                            return Err(format!("label {x} of {} classes", l.classes));
                        }
                    }
                    Ok(())
                }
                Err(e) => crate::expect_variant(&e, "Data", |e| matches!(e, Error::Data(_))),
            }
        },
    );
}
