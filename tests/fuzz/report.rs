//! `report.json` read back: `serde_json::from_str::<Report>` on mutated JSON text.

use distill::pipeline::Report;
use distill::rng::Rng;
use serde_json::{json, Value};

use crate::{mutate_text, run_cases, Seed};

fn summary(run: &str, epochs: usize) -> Value {
    let history: Vec<Value> = (1..=epochs)
        .map(|e| {
            json!({
                "run": run, "epoch": e, "lr": 0.001, "train_loss": 1.5 / e as f64,
                "train_accuracy": 0.5, "test_loss": 1.25, "test_accuracy": 0.75,
                "seconds": 2.5, "images_per_second": 1234.5
            })
        })
        .collect();
    json!({
        "run": run, "arch": "student", "seed": 7, "train_images": 6000,
        "final_accuracy": 0.8, "best_accuracy": 0.81, "best_epoch": epochs,
        "seconds_per_epoch": 2.5, "history": history
    })
}

fn stats(arch: &str) -> Value {
    json!({
        "arch": arch, "parameters": 421642, "bytes_f32": 1686568, "bytes_f16": 843284,
        "latency_ms_batch1": 0.42, "throughput_batch256": 51234.0
    })
}

/// Reports of one and of two seeds, with and without the offline-KD timings.
fn reports() -> Vec<Value> {
    let configs = crate::config::configs();
    (0..2)
        .map(|i| {
            let seeds = i + 1;
            json!({
                "version": "0.1.0", "dataset": "fashion-mnist", "device": "cpu (2 threads)",
                "class_names": ["T-shirt/top", "Trouser", "Pullover"],
                "teacher_train_images": 60000, "student_train_images": 6000,
                "test_images": 10000,
                "config": serde_json::to_value(&configs[i]).unwrap(),
                "teacher": summary("teacher", 2),
                "baseline": (0..seeds).map(|_| summary("baseline", 3)).collect::<Vec<_>>(),
                "kd": (0..seeds).map(|_| summary("kd", 3)).collect::<Vec<_>>(),
                "teacher_stats": stats("teacher"), "student_stats": stats("student"),
                "kd_gain_final": 0.012, "kd_gain_best": 0.01, "compression": 12.5,
                "speedup_throughput": 5.5, "speedup_latency": 3.25,
                "teacher_cache_seconds": if i == 0 { json!(1.5) } else { Value::Null },
                "teacher_seconds_saved": if i == 0 { json!(12.0) } else { Value::Null },
                "kd_confusion": [[5, 1, 0], [0, 6, 0], [1, 0, 4]],
                "floor": if i == 0 { json!({
                    "work_tflop": 71.8, "peak_gflops": 94.5,
                    "peak_label": "cpu fma-chain avx2+fma, 2 threads",
                    "peak_source": "measured at the end of this run", "floor_seconds": 760.2,
                    "seconds": 1589.4, "times_floor": 2.09
                }) } else { Value::Null },
                "total_seconds": 99.5,
                "load": if i == 0 { json!({
                    "before": {"one": 0.52, "five": 0.58, "fifteen": 0.59},
                    "after": null, "logical_cpus": 2, "threads": 2
                }) } else { Value::Null }
            })
        })
        .collect()
}

#[test]
fn report_json() {
    let seeds: Vec<Seed> = reports()
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            [
                Seed::new(
                    &format!("report {i} pretty"),
                    serde_json::to_vec_pretty(r).unwrap(),
                    vec![],
                ),
                Seed::new(
                    &format!("report {i} compact"),
                    serde_json::to_vec(r).unwrap(),
                    vec![],
                ),
            ]
        })
        .collect();
    for s in &seeds {
        let text = std::str::from_utf8(&s.bytes).unwrap();
        serde_json::from_str::<Report>(text).unwrap_or_else(|e| panic!("{}: {e}", s.name));
    }
    run_cases(
        "report",
        0x4E90,
        2500,
        |rng: &mut Rng| mutate_text(rng, &seeds),
        |bytes| {
            // report.json is read as text: bytes that are not UTF-8 never reach the parser.
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Ok(());
            };
            match serde_json::from_str::<Report>(text) {
                // A number too large for an f32 reads as infinity and writes back as null.
                Ok(r) if !crate::config::finite(&r.config) || !finite_lrs(&r) => Ok(()),
                Ok(r) => {
                    let back = serde_json::to_string(&r).map_err(|e| e.to_string())?;
                    serde_json::from_str::<Report>(&back)
                        .map(|_| ())
                        .map_err(|e| format!("a parsed report does not read back: {e}"))
                }
                Err(_) => Ok(()),
            }
        },
    );
}

/// Whether the learning rates of every epoch record (the report's other f32s) are finite.
fn finite_lrs(r: &Report) -> bool {
    std::iter::once(&r.teacher)
        .chain(&r.baseline)
        .chain(&r.kd)
        .flat_map(|s| &s.history)
        .all(|e| e.lr.is_finite())
}
