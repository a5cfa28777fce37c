//! Batching: coverage, normalisation, shuffling and augmentation as a function of seed and
//! epoch, the producer thread, and batches of the shipped set.

use std::io::Write;
use std::sync::Arc;

use distill::data::{batches, try_batches, Augment, BatchConfig, Split};

use crate::fashion;

/// n images of 1×4×4, image i = bytes i*16 .. i*16+16 (mod 256), label i % 3.
fn ramp_split(n: usize) -> Split {
    Split {
        images: (0..n * 16).map(|v| v as u8).collect(),
        labels: (0..n as u32).map(|i| i % 3).collect(),
    }
}

#[test]
fn batches_cover_the_split_once_normalised() {
    let split = Arc::new(ramp_split(10));
    let cfg = BatchConfig {
        batch_size: 4,
        seed: 3,
        mean: vec![0.5],
        std: vec![0.25],
        ..Default::default()
    };
    let it = batches(split.clone(), 1, 4, 4, &cfg, 0);
    assert_eq!(it.len(), 3);
    assert_eq!(it.num_batches(), 3);
    let all: Vec<_> = it.collect();
    assert_eq!(
        all.iter().map(|b| b.len()).collect::<Vec<_>>(),
        vec![4, 4, 2]
    );
    assert_eq!(all[2].shape, [2, 1, 4, 4]);
    let mut seen: Vec<usize> = all.iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(seen, (0..10).collect::<Vec<_>>(), "shuffled");
    seen.sort();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());
    let b = &all[0];
    for (k, &i) in b.indices.iter().enumerate() {
        assert_eq!(b.labels[k], split.labels[i]);
        for p in 0..16 {
            let want = (split.image(i)[p] as f32 / 255.0 - 0.5) / 0.25;
            assert!((b.images[k * 16 + p] - want).abs() < 1e-6);
        }
    }
    // drop_last
    let it = batches(
        split.clone(),
        1,
        4,
        4,
        &BatchConfig {
            drop_last: true,
            ..cfg.clone()
        },
        0,
    );
    assert_eq!(it.len(), 2);
    assert!(it.map(|b| b.len()).all(|n| n == 4));
    // No shuffle: in order.
    let it = batches(split, 1, 4, 4, &BatchConfig::eval(4, vec![], vec![]), 0);
    let idx: Vec<usize> = it.flat_map(|b| b.indices).collect();
    assert_eq!(idx, (0..10).collect::<Vec<_>>());
}

