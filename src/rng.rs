//! A small seeded random number generator (SplitMix64), so results are reproducible across
//! platforms and crate versions, and its whole state is one `u64` that checkpoints can store.
//!
//! Defined in `distill-kernels` (whose tests draw their data from it) and re-exported here.

pub use distill_kernels::rng::*;
