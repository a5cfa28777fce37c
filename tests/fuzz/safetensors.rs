//! Safetensors checkpoints through `checkpoint::load`: the 8-byte header length, the JSON
//! header (shapes, dtypes, data_offsets set to extremes) and the data section.

use std::collections::BTreeMap;

use distill::checkpoint::{load, save, NamedTensor, StoreDtype};
use distill::rng::Rng;
use distill::Error;

use crate::{run_cases, text_mutation, Case, Field, Mutator, Seed};

fn tensor(name: &str, shape: &[usize]) -> NamedTensor {
    let n: usize = shape.iter().product();
    NamedTensor {
        name: name.into(),
        shape: shape.to_vec(),
        data: (0..n).map(|i| i as f32 * 0.25 - 1.0).collect(),
    }
}

/// A header and data section assembled by hand (for BF16, which `save` does not write).
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

fn seeds(dir: &std::path::Path) -> Vec<Seed> {
    let meta: BTreeMap<String, String> = [("arch", "student"), ("classes", "a,b,c")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut out = Vec::new();
    for (name, tensors, meta, dtype) in [
        (
            "f32",
            vec![
                tensor("conv1.weight", &[2, 1, 2, 2]),
                tensor("fc.bias", &[3]),
            ],
            meta.clone(),
            StoreDtype::F32,
        ),
        (
            "f16",
            vec![tensor("w", &[3, 2]), tensor("b", &[2])],
            BTreeMap::new(),
            StoreDtype::F16,
        ),
        ("empty", vec![], meta.clone(), StoreDtype::F32),
        (
            "zero-size",
            vec![tensor("z", &[0, 4]), tensor("one", &[1])],
            BTreeMap::new(),
            StoreDtype::F32,
        ),
    ] {
        let path = dir.join(format!("{name}.safetensors"));
        save(&path, &tensors, &meta, dtype).unwrap();
        out.push(Seed::new(
            name,
            std::fs::read(&path).unwrap(),
            vec![Field::Le64(0)],
        ));
    }
    let bf16 = raw_file(
        r#"{"x":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]}}"#,
        &[0x80, 0x3F, 0, 0x40, 0, 0, 0x80, 0xBF],
    );
    out.push(Seed::new("bf16", bf16, vec![Field::Le64(0)]));
    out
}

/// The header text of a safetensors file, when its length field is sane.
fn split(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header = bytes.get(8..8usize.checked_add(n)?)?;
    Some((header, &bytes[8 + n..]))
}

#[test]
fn safetensors_checkpoints() {
    let dir = crate::scratch_dir();
    let seeds = seeds(dir.path());
    let headers: Vec<Seed> = seeds
        .iter()
        .map(|s| Seed::new(&s.name, split(&s.bytes).unwrap().0.to_vec(), vec![]))
        .collect();
    let m = Mutator::new(seeds.clone());
    let path = dir.path().join("case.safetensors");
    run_cases(
        "safetensors",
        0x5AFE,
        3000,
        |rng: &mut Rng| {
            // Half the cases mutate the JSON header as text and (mostly) fix the length
            // field, so the mutation reaches the header's meaning, not only its framing.
            if rng.below(2) == 0 {
                return m.mutate(rng);
            }
            let s = &seeds[rng.below(seeds.len())];
            let (header, data) = split(&s.bytes).unwrap();
            let mut text = header.to_vec();
            let mut done = vec![s.name.clone()];
            for _ in 0..1 + rng.below(3) {
                done.push(text_mutation(rng, &mut text, &headers));
            }
            let mut data = data.to_vec();
            if rng.below(4) == 0 {
                let to = rng.below(data.len() + 9);
                data.resize(to, 0x3C);
                done.push(format!("data resized to {to}"));
            }
            let mut bytes = if rng.below(5) == 0 {
                done.push("length field kept".into());
                s.bytes[..8].to_vec()
            } else {
                (text.len() as u64).to_le_bytes().to_vec()
            };
            bytes.extend_from_slice(&text);
            bytes.extend_from_slice(&data);
            Case {
                origin: done.join(" → "),
                bytes,
            }
        },
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            match load(&path) {
                Ok(ck) => {
                    for t in &ck.tensors {
                        let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                        if n != Some(t.data.len()) {
                            return Err(format!(
                                "tensor {} of shape {:?} has {} values",
                                t.name,
                                t.shape,
                                t.data.len()
                            ));
                        }
                        if t.name == "__metadata__" {
                            return Err("a tensor named __metadata__".into());
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    crate::expect_variant(&e, "Checkpoint", |e| matches!(e, Error::Checkpoint(_)))
                }
            }
        },
    );
}
