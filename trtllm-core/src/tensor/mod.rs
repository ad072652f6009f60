//! `Tensor`: a shape over shared, immutable storage. Views (`narrow`, `reshape`) are cheap: they
//! share the storage and move an offset. Ops produce new tensors. A `Meta` tensor has a shape and a
//! dtype but no data: the weight planner builds whole models out of them to list every tensor
//! before any byte is read.

use std::sync::Arc;

use half::{bf16, f16};

use trtllm_kernels::DevBuf;

use crate::{DType, Error, Result};

mod ggml;
mod layout;

pub use ggml::GgmlPart;

/// Where a tensor's data lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    /// GPU ordinal.
    Cuda(usize),
    /// Shape and dtype only; no data.
    Meta,
}

#[derive(Clone)]
enum Storage {
    F32(Arc<Vec<f32>>),
    F16(Arc<Vec<f16>>),
    BF16(Arc<Vec<bf16>>),
    I32(Arc<Vec<i32>>),
    /// FP8 E4M3 codes.
    F8(Arc<Vec<u8>>),
    /// ggml blocks (`DType::Ggml`): runs of whole rows, each in one block type (one run, or
    /// several for a fused weight whose parts differ: `ggml.rs`); `offset` counts elements.
    Ggml(Arc<Vec<ggml::Run>>),
    Meta(DType),
    /// Device memory; `offset` counts elements of the dtype.
    Cuda(Arc<DevBuf>, DType),
}

#[derive(Clone)]
pub struct Tensor {
    storage: Storage,
    shape: Vec<usize>,
    offset: usize,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?}, {:?})", self.dtype(), self.shape, self.device())
    }
}

fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

fn check_len(len: usize, shape: &[usize]) -> Result<()> {
    if len != numel(shape) {
        return Err(Error::shape("tensor", format!("{len} elements cannot have shape {shape:?}")));
    }
    Ok(())
}

