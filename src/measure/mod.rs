//! Measuring this machine, below everything that reports a measurement (`bench`, `pipeline`):
//! the one timing loop (`timing`), each device's peaks (`peak`), the machine's description
//! (`machine`), the load average around a measurement (`load`), the versioned bench report
//! (`report`), the records behind quoted figures (`record`), and the reference peaks a run's
//! floor is read against (`reference`).

pub mod load;
pub mod machine;
#[cfg(not(target_arch = "wasm32"))]
pub mod peak;
pub mod record;
pub mod reference;
pub mod report;
pub mod timing;

pub use report::Peak;
