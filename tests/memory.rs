//! Memory stays flat over a long run: after the first epoch, the bytes a device's buffer pool
//! accounts for ([`MemoryStats::live_bytes`]: buffers that tensors hold plus free buffers
//! parked for reuse) and its fresh allocations do not grow from one epoch to the next. A
//! tensor kept alive per epoch (a leak) makes them grow by its size every epoch.
//!
//! Its own test binary: the CPU device is one per process, so any other test running beside
//! this one would move its counters. The two tests here take one lock so the GPU run cannot
//! touch the CPU pool while the CPU run counts. The GPU test uses a private device, as
//! `gpu_parity/` does for its pool counters; without an adapter it prints one line and passes,
//! unless `DISTILL_REQUIRE_GPU=1`.

mod common;

use std::sync::{Arc, Mutex};

use distill::backend::MemoryStats;
use distill::data::{Dataset, Split};
use distill::nn::ArchSpec;
use distill::train::{self, EpochRecord, Observer, TrainConfig, TrainJob};
use distill::Device;

const EPOCHS: usize = 8;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// 96 training and 32 test images of 1×12×12 in 4 classes: three batches of 32 per epoch.
fn tiny_dataset() -> Dataset {
    let split = |n: usize, salt: usize| {
        let mut images = Vec::with_capacity(n * 144);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 4) as u32;
            for p in 0..144 {
                let lit = p / 36 == label as usize;
                images.push(if lit { 180 } else { 20 } + ((i * 31 + p * 7 + salt) % 50) as u8);
            }
            labels.push(label);
        }
        Split::new(images, labels).unwrap()
    };
    Dataset::from_splits(
        "tiny",
        (1, 12, 12),
        (0..4).map(|c| format!("class {c}")).collect(),
        split(96, 0),
        split(32, 13),
    )
    .unwrap()
}

/// Reads the device's memory counters at the end of every epoch.
struct Recorder {
    device: Device,
    per_epoch: Vec<MemoryStats>,
}

impl Observer for Recorder {
    fn epoch_end(&mut self, _record: &EpochRecord) {
        self.per_epoch.push(self.device.memory());
    }
}

/// Trains the student for [`EPOCHS`] epochs on `device` and returns the counters per epoch.
fn memory_per_epoch(device: &Device) -> Vec<MemoryStats> {
    let ds = tiny_dataset();
    let spec = ArchSpec::preset("student", 1, 12, 12, 4).unwrap();
    let job = TrainJob {
        run: "student".into(),
        spec: spec.clone(),
        input: train::InputSpec::of(&ds),
        device: device.clone(),
        config: TrainConfig {
            epochs: EPOCHS,
            batch_size: 32,
            ..TrainConfig::default()
        },
        train: Arc::new(ds.train.clone()),
        test: Arc::new(ds.test.clone()),
        kd: None,
        hint: None,
        checkpoint_dir: None,
        resume: false,
    };
    let mut obs = Recorder {
        device: device.clone(),
        per_epoch: Vec::new(),
    };
    let trained = train::train(job, &mut obs).unwrap();
    assert_eq!(obs.per_epoch.len(), EPOCHS);
    // The counters count: the model's parameters alone are in use while it lives.
    let param_bytes = spec.num_parameters() as u64 * 4;
    assert!(
        obs.per_epoch[0].in_use_bytes >= param_bytes,
        "in use {:?}, the parameters alone are {param_bytes} bytes",
        obs.per_epoch[0]
    );
    drop(trained);
    obs.per_epoch
}

/// Epoch 2 against epoch 8: nothing more held, nothing more allocated.
fn assert_flat(device: &str, per_epoch: &[MemoryStats]) {
    let (second, last) = (per_epoch[1], per_epoch[EPOCHS - 1]);
    let series: Vec<(u64, u64, u64)> = per_epoch
        .iter()
        .map(|m| (m.in_use_bytes, m.idle_bytes, m.fresh_allocations))
        .collect();
    assert_eq!(
        second.live_bytes(),
        last.live_bytes(),
        "{device}: live bytes grew from epoch 2 to epoch {EPOCHS}; \
         (in use, idle, fresh allocations) per epoch: {series:?}"
    );
    assert_eq!(
        second.fresh_allocations, last.fresh_allocations,
        "{device}: fresh allocations grew from epoch 2 to epoch {EPOCHS}; \
         (in use, idle, fresh allocations) per epoch: {series:?}"
    );
}

#[test]
fn cpu_pool_is_flat_over_epochs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let per_epoch = memory_per_epoch(&Device::cpu());
    assert_flat("cpu", &per_epoch);
}

#[test]
fn gpu_pool_is_flat_over_epochs() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(gpu) = common::gpu_backend_or_skip() else {
        return;
    };
    let device = gpu.device();
    let per_epoch = memory_per_epoch(&device);
    assert_flat("gpu", &per_epoch);
    // The backend's view and the pool's own counters agree.
    let pool = gpu.pool_stats();
    let now = device.memory();
    assert_eq!(now.live_bytes(), pool.bytes_allocated);
    assert_eq!(now.idle_bytes, pool.idle_bytes);
}