#[test]
fn shuffle_and_augmentation_are_a_function_of_seed_and_epoch() {
    let split = Arc::new(ramp_split(50));
    let cfg = BatchConfig {
        batch_size: 8,
        seed: 11,
        augment: Augment {
            crop_padding: 2,
            hflip: true,
        },
        ..Default::default()
    };
    let run =
        |cfg: &BatchConfig, epoch| batches(split.clone(), 1, 4, 4, cfg, epoch).collect::<Vec<_>>();
    let a = run(&cfg, 1);
    assert_eq!(a, run(&cfg, 1), "same seed and epoch, same batches");
    let b = run(&cfg, 2);
    assert_ne!(a[0].indices, b[0].indices, "another epoch, another order");
    let c = run(
        &BatchConfig {
            seed: 12,
            ..cfg.clone()
        },
        1,
    );
    assert_ne!(a[0].indices, c[0].indices, "another seed, another order");
    // Each image's augmentation does not depend on the batch size.
    let d = run(
        &BatchConfig {
            batch_size: 3,
            ..cfg.clone()
        },
        1,
    );
    let per_image = |bs: &[distill::data::Batch]| {
        let mut v: Vec<(usize, Vec<f32>)> = bs
            .iter()
            .flat_map(|b| {
                b.indices
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| (i, b.images[k * 16..(k + 1) * 16].to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_by_key(|x| x.0);
        v
    };
    assert_eq!(per_image(&a), per_image(&d));
    // Augmentation really changes some images.
    let plain = run(
        &BatchConfig {
            augment: Augment::default(),
            ..cfg.clone()
        },
        1,
    );
    assert_ne!(per_image(&a), per_image(&plain));
}

#[test]
fn crop_and_flip_move_pixels_as_expected() {
    // One 1×3×3 image 1..9; without normalisation x = byte/255.
    let split = Arc::new(Split {
        images: (1..=9).collect(),
        labels: vec![0],
    });
    let get = |aug: Augment, epoch| {
        let cfg = BatchConfig {
            batch_size: 1,
            augment: aug,
            ..Default::default()
        };
        let b = batches(split.clone(), 1, 3, 3, &cfg, epoch).next().unwrap();
        b.images
            .iter()
            .map(|x| (x * 255.0).round() as u8)
            .collect::<Vec<u8>>()
    };
    let mut flips = 0;
    let mut crops = std::collections::HashSet::new();
    for epoch in 0..64 {
        let f = get(
            Augment {
                crop_padding: 0,
                hflip: true,
            },
            epoch,
        );
        if f == [3, 2, 1, 6, 5, 4, 9, 8, 7] {
            flips += 1;
        } else {
            assert_eq!(f, (1..=9).collect::<Vec<u8>>());
        }
        let c = get(
            Augment {
                crop_padding: 1,
                hflip: false,
            },
            epoch,
        );
        // Every crop is the image shifted by dy, dx in -1..=1 with zero fill.
        let ok = (-1i32..=1).any(|dy| {
            (-1i32..=1).any(|dx| {
                let want: Vec<u8> = (0..9)
                    .map(|p| {
                        let (y, x) = (p / 3 + dy, p % 3 + dx);
                        if (0..3).contains(&y) && (0..3).contains(&x) {
                            (y * 3 + x + 1) as u8
                        } else {
                            0
                        }
                    })
                    .collect();
                want == c
            })
        });
        assert!(ok, "epoch {epoch}: {c:?} is not a shifted copy");
        crops.insert(c);
    }
    assert!((16..=48).contains(&flips), "flips {flips} of 64");
    assert!(crops.len() >= 6, "only {} distinct crops", crops.len());
}

#[test]
fn dropping_the_iterator_early_stops_the_thread() {
    let split = Arc::new(ramp_split(10_000));
    for _ in 0..20 {
        let mut it = batches(
            split.clone(),
            1,
            4,
            4,
            &BatchConfig {
                batch_size: 2,
                ..Default::default()
            },
            0,
        );
        assert!(it.next().is_some());
        drop(it); // joins the producer; a hang here fails the test by timeout
    }
    // A bad config is an error from try_batches.
    assert!(try_batches(
        split.clone(),
        1,
        4,
        4,
        &BatchConfig {
            batch_size: 0,
            ..Default::default()
        },
        0
    )
    .is_err());
    assert!(try_batches(split.clone(), 3, 4, 4, &BatchConfig::default(), 0).is_err());
    let cfg = BatchConfig {
        mean: vec![0.1, 0.2],
        std: vec![1.0, 1.0],
        ..Default::default()
    };
    assert!(try_batches(split, 1, 4, 4, &cfg, 0).is_err());
}

#[test]
fn batches_of_the_shipped_set() {
    let ds = fashion();
    let train = Arc::new(ds.train.clone());
    let mut cfg = ds.batch_config(128, 0);
    cfg.drop_last = true;
    let it = batches(train, ds.channels, ds.height, ds.width, &cfg, 0);
    assert_eq!(it.len(), 468);
    let mut n = 0;
    let mut sum = 0f64;
    for b in it.take(50) {
        assert_eq!(b.shape, [128, 1, 28, 28]);
        sum += b.images.iter().map(|&x| x as f64).sum::<f64>();
        n += b.images.len();
    }
    // Normalised with the training mean and std: the mean is close to 0.
    assert!((sum / n as f64).abs() < 0.05, "mean {}", sum / n as f64);
    let _ = std::io::stderr().flush();
}
