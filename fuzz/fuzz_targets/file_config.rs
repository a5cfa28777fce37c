//! The `--config FILE.toml` parser of the binary (compiled in from src/cli/args.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/cli/args.rs"]
mod args;

fuzz_target!(|data: &[u8]| {
    let p = distill_fuzz::write("config.toml", data);
    // Loading fills every subcommand's options from the file.
    let _ = args::FileConfig::load(&p);
});
