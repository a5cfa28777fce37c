//! `report.json` read back: a typed error or a report that serialises again.
#![no_main]

use distill::pipeline::Report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = serde_json::from_str::<Report>(text) {
            let _ = serde_json::to_string(&r);
        }
    }
});
