//! Glue between tensors and the CUDA launchers of `trtllm-kernels`: the process-wide device
//! table, dtype mapping, output allocation. Each op file calls these from its CUDA section.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use trtllm_kernels::launch::P;
use trtllm_kernels::{DevBuf, Dt, Gpu};

use crate::{DType, Error, Result, Tensor};

static GPUS: OnceLock<Mutex<HashMap<usize, Arc<Gpu>>>> = OnceLock::new();

/// The GPU with this ordinal, opened once per process.
pub fn gpu(ordinal: usize) -> Result<Arc<Gpu>> {
    let mut map = GPUS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(g) = map.get(&ordinal) {
        return Ok(g.clone());
    }
    let p = crate::runtime::load_timing::phase(format!("cuda init cuda:{ordinal}"));
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

/// The GPU of a CUDA tensor.
pub fn gpu_of(t: &Tensor) -> Option<Arc<Gpu>> {
    t.devbuf().map(|(b, _)| b.gpu().clone())
}

pub(crate) fn dt(t: &Tensor, op: &'static str) -> Result<Dt> {
    match t.dtype() {
        DType::F32 => Ok(Dt::F32),
        DType::BF16 => Ok(Dt::BF16),
        d => Err(Error::DType { op, dtype: d }),
    }
}

/// Device pointer of a CUDA tensor.
pub(crate) fn p<'a>(t: &'a Tensor, op: &'static str) -> Result<P<'a>> {
    let (b, off) = t.devbuf().ok_or_else(|| Error::Device(format!("{op}: tensor is not on the GPU")))?;
    Ok(P::new(b, off))
}

/// With `TRTLLM_POISON=1`, fresh outputs are filled with NaN so an element a kernel fails to
/// write shows up in tests.
fn poison() -> bool {
    static P: OnceLock<bool> = OnceLock::new();
    *P.get_or_init(|| std::env::var("TRTLLM_POISON").is_ok_and(|v| v == "1"))
}

/// A fresh device buffer for `shape` x `dtype` (uninitialized, or NaN under `TRTLLM_POISON=1`).
pub(crate) fn alloc(gpu: &Arc<Gpu>, shape: &[usize], dtype: DType) -> Result<DevBuf> {
    let bytes = shape.iter().product::<usize>() * dtype.size_in_bytes();
    let buf = DevBuf::alloc(gpu, bytes).map_err(dev_err)?;
    if poison() && bytes >= 4 {
        trtllm_kernels::launch::fill_f32(gpu, trtllm_kernels::launch::P::new(&buf, 0), bytes / 4, f32::NAN)
            .map_err(dev_err)?;
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

/// Both tensors on the same device (CPU or one GPU).
pub(crate) fn same_device(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::Device(format!("{op}: inputs on {:?} and {:?}", a.device(), b.device())));
    }
    Ok(())
}
