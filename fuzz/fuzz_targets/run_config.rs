//! `config.json` read back on resume: a typed error or a configuration.
#![no_main]

use distill::pipeline::RunConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = distill_fuzz::write("config.json", data);
    let dir = p.parent().expect("scratch folder");
    if let Ok(Some(cfg)) = RunConfig::load_saved(dir) {
        let _ = cfg.validate();
        let _ = RunConfig::default().check_resume(&cfg, dir);
    }
});
