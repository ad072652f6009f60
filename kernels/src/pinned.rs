//! Page-locked host memory: the staging buffers of asynchronous uploads (`Uploader`).

use std::sync::Arc;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{result, CudaEvent};

use crate::{DevBuf, Gpu, GpuError};

/// Page-locked host memory for uploads that stay asynchronous.
pub struct Pinned {
    gpu: Arc<Gpu>,
    ptr: *mut u8,
    len: usize,
    /// Recorded after the last copy out of the buffer.
    event: CudaEvent,
}

// SAFETY: `ptr` is a private host allocation used only through `&mut self`.
unsafe impl Send for Pinned {}

impl Pinned {
    pub fn new(gpu: &Arc<Gpu>, len: usize) -> Result<Self, GpuError> {
        gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        let event =
            gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING)).map_err(GpuError::driver)?;
        // SAFETY: a fresh page-locked allocation of `len` bytes (freed in Drop); the context is
        // bound to this thread.
        let ptr = unsafe { result::malloc_host(len.max(1), 0) }.map_err(GpuError::driver)? as *mut u8;
        Ok(Pinned { gpu: gpu.clone(), ptr, len, event })
    }

    /// The host bytes, once the last copy out of them has finished.
    pub fn host_mut(&mut self) -> Result<&mut [u8], GpuError> {
        self.event.synchronize().map_err(GpuError::driver)?;
        // SAFETY: `ptr` holds `len` bytes for the life of `self`; no copy reads them any more
        // (the event above), and `&mut self` makes this the only reference.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) })
    }

    /// Copy the first `len` bytes into `dst` at `dst_off`, asynchronously on the stream.
    pub fn copy_to(&mut self, dst: &DevBuf, dst_off: usize, len: usize) -> Result<(), GpuError> {
        if len > self.len || dst_off + len > dst.len() {
            return Err(GpuError::Precondition {
                kernel: "pinned copy",
                msg: format!("{len} bytes at {dst_off} into {} (staging {})", dst.len(), self.len),
            });
        }
        let _a = self.gpu.enter();
        self.gpu.no_host_sync("a host-to-device copy")?;
        self.gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        // SAFETY: `ptr` holds at least `len` bytes, page-locked, and is not written again before
        // `event` (recorded right after the copy) completes; `dst` has room (checked above) and
        // lives on this stream.
        unsafe {
            let src = std::slice::from_raw_parts(self.ptr, len);
            result::memcpy_htod_async(dst.ptr(dst_off), src, self.gpu.stream.cu_stream())
        }
        .map_err(GpuError::driver)?;
        self.event.record(&self.gpu.stream).map_err(GpuError::driver)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = self.event.synchronize();
        let _ = self.gpu.ctx.bind_to_thread();
        // SAFETY: allocated by `malloc_host` in `new`, freed once, after its last copy finished.
        let _ = unsafe { result::free_host(self.ptr as *mut std::ffi::c_void) };
    }
}
