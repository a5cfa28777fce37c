//! The one read-back path: copy to a MAP_READ staging buffer, submit, map asynchronously,
//! await the mapping. A browser maps a buffer only after the page yields to its event loop,
//! so a read-back is a future; native callers drive the same future with `pollster`, and its
//! `poll` waits on the device (which runs the map callback) instead of returning `Pending`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use crate::{Error, Result};

/// What the map callback leaves for the future: its outcome, and whom to wake.
#[derive(Default)]
struct Slot {
    outcome: Option<std::result::Result<(), wgpu::BufferAsyncError>>,
    waker: Option<Waker>,
}

/// Resolves when the map callback of one `map_async` has run.
struct Mapped {
    slot: Arc<Mutex<Slot>>,
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    device: wgpu::Device,
}

impl Future for Mapped {
    type Output = std::result::Result<(), String>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let take = |slot: &Mutex<Slot>| {
            slot.lock()
                .unwrap_or_else(|e| e.into_inner())
                .outcome
                .take()
        };
        if let Some(r) = take(&self.slot) {
            return Poll::Ready(r.map_err(|e| e.to_string()));
        }
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).waker = Some(cx.waker().clone());
        // Natively nothing else would ever run the callback: wait on the device here.
        #[cfg(not(target_arch = "wasm32"))]
        {
            if let Err(e) = self.device.poll(wgpu::PollType::wait_indefinitely()) {
                return Poll::Ready(Err(format!("waiting for the GPU failed: {e}")));
            }
            return Poll::Ready(match take(&self.slot) {
                Some(r) => r.map_err(|e| e.to_string()),
                None => Err("the GPU did not finish a read-back".into()),
            });
        }
        #[allow(unreachable_code)]
        Poll::Pending
    }
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
        let slot = Arc::new(Mutex::new(Slot::default()));
        let s = slot.clone();
        self.buf
            .map_async(wgpu::MapMode::Read, 0..self.bytes, move |r| {
                let mut s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.outcome = Some(r);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            });
        let mapped = Mapped {
            slot,
            device: device.clone(),
        };
        mapped
            .await
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
