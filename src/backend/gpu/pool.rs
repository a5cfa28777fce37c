//! The buffer pool: storage buffers keyed by a size class, recycled when their tensor drops.
//!
//! A buffer released by a dropped [`GpuStorage`](super::GpuStorage) may still be read or
//! written by commands recorded in the pending (unsubmitted) encoder. It therefore waits in
//! `pending` until the next submit and only then becomes reusable. That makes
//! `queue.write_buffer` into a freshly acquired buffer safe: wgpu runs queue writes before the
//! commands of the next submission, and no command of that submission can touch a buffer
//! acquired after it was recorded. Everything already submitted runs before the write.
//!
//! In a steady-state training loop every size class is warm after the first step, so steps
//! allocate nothing ([`PoolStats::fresh_allocations`] stays flat).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::context::scoped;
use crate::{Error, Result};

/// Usage of every pooled storage buffer.
pub(crate) const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A unique id per wgpu buffer (bind groups are cached by the ids they bind).
pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

pub(crate) struct PooledBuffer {
    pub buf: wgpu::Buffer,
    pub id: u64,
    pub class: u64,
}

/// Counters of the pool, for tests and profiling reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers created on the device since it was opened.
    pub fresh_allocations: u64,
    /// Acquisitions served from the pool.
    pub reuses: u64,
    /// Bytes of all buffers the pool has created and not destroyed: those tensors hold plus
    /// `idle_bytes`.
    pub bytes_allocated: u64,
    /// Buffers idle in the pool right now (including those waiting for the next submit).
    pub idle_buffers: usize,
    /// Bytes of those idle buffers.
    pub idle_bytes: u64,
}

#[derive(Default)]
struct State {
    free: HashMap<u64, Vec<PooledBuffer>>,
    pending: Vec<PooledBuffer>,
    stats: PoolStats,
}

pub(crate) struct Pool {
    device: wgpu::Device,
    label: String,
    /// Largest buffer we may create and bind as storage.
    max_bytes: u64,
    /// The adapter limit that sets `max_bytes`, as wgpu names it.
    max_bytes_limit: &'static str,
    state: Mutex<State>,
}

/// What to do about a tensor that does not fit (a limit or out of memory). The library names
/// no command-line flag: the CLI maps settings to flags.
pub(crate) const SMALLER: &str =
    "a smaller batch size (or a smaller model) keeps every tensor within it";

/// `bytes` for a reader: `512 MiB`, `1.5 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= 1024.0 * MIB {
        format!("{:.1} GiB", b / (1024.0 * MIB))
    } else if b >= MIB {
        format!("{:.1} MiB", b / MIB)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// Size classes: 256 B minimum, then four per power of two (≤ 25 % waste; multiples of 16 B
/// so a vec4 view binds whole), so a buffer of a nearby size is reused without an exact match.
pub(crate) fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(256);
    let p = 63 - (bytes - 1).leading_zeros().min(63) as u64; // floor(log2(bytes - 1))
    if p < 8 {
        return 256;
    }
    let quarter = (1u64 << p) / 4;
    let c = bytes.div_ceil(quarter) * quarter;
    c.div_ceil(16) * 16
}

impl Pool {
    /// A pool whose buffers stay within `limits`: every buffer is bound as storage, so the
    /// largest is the smaller of `max_buffer_size` and `max_storage_buffer_binding_size`.
    pub fn new(device: wgpu::Device, label: String, limits: &wgpu::Limits) -> Self {
        let (max_bytes, max_bytes_limit) =
            if limits.max_storage_buffer_binding_size <= limits.max_buffer_size {
                (
                    limits.max_storage_buffer_binding_size,
                    "max_storage_buffer_binding_size",
                )
            } else {
                (limits.max_buffer_size, "max_buffer_size")
            };
        Pool {
            device,
            label,
            max_bytes,
            max_bytes_limit,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// A buffer of at least `bytes`, from the pool or freshly created. Contents are undefined.
    pub fn acquire(&self, bytes: u64) -> Result<PooledBuffer> {
        if bytes > self.max_bytes {
            return Err(Error::Device(format!(
                "{}: a buffer of {} bytes is over the adapter's {} of {} bytes ({}); {}",
                self.label,
                bytes,
                self.max_bytes_limit,
                self.max_bytes,
                human_bytes(self.max_bytes),
                SMALLER
            )));
        }
        // Round up to the class, but never past what the device allows.
        let class = size_class(bytes).min(self.max_bytes / 4 * 4).max(4);
        {
            let mut st = self.lock();
            if let Some(b) = st.free.get_mut(&class).and_then(Vec::pop) {
                st.stats.reuses += 1;
                return Ok(b);
            }
        }
        let buf = self.create(class)?;
        let mut st = self.lock();
        st.stats.fresh_allocations += 1;
        st.stats.bytes_allocated += class;
        Ok(PooledBuffer {
            buf,
            id: next_id(),
            class,
        })
    }

    fn create(&self, class: u64) -> Result<wgpu::Buffer> {
        let ((buf, val), oom) = scoped(&self.device, wgpu::ErrorFilter::OutOfMemory, || {
            scoped(&self.device, wgpu::ErrorFilter::Validation, || {
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("distill tensor"),
                    size: class,
                    usage: USAGE,
                    mapped_at_creation: false,
                })
            })
        });
        if let Some(e) = oom {
            let _ = e;
            return Err(Error::OutOfMemory {
                device: self.label.clone(),
                detail: format!(
                    "could not allocate a buffer of {class} bytes ({}) with {} already \
                     allocated; {SMALLER}",
                    human_bytes(class),
                    human_bytes(self.lock().stats.bytes_allocated)
                ),
            });
        }
        if let Some(e) = val {
            return Err(Error::Device(format!(
                "{}: could not create a buffer of {class} bytes: {e}",
                self.label
            )));
        }
        Ok(buf)
    }

    /// Called when a tensor drops: reusable after the next submit.
    pub fn release(&self, b: PooledBuffer) {
        self.lock().pending.push(b);
    }

    /// Called right after a submit: released buffers become reusable.
    pub fn recycle(&self) {
        let mut st = self.lock();
        let pending = std::mem::take(&mut st.pending);
        for b in pending {
            st.free.entry(b.class).or_default().push(b);
        }
    }

    /// Destroys idle buffers (after an out-of-memory error, before retrying).
    /// Returns the ids of the destroyed buffers.
    pub fn trim(&self) -> Vec<u64> {
        let mut st = self.lock();
        let mut ids = Vec::new();
        let free = std::mem::take(&mut st.free);
        for b in free.into_values().flatten() {
            st.stats.bytes_allocated -= b.class;
            ids.push(b.id);
            b.buf.destroy();
        }
        ids
    }

    pub fn stats(&self) -> PoolStats {
        let st = self.lock();
        let mut s = st.stats;
        let idle = st.pending.iter().chain(st.free.values().flatten());
        s.idle_buffers = 0;
        s.idle_bytes = 0;
        for b in idle {
            s.idle_buffers += 1;
            s.idle_bytes += b.class;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn classes_round_up_within_a_quarter() {
        assert_eq!(size_class(0), 256);
        assert_eq!(size_class(4), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(1024), 1024);
        assert_eq!(size_class(1025), 1280);
        for b in [300u64, 5000, 77_777, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(b);
            assert!(c >= b && c.is_multiple_of(16) && (c as f64) <= (b as f64) * 1.25 + 256.0);
        }
    }
}
