//! What every kernel launch needs: checking operands, allocating from the pool, recording a
//! dispatch, reading a buffer back, and the workgroup-grid arithmetic.

use super::exec::Bind;
use super::params::ShaderParams;
use super::table::Kernel;
use super::tiles::Tile;
use super::{GpuBackend, GpuStorage};
use crate::backend::Storage;
use crate::{Error, Result};

/// Workgroups for a 1-D range on a 2-D grid (x ≤ 65535): shaders flatten `y·nx + x`
/// (common/grid.wgsl).
pub(crate) fn grid(groups: usize) -> (u32, u32, u32) {
    const MAX_X: usize = 65_535;
    if groups <= MAX_X {
        (groups as u32, 1, 1)
    } else {
        (MAX_X as u32, groups.div_ceil(MAX_X) as u32, 1)
    }
}

/// Workgroups of a tiled GEMM: column tiles over x (then z past 65535), row tiles over y
/// (common/tile.wgsl).
pub(crate) fn tile_grid(m: usize, n: usize, tile: Tile) -> (u32, u32, u32) {
    let (tn, tm) = (n.div_ceil(tile.cols()), m.div_ceil(tile.rows()));
    let x = tn.min(65_535);
    (x as u32, tm as u32, tn.div_ceil(x.max(1)) as u32)
}

/// A size or index as the u32 kernels take.
pub(crate) fn u(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Device(format!("dimension {v} does not fit in 32 bits")))
}

/// `s` as a dispatch binds it.
pub(crate) fn bind(s: &GpuStorage) -> Bind<'_> {
    let b = s.pooled();
    Bind {
        buf: &b.buf,
        id: b.id,
    }
}

impl GpuBackend {
    /// The GPU buffer behind `s`, checked to belong to this device and to hold `need` words.
    pub(crate) fn g<'a>(&self, s: &'a Storage, need: usize, what: &str) -> Result<&'a GpuStorage> {
        match s {
            Storage::Gpu(g) if std::sync::Arc::ptr_eq(&g.pool, &self.exec.pool) => {
                if g.len < need {
                    return Err(Error::Shape(format!(
                        "{what}: buffer holds {} values, the kernel needs {need}",
                        g.len
                    )));
                }
                Ok(g)
            }
            Storage::Gpu(_) => Err(Error::Device(format!(
                "{what}: the tensor lives on another GPU device than {}",
                self.exec.ctx.label
            ))),
            Storage::Cpu(_) => Err(Error::Device(format!(
                "{what}: a CPU tensor was passed to the GPU backend ({})",
                self.exec.ctx.label
            ))),
        }
    }

    /// The placeholder buffer for an unused binding `slot`.
    pub(crate) fn dummy(&self, slot: usize) -> Bind<'_> {
        let d = &self.dummies[slot];
        Bind {
            buf: &d.buf,
            id: d.id,
        }
    }

    /// `s`, or the placeholder of binding `slot` when the kernel does not use it this time.
    pub(crate) fn bind_or_dummy<'a>(&'a self, s: Option<&'a GpuStorage>, slot: usize) -> Bind<'a> {
        s.map(bind).unwrap_or_else(|| self.dummy(slot))
    }

    /// Records one dispatch (after taking any error wgpu reported since the last call).
    pub(crate) fn run<P: ShaderParams>(
        &self,
        kernel: &'static Kernel,
        params: &P,
        binds: &[Bind],
        groups: (u32, u32, u32),
    ) -> Result<()> {
        let mut st = self.exec.lock();
        self.exec.ctx.check()?;
        self.exec.dispatch(&mut st, kernel, params, binds, groups)
    }

    /// A pooled buffer of `len` words (contents undefined). On out-of-memory, submits and
    /// waits, drops the pool's idle buffers and tries once more.
    pub(crate) fn alloc(&self, len: usize) -> Result<GpuStorage> {
        let bytes = (len as u64).max(1) * 4;
        let pool = &self.exec.pool;
        let pb = match pool.acquire(bytes) {
            Ok(b) => b,
            Err(Error::OutOfMemory { .. }) => {
                let mut st = self.exec.lock();
                self.exec.submit(&mut st)?;
                // Natively, wait so buffers in flight come back to the pool; a browser
                // cannot wait, and frees what is idle now.
                #[cfg(not(target_arch = "wasm32"))]
                self.exec.wait()?;
                self.exec.clear_bind_groups(&mut st);
                pool.trim();
                drop(st);
                pool.acquire(bytes)?
            }
            Err(e) => return Err(e),
        };
        Ok(GpuStorage {
            buf: Some(pb),
            len,
            pool: pool.clone(),
        })
    }

    /// All of `src`, once queued work is done (the state lock is released while waiting).
    pub(crate) async fn read_bytes(&self, src: &Storage) -> Result<Vec<u8>> {
        let reading = {
            let s = self.g(src, 0, "download")?;
            let mut st = self.exec.lock();
            self.exec.ctx.check()?;
            self.exec
                .begin_read(&mut st, &s.pooled().buf, s.len as u64 * 4)?
        };
        self.exec.finish_read(reading).await
    }
}
