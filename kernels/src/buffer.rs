//! `DevBuf`: a byte buffer in device memory, owned by one GPU (or a view of part of another).

use std::mem::ManuallyDrop;
use std::sync::Arc;

use cudarc::driver::{result, CudaSlice, DevicePtr};

use crate::arena::Arena;
use crate::{Gpu, GpuError};

pub struct DevBuf {
    pub(crate) gpu: Arc<Gpu>,
    /// Freed (or, for a view, forgotten) in `Drop`, through the GPU's capture gate.
    pub(crate) data: ManuallyDrop<CudaSlice<u8>>,
    owner: Owner,
}

/// Whose memory a buffer is.
enum Owner {
    /// Its own allocation, made in CUDA-graph capture `epoch` (0: none); `tracked` bytes count
    /// in the GPU's peak tracker.
    Own { epoch: u64, tracked: usize },
    /// Part of another buffer, kept alive by the view; frees nothing.
    View(#[allow(dead_code)] Arc<DevBuf>),
    /// `len` bytes at `off` of a capture arena, given back on drop.
    Arena(Arc<Arena>, usize, usize),
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // SAFETY: `data` is taken once, here, and not touched again.
        let data = unsafe { ManuallyDrop::take(&mut self.data) };
        match &self.owner {
            Owner::Own { epoch, tracked } => {
                self.gpu.untrack(*tracked);
                self.gpu.release(data, *epoch);
            }
            Owner::View(_) => {
                let _ = data.leak(); // the parent's memory: not ours to free
            }
            Owner::Arena(arena, off, len) => {
                let _ = data.leak();
                arena.give_back(*off, *len);
            }
        }
    }
}