impl Tensor {
    pub fn from_f32(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        check_len(data.len(), shape)?;
        Ok(Tensor { storage: Storage::F32(Arc::new(data)), shape: shape.to_vec(), offset: 0 })
    }
    pub fn from_bf16(data: Vec<bf16>, shape: &[usize]) -> Result<Self> {
        check_len(data.len(), shape)?;
        Ok(Tensor { storage: Storage::BF16(Arc::new(data)), shape: shape.to_vec(), offset: 0 })
    }
    pub fn from_f16(data: Vec<f16>, shape: &[usize]) -> Result<Self> {
        check_len(data.len(), shape)?;
        Ok(Tensor { storage: Storage::F16(Arc::new(data)), shape: shape.to_vec(), offset: 0 })
    }
    pub fn from_i32(data: Vec<i32>, shape: &[usize]) -> Result<Self> {
        check_len(data.len(), shape)?;
        Ok(Tensor { storage: Storage::I32(Arc::new(data)), shape: shape.to_vec(), offset: 0 })
    }
    /// FP8 E4M3 codes (`DType::F8E4M3`).
    pub fn from_f8(data: Vec<u8>, shape: &[usize]) -> Result<Self> {
        check_len(data.len(), shape)?;
        Ok(Tensor { storage: Storage::F8(Arc::new(data)), shape: shape.to_vec(), offset: 0 })
    }
    /// A data-less tensor: shape and dtype only.
    pub fn meta(shape: &[usize], dtype: DType) -> Self {
        Tensor { storage: Storage::Meta(dtype), shape: shape.to_vec(), offset: 0 }
    }
    pub fn zeros(shape: &[usize]) -> Self {
        Tensor { storage: Storage::F32(Arc::new(vec![0.0; numel(shape)])), shape: shape.to_vec(), offset: 0 }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }
    pub fn dtype(&self) -> DType {
        match &self.storage {
            Storage::F32(_) => DType::F32,
            Storage::F16(_) => DType::F16,
            Storage::BF16(_) => DType::BF16,
            Storage::I32(_) => DType::I32,
            Storage::F8(_) => DType::F8E4M3,
            Storage::Ggml(..) => DType::Ggml,
            Storage::Meta(d) | Storage::Cuda(_, d) => *d,
        }
    }
    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::Meta(_) => Device::Meta,
            Storage::Cuda(b, _) => Device::Cuda(b.gpu().ordinal),
            _ => Device::Cpu,
        }
    }

    /// A tensor over device memory (`buf` holds at least `numel(shape)` elements of `dtype`).
    pub fn from_devbuf(buf: DevBuf, shape: &[usize], dtype: DType) -> Result<Self> {
        if buf.len() < numel(shape) * dtype.size_in_bytes() {
            return Err(Error::shape(
                "from_devbuf",
                format!("{} bytes cannot hold {shape:?} {dtype}", buf.len()),
            ));
        }
        Ok(Tensor { storage: Storage::Cuda(Arc::new(buf), dtype), shape: shape.to_vec(), offset: 0 })
    }

    /// The device buffer and this tensor's byte offset in it, for CUDA tensors.
    pub fn devbuf(&self) -> Option<(&Arc<DevBuf>, usize)> {
        match &self.storage {
            Storage::Cuda(b, d) => Some((b, self.offset * d.size_in_bytes())),
            _ => None,
        }
    }

    /// The data of a host tensor as its bytes (little-endian x86/ARM hosts), no copy; `None`
    /// for device and meta tensors.
    pub fn host_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::F32(_) => self.f32s().ok().map(bytemuck::cast_slice),
            Storage::BF16(_) => self.bf16s().ok().map(bytemuck::cast_slice),
            Storage::F16(_) => self.f16s().ok().map(bytemuck::cast_slice),
            Storage::I32(_) => self.i32s().ok().map(bytemuck::cast_slice),
            Storage::F8(_) => self.f8s().ok(),
            Storage::Ggml(..) => self.ggml().map(|(_, b)| b),
            Storage::Cuda(..) | Storage::Meta(_) => None,
        }
    }

    /// Copy to the GPU (a no-op for tensors already there; ggml blocks are dequantized first).
    pub fn to_gpu(&self, gpu: &Arc<trtllm_kernels::Gpu>) -> Result<Tensor> {
        if self.dtype() == DType::Ggml {
            return self.to_dtype(DType::F32)?.to_gpu(gpu);
        }
        let Some(bytes) = self.host_bytes() else { return Ok(self.clone()) };
        let buf = DevBuf::upload(gpu, bytes).map_err(|e| Error::Device(e.to_string()))?;
        Tensor::from_devbuf(buf, &self.shape, self.dtype())
    }

    /// Copy to host memory (a no-op for host tensors).
    pub fn to_cpu(&self) -> Result<Tensor> {
        let Some((buf, off)) = self.devbuf() else { return Ok(self.clone()) };
        let bytes = buf.download(off, self.size_in_bytes()).map_err(|e| Error::Device(e.to_string()))?;
        match self.dtype() {
            DType::F32 => Tensor::from_f32(
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                &self.shape,
            ),
            DType::BF16 => Tensor::from_bf16(
                bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]])).collect(),
                &self.shape,
            ),
            DType::F16 => Tensor::from_f16(
                bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect(),
                &self.shape,
            ),
            DType::I32 => Tensor::from_i32(
                bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                &self.shape,
            ),
            DType::F8E4M3 => Tensor::from_f8(bytes, &self.shape),
            DType::Ggml => Err(Error::DType { op: "to_cpu", dtype: DType::Ggml }),
        }
    }
    pub fn is_meta(&self) -> bool {
        self.device() == Device::Meta
    }
    pub fn size_in_bytes(&self) -> usize {
        if let Some(parts) = self.ggml_parts() {
            return parts.iter().map(|p| p.bytes.len()).sum();
        }
        self.numel() * self.dtype().size_in_bytes()
    }

    /// `[a, b]` of a rank-2 tensor, or a shape error naming `op`.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [a, b] => Ok((a, b)),
            _ => Err(Error::shape(op, format!("expected a rank-2 tensor, got {:?}", self.shape))),
        }
    }

    /// The f32 data of an f32 tensor.
    pub fn f32s(&self) -> Result<&[f32]> {
        match &self.storage {
            Storage::F32(v) => Ok(&v[self.offset..self.offset + self.numel()]),
            _ => Err(Error::DType { op: "f32s", dtype: self.dtype() }),
        }
    }
    pub fn bf16s(&self) -> Result<&[bf16]> {
        match &self.storage {
            Storage::BF16(v) => Ok(&v[self.offset..self.offset + self.numel()]),
            _ => Err(Error::DType { op: "bf16s", dtype: self.dtype() }),
        }
    }
    pub fn f16s(&self) -> Result<&[f16]> {
        match &self.storage {
            Storage::F16(v) => Ok(&v[self.offset..self.offset + self.numel()]),
            _ => Err(Error::DType { op: "f16s", dtype: self.dtype() }),
        }
    }
    pub fn i32s(&self) -> Result<&[i32]> {
        match &self.storage {
            Storage::I32(v) => Ok(&v[self.offset..self.offset + self.numel()]),
            _ => Err(Error::DType { op: "i32s", dtype: self.dtype() }),
        }
    }

    /// The codes of an FP8 E4M3 tensor.
    pub fn f8s(&self) -> Result<&[u8]> {
        match &self.storage {
            Storage::F8(v) => Ok(&v[self.offset..self.offset + self.numel()]),
            _ => Err(Error::DType { op: "f8s", dtype: self.dtype() }),
        }
    }

    /// A copy of the data as f32, whatever the dtype (FP8 codes decoded, unscaled).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(match &self.storage {
            Storage::F32(_) => self.f32s()?.to_vec(),
            Storage::F16(_) => self.f16s()?.iter().map(|x| x.to_f32()).collect(),
            Storage::BF16(_) => self.bf16s()?.iter().map(|x| x.to_f32()).collect(),
            Storage::I32(_) => self.i32s()?.iter().map(|&x| x as f32).collect(),
            Storage::F8(_) => {
                self.f8s()?.iter().map(|&c| trtllm_kernels::quant_ref::e4m3_decode(c)).collect()
            }
            Storage::Ggml(..) => self.ggml_to_f32()?,
            Storage::Meta(_) => {
                return Err(Error::DType { op: "to_f32_vec (meta tensor)", dtype: self.dtype() })
            }
            Storage::Cuda(..) => return self.to_cpu()?.to_f32_vec(),
        })
    }

    /// Convert to `dtype` (a no-op view when it already is). Floats round to nearest even.
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        if self.is_meta() {
            return Ok(Tensor::meta(&self.shape, dtype));
        }
        if let Some((buf, off)) = self.devbuf() {
            let out = crate::device::cast(buf, off, self.numel(), self.dtype(), dtype)?;
            return Tensor::from_devbuf(out, &self.shape, dtype);
        }
        let v = self.to_f32_vec()?;
        match dtype {
            DType::F32 => Tensor::from_f32(v, &self.shape),
            DType::BF16 => Tensor::from_bf16(v.iter().map(|&x| bf16::from_f32(x)).collect(), &self.shape),
            DType::F16 => Tensor::from_f16(v.iter().map(|&x| f16::from_f32(x)).collect(), &self.shape),
            DType::I32 => Tensor::from_i32(v.iter().map(|&x| x as i32).collect(), &self.shape),
            // Saturating (|x| > 448 -> 448), unscaled: quantizers divide by their scales first.
            DType::F8E4M3 => Tensor::from_f8(
                v.iter().map(|&x| trtllm_kernels::quant_ref::e4m3_encode(x)).collect(),
                &self.shape,
            ),
            DType::Ggml => Err(Error::DType { op: "to_dtype (quantize with gguf::quantize)", dtype }),
        }
    }
}
