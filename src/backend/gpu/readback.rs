//! The one read-back path: copy to a MAP_READ staging buffer, submit, map asynchronously,
//! await the mapping. A browser maps a buffer only after the page yields to its event loop,
//! so a read-back is a future; native callers drive the same future with `pollster`, and its
//! `poll` waits on the device (which runs the map callback) instead of returning `Pending`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use crate::{Error, Result};

/// What a wgpu callback leaves for the future awaiting it: its outcome, and whom to wake.
struct Slot<T> {
    outcome: Option<T>,
    waker: Option<Waker>,
}

/// Resolves when a wgpu callback (a buffer mapping, the queue's work done) has run.
struct Called<T> {
    slot: Arc<Mutex<Slot<T>>>,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    device: wgpu::Device,
}

impl<T: Send + 'static> Called<T> {
    /// The future, and the function the callback calls with its outcome.
    fn new(device: &wgpu::Device) -> (Called<T>, impl FnOnce(T) + Send + 'static) {
        let slot = Arc::new(Mutex::new(Slot {
            outcome: None,
            waker: None,
        }));
        let s = slot.clone();
        let complete = move |outcome: T| {
            let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
            s.outcome = Some(outcome);
            if let Some(w) = s.waker.take() {
                w.wake();
            }
        };
        let called = Called {
            slot,
            device: device.clone(),
        };
        (called, complete)
    }
}

impl<T> Future for Called<T> {
    type Output = std::result::Result<T, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let take = |slot: &Mutex<Slot<T>>| {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .outcome
                .take()
        };
        if let Some(r) = take(&self.slot) {
            return Poll::Ready(Ok(r));
        }
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).waker = Some(cx.waker().clone());
        // Natively nothing else would ever run the callback: wait on the device here. When
        // another thread polls the same device at the same time, it may be the one that runs
        // our callback, a moment after our wait returns: look again before giving up.
        #[cfg(not(target_arch = "wasm32"))]
        {
            for attempt in 0..1000 {
                if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
                    return Poll::Ready(Err(format!("waiting for the GPU failed: {e}")));
                }
                if let Some(r) = take(&self.slot) {
                    return Poll::Ready(Ok(r));
                }
                if attempt > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            return Poll::Ready(Err("the GPU did not call back".into()));
        }
        #[allow(unreachable_code)]
        Poll::Pending
    }
}

/// Resolves when everything submitted to `queue` so far has finished on the device (what a
/// timing waits for: natively a device poll, in a browser the queue's promise).
pub(crate) async fn work_done(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    label: &str,
) -> Result<()> {
    let (called, complete) = Called::<()>::new(device);
    queue.on_submitted_work_done(move || complete(()));
    called
        .await
        .map_err(|e| Error::Device(format!("{label}: {e}")))
}

/// Maps the first `bytes` of a MAP_READ buffer whose copy has been submitted.
pub(crate) struct MapRead<'a> {
    buf: &'a wgpu::Buffer,
    bytes: u64,
}

impl<'a> MapRead<'a> {
    pub fn new(buf: &'a wgpu::Buffer, bytes: u64) -> Self {
        MapRead { buf, bytes }
    }

    /// The bytes, once the device has finished every submission before the map request.
    pub async fn wait(self, device: &wgpu::Device, label: &str) -> Result<Vec<u8>> {
        if self.bytes == 0 {
            return Ok(Vec::new());
        }
        let (mapped, complete) = Called::new(device);
        self.buf
            .map_async(wgpu::MapMode::Read, 0..self.bytes, complete);
        mapped
            .await
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| Error::Device(format!("{label}: reading a buffer back failed: {e}")))?;
        let data = {
            let view = self.buf.get_mapped_range(0..self.bytes).map_err(|e| {
                Error::Device(format!("{label}: mapping a read-back failed: {e:?}"))
            })?;
            view.to_vec()
        };
        self.buf.unmap();
        Ok(data)
    }
}

/// A read-back whose copy is submitted: the staging buffer (returned to the backend's cache
/// when done), its size class and the bytes to read.
pub(crate) struct Reading {
    staging: wgpu::Buffer,
    class: u64,
    bytes: u64,
}

impl Reading {
    pub fn start(staging: wgpu::Buffer, class: u64, bytes: u64) -> Reading {
        Reading {
            staging,
            class,
            bytes,
        }
    }

    /// The bytes, with the staging buffer and its class to reuse.
    pub async fn finish(
        self,
        device: &wgpu::Device,
        label: &str,
    ) -> Result<(Vec<u8>, wgpu::Buffer, u64)> {
        let data = MapRead::new(&self.staging, self.bytes)
            .wait(device, label)
            .await?;
        Ok((data, self.staging, self.class))
    }
}
