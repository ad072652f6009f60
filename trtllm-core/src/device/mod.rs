//! The process's GPUs: the device table (each ordinal opened once), device buffers for fresh
//! outputs and uploads, the device-side dtype cast, and load-phase timing ([`timing`]). Nothing
//! here knows about tensors; `ops::cuda` adds the tensor-level glue on top.

pub mod timing;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use trtllm_kernels::launch::DevPtr;
use trtllm_kernels::{DevBuf, Dt, Gpu};

use crate::{DType, Error, Result};

static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();

/// Host memory the kernel reports as available for new allocations (`MemAvailable` of
/// `/proc/meminfo`), in bytes; `None` where that is not known.
pub fn host_memory_available() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// Give the C heap's free pages back to the kernel (glibc's `malloc_trim(0)`, which also
/// releases whole free pages inside the heap, not only at its top). A load leaves its
/// transients (file parsing, the tokenizer's JSON, per-tensor copies) freed but resident in
/// the heap, between the weights that stay; called once a model is loaded. A no-op elsewhere.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only returns free pages of its own arenas to the kernel
        // (madvise / sbrk); no live allocation is touched.
        unsafe { malloc_trim(0) };
    }
}

/// The GPU with this ordinal, opened once per process.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    let mut map = GPUS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(g) = map.get(&ordinal) {
        return Ok(g.clone());
    }
    let p = timing::phase(format!("cuda init cuda:{ordinal}"));
    let g = Gpu::new(ordinal).map_err(dev_err)?;
    p.done_with(&format!("{} (context, stream, cuBLAS + cuBLASLt handles)", g.name));
    map.insert(ordinal, g.clone());
    Ok(g)
}

/// Every GPU this process has opened.
pub fn open_gpus() -> Vec<Arc<Gpu>> {
    let map = GPUS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    map.values().cloned().collect()
}

pub(crate) fn dev_err(e: trtllm_kernels::GpuError) -> Error {
    Error::Device(e.to_string())
}

/// The kernels' element type for `dtype` (`op` names the caller in the error).
pub(crate) fn kernel_dtype(dtype: DType, op: &'static str) -> Result<Dt> {
    match dtype {
        DType::F32 => Ok(Dt::F32),
        DType::BF16 => Ok(Dt::BF16),
        d => Err(Error::DType { op, dtype: d }),
    }
}

/// A fresh device buffer for `shape` x `dtype` (uninitialized, or NaN when the `poison` knob is
/// on: [`crate::env::Knobs::poison`]).
pub(crate) fn alloc(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType) -> Result<DevBuf> {
    let bytes = shape.iter().product::<usize>() * dtype.size_in_bytes();
    let buf = DevBuf::alloc(gpu, bytes).map_err(dev_err)?;
    if crate::env::knobs().poison && bytes >= 4 {
        trtllm_kernels::launch::fill_f32(gpu, DevPtr::new(&buf, 0), bytes / 4, f32::NAN).map_err(dev_err)?;
    }
    Ok(buf)
}

/// Upload host int32 values (ids, positions, slots).
pub fn upload_i32(gpu: &Arc<Gpu>, v: &[i32]) -> Result<DevBuf> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    DevBuf::upload(gpu, &bytes).map_err(dev_err)
}

pub(crate) fn upload_f32(gpu: &Arc<Gpu>, v: &[f32]) -> Result<DevBuf> {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    DevBuf::upload(gpu, &bytes).map_err(dev_err)
}

/// `n` elements at `src` (byte offset `off` of `buf`) cast from `from` to `to` into a fresh buffer.
pub(crate) fn cast(buf: &DevBuf, off: usize, n: usize, from: DType, to: DType) -> Result<DevBuf> {
    let gpu = buf.gpu().clone();
    let (f, t) = (kernel_dtype(from, "cast")?, kernel_dtype(to, "cast")?);
    let out = alloc(&gpu, &[n], to)?;
    trtllm_kernels::launch::cast(&gpu, f, t, DevPtr::new(buf, off), DevPtr::new(&out, 0), n)
        .map_err(dev_err)?;
    Ok(out)
}