impl DevBuf {
    fn wrap(gpu: &Arc<Gpu>, data: CudaSlice<u8>) -> Self {
        let owner = Owner::Own { epoch: gpu.alloc_epoch(), tracked: gpu.track(data.len()) };
        DevBuf { gpu: gpu.clone(), data: ManuallyDrop::new(data), owner }
    }
    /// During a capture with an arena: `bytes` carved from it (no graph allocation node).
    fn from_arena(gpu: &Arc<Gpu>, bytes: usize) -> Option<Self> {
        let arena = gpu.capture_arena()?;
        let (off, len) = arena.take(bytes)?;
        // SAFETY: `len` bytes at `off` lie inside the arena's allocation (`take` checks), which
        // the buffer keeps alive; the range is handed out once until given back in Drop, and
        // the `CudaSlice` is leaked there, never freed.
        let data = unsafe { gpu.stream.upgrade_device_ptr::<u8>(arena.ptr(off), len) };
        Some(DevBuf { gpu: gpu.clone(), data: ManuallyDrop::new(data), owner: Owner::Arena(arena, off, len) })
    }
    /// Uninitialized device memory of `bytes` bytes.
    pub fn alloc(gpu: &Arc<Gpu>, bytes: usize) -> Result<Self, GpuError> {
        let _a = gpu.enter();
        if let Some(b) = Self::from_arena(gpu, bytes.max(1)) {
            return Ok(b);
        }
        // SAFETY: the memory is uninitialized; every kernel writing a fresh output writes all of
        // it before anything reads it (tests poison outputs to check exactly that).
        let data = unsafe { gpu.stream.alloc::<u8>(bytes.max(1)) }.map_err(GpuError::driver)?;
        Ok(Self::wrap(gpu, data))
    }
    /// Zero-filled device memory.
    pub fn zeros(gpu: &Arc<Gpu>, bytes: usize) -> Result<Self, GpuError> {
        let _a = gpu.enter();
        if let Some(mut b) = Self::from_arena(gpu, bytes.max(1)) {
            gpu.stream.memset_zeros(&mut *b.data).map_err(GpuError::driver)?;
            return Ok(b);
        }
        let data = gpu.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(GpuError::driver)?;
        Ok(Self::wrap(gpu, data))
    }
    /// `len` bytes of `parent` from `offset`, as a buffer of its own that frees nothing (kernels
    /// take `(buffer, offset)` pairs; a view lets several of them share one allocation).
    pub fn view(parent: &Arc<DevBuf>, offset: usize, len: usize) -> Result<Self, GpuError> {
        if offset + len > parent.len() {
            return Err(GpuError::Precondition {
                kernel: "view",
                msg: format!("{len} bytes at {offset} of a {}-byte buffer", parent.len()),
            });
        }
        let gpu = &parent.gpu;
        // SAFETY: the range lies inside `parent`'s allocation (checked), which the view keeps
        // alive through `parent`; the view's `CudaSlice` is leaked, never freed (Drop).
        let data = unsafe { gpu.stream.upgrade_device_ptr::<u8>(parent.ptr(offset), len) };
        Ok(DevBuf { gpu: gpu.clone(), data: ManuallyDrop::new(data), owner: Owner::View(parent.clone()) })
    }
    /// A device-side copy of `len` bytes starting at `offset`.
    pub fn copy_range(&self, offset: usize, len: usize) -> Result<Self, GpuError> {
        let out = Self::alloc(&self.gpu, len)?;
        out.copy_from(0, self, offset, len)?;
        Ok(out)
    }
    /// Copy `len` bytes of `src` at `src_off` over this buffer's bytes at `off` (stream-ordered,
    /// device to device; capturable).
    pub fn copy_from(&self, off: usize, src: &DevBuf, src_off: usize, len: usize) -> Result<(), GpuError> {
        if off + len > self.len() || src_off + len > src.len() {
            return Err(GpuError::Precondition {
                kernel: "copy",
                msg: format!("{len} bytes from {src_off} of {} to {off} of {}", src.len(), self.len()),
            });
        }
        if len == 0 {
            return Ok(());
        }
        let _a = self.gpu.enter();
        self.gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        // SAFETY: both ranges lie inside live allocations of this GPU (checked above); the copy
        // is ordered on the one stream with every other use of them.
        unsafe {
            result::memcpy_dtod_async(self.ptr(off), src.ptr(src_off), len, self.gpu.stream.cu_stream())
        }
        .map_err(GpuError::driver)
    }
    pub fn upload(gpu: &Arc<Gpu>, bytes: &[u8]) -> Result<Self, GpuError> {
        let _a = gpu.enter();
        gpu.no_host_sync("a host-to-device upload")?;
        let data = gpu
            .stream
            .clone_htod(if bytes.is_empty() { &[0u8][..] } else { bytes })
            .map_err(GpuError::driver)?;
        Ok(Self::wrap(gpu, data))
    }
    /// Copy `len` bytes from `offset` back to the host (synchronizes the stream).
    pub fn download(&self, offset: usize, len: usize) -> Result<Vec<u8>, GpuError> {
        let mut out = vec![0u8; len];
        if len > 0 {
            let _a = self.gpu.enter();
            self.gpu.no_host_sync("a device-to-host download")?;
            self.gpu
                .stream
                .memcpy_dtoh(&self.data.slice(offset..offset + len), &mut out)
                .map_err(GpuError::driver)?;
        }
        Ok(out)
    }
    /// Overwrite bytes at `offset` from the host.
    pub fn write(&mut self, offset: usize, bytes: &[u8]) -> Result<(), GpuError> {
        if !bytes.is_empty() {
            let _a = self.gpu.enter();
            self.gpu.no_host_sync("a host-to-device write")?;
            let mut view = self.data.slice_mut(offset..offset + bytes.len());
            self.gpu.stream.memcpy_htod(bytes, &mut view).map_err(GpuError::driver)?;
        }
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }
    /// Device address of byte `offset` (for kernel arguments).
    pub fn ptr(&self, offset: usize) -> u64 {
        let (p, _sync) = self.data.device_ptr(&self.gpu.stream);
        p + offset as u64
    }
}
