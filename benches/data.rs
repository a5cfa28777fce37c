//! Data bench: loading + decoding the shipped Fashion-MNIST (all 70,000 images), and batches
//! per second at batch 128 with and without augmentation. `cargo bench --bench data`.

use std::sync::Arc;
use std::time::Instant;

use distill::data::{batches, default_data_dir, load, Augment, LoadOptions};

fn main() {
    let dir = default_data_dir();
    let opts = LoadOptions::default();
    // Warm the page cache, then time a few loads and keep the best.
    let ds = load(&dir, &opts).expect("load the shipped Fashion-MNIST");
    let mut load_s = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        let d = load(&dir, &opts).expect("load");
        load_s = load_s.min(t.elapsed().as_secs_f64());
        assert_eq!(d.train.len() + d.test.len(), 70_000);
    }
    println!("data bench ({})", dir.display());
    println!("{:<44} {:>12}  {:>14}", "what", "value", "images/s");
    println!(
        "{:<44} {:>10.3} s  {:>14.0}",
        "load + decode 70,000 images (best of 3)",
        load_s,
        70_000.0 / load_s
    );

    let train = Arc::new(ds.train.clone());
    let (c, h, w) = (ds.channels, ds.height, ds.width);
    // Best epoch of 3 each.
    for (label, augment) in [
        ("batches/s, batch 128, no augmentation", Augment::default()),
        (
            "batches/s, batch 128, crop(pad 2) + hflip",
            Augment {
                crop_padding: 2,
                hflip: true,
            },
        ),
    ] {
        let mut cfg = ds.batch_config(128, 1);
        cfg.augment = augment;
        let mut best = 0f64;
        for epoch in 0..3 {
            let t = Instant::now();
            let mut n = 0usize;
            let mut checksum = 0f32;
            for b in batches(train.clone(), c, h, w, &cfg, epoch) {
                checksum += b.images[0];
                n += 1;
            }
            std::hint::black_box(checksum);
            best = best.max(n as f64 / t.elapsed().as_secs_f64());
        }
        println!("{label:<44} {best:>12.0}  {:>14.0}", best * 128.0);
    }
}
