//! CIFAR-10 and CIFAR-100 binary batches: a typed error or whole records with valid labels.
#![no_main]

use distill::data::cifar::{read_batch, CifarKind, PIXELS};
use distill::data::Split;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = distill_fuzz::write("batch.bin", data);
    for (kind, classes) in [(CifarKind::Cifar10, 10), (CifarKind::Cifar100, 100)] {
        let mut s = Split::default();
        if read_batch(&p, kind, &mut s).is_ok() {
            assert_eq!(s.images.len(), s.labels.len() * PIXELS);
            assert!(s.labels.iter().all(|&l| l < classes));
        }
    }
});
