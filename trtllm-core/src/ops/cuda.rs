//! Tensor-level glue between the ops and the CUDA launchers of `trtllm-kernels`: a tensor's GPU,
//! its kernel dtype and device pointer. The device table and buffers are `crate::device`'s.

use std::sync::Arc;

use trtllm_kernels::launch::DevPtr;
use trtllm_kernels::{Dt, Gpu};

pub(crate) use crate::device::{alloc, dev_err, gpu, upload_f32, upload_i32};
use crate::{Error, Result, Tensor};

/// The GPU of a CUDA tensor.
pub fn gpu_of(t: &Tensor) -> Option<Arc<Gpu>> {
    t.devbuf().map(|(b, _)| b.gpu().clone())
}

/// The kernels' element type of `t`.
pub(crate) fn kernel_dtype(t: &Tensor, op: &'static str) -> Result<Dt> {
    crate::device::kernel_dtype(t.dtype(), op)
}

/// Device pointer of a CUDA tensor.
pub(crate) fn ptr<'a>(t: &'a Tensor, op: &'static str) -> Result<DevPtr<'a>> {
    let (b, off) = t.devbuf().ok_or_else(|| Error::Device(format!("{op}: tensor is not on the GPU")))?;
    Ok(DevPtr::new(b, off))
}

/// Both tensors on the same device (CPU or one GPU).
pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::Device(format!("{op}: inputs on {:?} and {:?}", a.device(), b.device())));
    }
    Ok(())
}
