//! Kernel timing with GPU timestamps (TIMESTAMP_QUERY).
//!
//! With profiling on, each dispatch's compute pass writes a begin and an end timestamp into
//! a query set. At submit the queries are resolved into a buffer and copied to a mappable
//! one; after the submission finishes, the differences are summed per kernel name. Profiling
//! therefore waits for the GPU at every submit: it measures kernels, not the pipelining.

use std::collections::HashMap;

use crate::backend::KernelTime;

/// Dispatches per submission that can be timed (the executor submits when they run out).
pub(crate) const PROFILE_SLOTS: u32 = 1024;

pub(crate) struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    pub readback: wgpu::Buffer,
    /// Kernel of each timed dispatch of the pending submission, in query order.
    names: Vec<&'static str>,
    /// Per kernel: (calls, total milliseconds).
    totals: HashMap<&'static str, (u64, f64)>,
}

impl Profiler {
    pub fn new(device: &wgpu::Device) -> Profiler {
        let bytes = 16 * PROFILE_SLOTS as u64;
        Profiler {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("distill timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * PROFILE_SLOTS,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distill timestamps resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distill timestamps readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            names: Vec::new(),
            totals: HashMap::new(),
        }
    }

    /// Every query slot of this submission is taken.
    pub fn is_full(&self) -> bool {
        self.names.len() as u32 >= PROFILE_SLOTS
    }

    /// Timestamp writes for the next dispatch, a pass of `kernel`.
    pub fn time_next(&mut self, kernel: &'static str) -> wgpu::ComputePassTimestampWrites<'_> {
        let i = self.names.len() as u32;
        self.names.push(kernel);
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        }
    }

    /// Records the resolve and copy of this submission's timestamps into `enc`. Returns the
    /// bytes [`Profiler::add_times`] will want from `readback`, or `None` if nothing was timed.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) -> Option<u64> {
        if self.names.is_empty() {
            return None;
        }
        let n = self.names.len() as u32;
        let bytes = 16 * n as u64;
        enc.resolve_query_set(&self.queries, 0..2 * n, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, bytes);
        Some(bytes)
    }

    /// Adds the timestamps read back from `readback` (`period`: nanoseconds per tick).
    pub fn add_times(&mut self, bytes: &[u8], period: f64) {
        let tick = |k: usize| {
            let o = 8 * k;
            u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"))
        };
        for (i, name) in self.names.drain(..).enumerate() {
            let (t0, t1) = (tick(2 * i), tick(2 * i + 1));
            let ms = t1.saturating_sub(t0) as f64 * period / 1e6;
            let e = self.totals.entry(name).or_insert((0, 0.0));
            e.0 += 1;
            e.1 += ms;
        }
    }

    /// Time per kernel so far, slowest first (ties by name).
    pub fn report(&self) -> Vec<KernelTime> {
        let mut v: Vec<KernelTime> = self
            .totals
            .iter()
            .map(|(name, &(calls, total_ms))| KernelTime {
                name: name.to_string(),
                calls,
                total_ms,
            })
            .collect();
        v.sort_by(|a, b| {
            b.total_ms
                .total_cmp(&a.total_ms)
                .then_with(|| a.name.cmp(&b.name))
        });
        v
    }
}
