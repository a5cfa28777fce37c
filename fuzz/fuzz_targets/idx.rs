//! IDX files (raw or gzip): both readers must return a typed error or consistent values.
#![no_main]

use distill::data::idx::{read_images, read_labels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = distill_fuzz::write("file-idx3-ubyte", data);
    if let Ok(im) = read_images(&p) {
        assert_eq!(im.pixels.len(), im.count * im.channels * im.height * im.width);
    }
    let _ = read_labels(&p);
});
