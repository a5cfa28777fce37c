//! Stopping a training on request (Ctrl-C) at a safe point. A signal handler calls
//! [`request_stop`]; a training in progress notices at the end of its current batch, drops the
//! unfinished epoch and returns [`Error::Interrupted`](crate::Error::Interrupted). Its finished
//! epochs are already on disk (checkpoints are written after every epoch), and the batch order
//! is a function of (seed, epoch), so a resume repeats the dropped epoch exactly.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Asks the trainings in progress to stop at their next safe point. Returns false when there
/// is none to ask, or a stop was already asked for: the caller may then end the process, as
/// nothing unsaved is lost by it.
pub fn request_stop() -> bool {
    RUNNING.load(Ordering::SeqCst) > 0 && !STOP.swap(true, Ordering::SeqCst)
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Marks a training as in progress while it lives.
pub(crate) struct Running;

impl Running {
    /// The first training to start clears a request left over from an earlier one.
    pub(crate) fn start() -> Running {
        if RUNNING.fetch_add(1, Ordering::SeqCst) == 0 {
            STOP.store(false, Ordering::SeqCst);
        }
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}
