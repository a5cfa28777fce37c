//! `Tensor`: a shape, a dtype, a buffer on some device, and (when it needs one) the autograd
//! node that made it. Cheap to clone (an `Arc`); views such as `reshape` share the buffer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::autograd::Node;
use crate::backend::{Device, Storage};
use crate::{Error, Result};

/// What the 32-bit words of a tensor's buffer mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    /// Labels and pooling indices.
    U32,
}

#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) storage: Arc<Storage>,
    pub(crate) device: Device,
    pub(crate) requires_grad: bool,
    /// Accumulated gradient of a leaf (parameters).
    pub(crate) grad: Mutex<Option<Tensor>>,
    /// How this tensor was computed; `None` for leaves and for results computed without grad.
    pub(crate) node: Option<Node>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    pub(crate) fn from_parts(
        storage: Arc<Storage>,
        shape: Vec<usize>,
        dtype: DType,
        device: Device,
        node: Option<Node>,
    ) -> Tensor {
        Tensor(Arc::new(Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            requires_grad: node.is_some(),
            shape,
            dtype,
            storage,
            device,
            grad: Mutex::new(None),
            node,
        }))
    }

    /// A new f32 tensor holding `data` with `shape`.
    pub fn from_f32(data: &[f32], shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let storage = device
            .backend()
            .upload_f32(data)
            .map_err(|e| naming_tensor(e, shape, DType::F32))?;
        Ok(Tensor::from_parts(
            Arc::new(storage),
            shape.to_vec(),
            DType::F32,
            device.clone(),
            None,
        ))
    }

    /// A new u32 tensor (labels).
    pub fn from_u32(data: &[u32], shape: &[usize], device: &Device) -> Result<Tensor> {
        check_len(data.len(), shape)?;
        let storage = device
            .backend()
            .upload_u32(data)
            .map_err(|e| naming_tensor(e, shape, DType::U32))?;
        Ok(Tensor::from_parts(
            Arc::new(storage),
            shape.to_vec(),
            DType::U32,
            device.clone(),
            None,
        ))
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        let storage = device
            .backend()
            .zeros(numel(shape))
            .map_err(|e| naming_tensor(e, shape, DType::F32))?;
        Ok(Tensor::from_parts(
            Arc::new(storage),
            shape.to_vec(),
            DType::F32,
            device.clone(),
            None,
        ))
    }

    /// An op's output buffer, with no grad: its contents are unspecified until the op's
    /// kernel overwrites all of it ([`Backend::output`](crate::backend::Backend::output)).
    pub(crate) fn empty_like_shape(
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let storage = device
            .backend()
            .output(numel(shape))
            .map_err(|e| naming_tensor(e, shape, dtype))?;
        Ok(Tensor::from_parts(
            Arc::new(storage),
            shape.to_vec(),
            dtype,
            device.clone(),
            None,
        ))
    }

    /// Marks a leaf as a trainable parameter: `backward()` will accumulate into its `grad()`.
    pub fn into_param(self) -> Tensor {
        let inner = &self.0;
        Tensor(Arc::new(Inner {
            id: inner.id,
            shape: inner.shape.clone(),
            dtype: inner.dtype,
            storage: inner.storage.clone(),
            device: inner.device.clone(),
            requires_grad: true,
            grad: Mutex::new(None),
            node: None,
        }))
    }

    pub fn id(&self) -> u64 {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }
    pub fn device(&self) -> &Device {
        &self.0.device
    }
    /// The device buffer: for ops and the backend only, so no caller bypasses the ops' checks.
    pub(crate) fn storage(&self) -> &Storage {
        &self.0.storage
    }
    pub(crate) fn storage_arc(&self) -> &Arc<Storage> {
        &self.0.storage
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    pub(crate) fn node(&self) -> Option<&Node> {
        self.0.node.as_ref()
    }

    /// The accumulated gradient of a parameter, if `backward()` reached it.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    pub(crate) fn set_grad(&self, g: Option<Tensor>) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = g;
    }
    /// Forgets the accumulated gradient.
    pub fn zero_grad(&self) {
        self.set_grad(None);
    }

    /// The values on the host, once the device has done the work queued before: the one
    /// read-back path ([`Backend::read_f32`](crate::backend::Backend::read_f32)).
    pub async fn read(&self) -> Result<Vec<f32>> {
        if self.dtype() != DType::F32 {
            return Err(Error::InvalidArgument(
                "read on a u32 tensor: use read_u32".into(),
            ));
        }
        let mut v = self.device().backend().read_f32(self.storage()).await?;
        v.truncate(self.numel());
        Ok(v)
    }
    /// [`Tensor::read`] for a u32 tensor.
    pub async fn read_u32(&self) -> Result<Vec<u32>> {
        if self.dtype() != DType::U32 {
            return Err(Error::InvalidArgument(
                "read_u32 on an f32 tensor: use read".into(),
            ));
        }
        let mut v = self.device().backend().read_u32(self.storage()).await?;
        v.truncate(self.numel());
        Ok(v)
    }

    /// [`Tensor::read`] waited for on this thread (not in a browser, which cannot block).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.read())
    }
    /// [`Tensor::read_u32`] waited for on this thread.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_vec_u32(&self) -> Result<Vec<u32>> {
        pollster::block_on(self.read_u32())
    }
    /// The value of a one-element tensor.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::Shape(format!(
                "item() on a tensor of shape {:?}",
                self.shape()
            )));
        }
        Ok(self.to_vec()?[0])
    }

    /// Overwrites the values in place (same number of elements), e.g. loading a checkpoint.
    pub fn assign(&self, data: &[f32]) -> Result<()> {
        check_len(data.len(), self.shape())?;
        let be = self.device().backend();
        let src = be.upload_f32(data)?;
        be.copy(&src, self.storage())
    }

    /// A tensor with the same values and no autograd history.
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(
            self.0.storage.clone(),
            self.shape().to_vec(),
            self.dtype(),
            self.device().clone(),
            None,
        )
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor(#{}, {:?}, {:?}, grad={}, on {})",
            self.id(),
            self.shape(),
            self.dtype(),
            self.requires_grad(),
            self.device().name()
        )
    }
}

/// A device's refusal to allocate (a limit, out of memory), saying which tensor asked: the
/// shape tells a reader which activation or parameter it is and whether the batch size is its
/// first dimension. Other errors pass through unchanged.
fn naming_tensor(e: Error, shape: &[usize], dtype: DType) -> Error {
    e.allocating(&format!(
        "a tensor of shape {shape:?} ({})",
        match dtype {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    ))
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    if numel(shape) != len {
        return Err(Error::Shape(format!(
            "{len} values do not fill shape {shape:?} ({} elements)",
            numel(shape)
        )));
    }
    Ok(())
}
