//! `DevBuf`: a byte buffer in device memory, owned by one GPU.

use std::sync::Arc;

use cudarc::driver::{CudaSlice, DevicePtr};

use crate::{Gpu, GpuError};

pub struct DevBuf {
    pub(crate) gpu: Arc<Gpu>,
    pub(crate) data: CudaSlice<u8>,
}

impl DevBuf {
    /// Uninitialized device memory of `bytes` bytes.
    pub fn alloc(gpu: &Arc<Gpu>, bytes: usize) -> Result<Self, GpuError> {
        // SAFETY: the memory is uninitialized; every kernel writing a fresh output writes all of
        // it before anything reads it (tests poison outputs to check exactly that).
        let data = unsafe { gpu.stream.alloc::<u8>(bytes.max(1)) }.map_err(GpuError::driver)?;
        Ok(DevBuf { gpu: gpu.clone(), data })
    }
    /// Zero-filled device memory.
    pub fn zeros(gpu: &Arc<Gpu>, bytes: usize) -> Result<Self, GpuError> {
        let data = gpu.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(GpuError::driver)?;
        Ok(DevBuf { gpu: gpu.clone(), data })
    }
    /// A device-side copy of `len` bytes starting at `offset`.
    pub fn copy_range(&self, offset: usize, len: usize) -> Result<Self, GpuError> {
        let mut out = Self::alloc(&self.gpu, len)?;
        if len > 0 {
            let src = self.data.slice(offset..offset + len);
            let mut dst = out.data.slice_mut(0..len);
            self.gpu.stream.memcpy_dtod(&src, &mut dst).map_err(GpuError::driver)?;
        }
        Ok(out)
    }
    pub fn upload(gpu: &Arc<Gpu>, bytes: &[u8]) -> Result<Self, GpuError> {
        let data = gpu
            .stream
            .clone_htod(if bytes.is_empty() { &[0u8][..] } else { bytes })
            .map_err(GpuError::driver)?;
        Ok(DevBuf { gpu: gpu.clone(), data })
    }
    /// Copy `len` bytes from `offset` back to the host (synchronizes the stream).
    pub fn download(&self, offset: usize, len: usize) -> Result<Vec<u8>, GpuError> {
        let mut out = vec![0u8; len];
        if len > 0 {
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
    pub(crate) fn slice(&self) -> &CudaSlice<u8> {
        &self.data
    }
    pub(crate) fn slice_mut(&mut self) -> &mut CudaSlice<u8> {
        &mut self.data
    }
}
