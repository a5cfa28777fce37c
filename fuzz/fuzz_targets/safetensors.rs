//! Safetensors checkpoints: a typed error or tensors whose data matches their shapes.
#![no_main]

use distill::checkpoint::load;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = distill_fuzz::write("case.safetensors", data);
    if let Ok(ck) = load(&p) {
        for t in &ck.tensors {
            let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            assert_eq!(n, Some(t.data.len()), "tensor {}", t.name);
        }
    }
});
