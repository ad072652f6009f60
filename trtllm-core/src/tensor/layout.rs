//! `Tensor`'s layout ops on the host: views along dim 0 and reshapes (sharing storage), and the
//! copies that move data (`narrow1`, `cat0`, `t`, `map_f32`).

use super::{numel, Tensor};
use crate::{DType, Error, Result};

impl Tensor {
    /// Rows `start..start+len` along dim 0, sharing storage.
    pub fn narrow0(&self, start: usize, len: usize) -> Result<Tensor> {
        let rows = *self.shape.first().ok_or_else(|| Error::shape("narrow0", "rank-0 tensor"))?;
        if start + len > rows {
            return Err(Error::shape("narrow0", format!("rows {start}..{} out of {rows}", start + len)));
        }
        let row = numel(&self.shape[1..]);
        let mut shape = self.shape.clone();
        shape[0] = len;
        Ok(Tensor { storage: self.storage.clone(), shape, offset: self.offset + start * row })
    }

    /// Same data, new shape (same element count).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape("reshape", format!("{:?} -> {shape:?}", self.shape)));
        }
        Ok(Tensor { storage: self.storage.clone(), shape: shape.to_vec(), offset: self.offset })
    }

    /// A contiguous copy of columns `start..start+len` of a rank-2 tensor.
    pub fn narrow1(&self, start: usize, len: usize) -> Result<Tensor> {
        let (rows, cols) = self.dims2("narrow1")?;
        if start + len > cols {
            return Err(Error::shape("narrow1", format!("cols {start}..{} out of {cols}", start + len)));
        }
        if self.is_meta() {
            return Ok(Tensor::meta(&[rows, len], self.dtype()));
        }
        macro_rules! cols {
            ($s:expr, $ctor:ident) => {{
                let s = $s;
                let mut out = Vec::with_capacity(rows * len);
                for r in 0..rows {
                    out.extend_from_slice(&s[r * cols + start..r * cols + start + len]);
                }
                Tensor::$ctor(out, &[rows, len])
            }};
        }
        match self.dtype() {
            DType::F32 => cols!(self.f32s()?, from_f32),
            DType::BF16 => cols!(self.bf16s()?, from_bf16),
            DType::F16 => cols!(self.f16s()?, from_f16),
            DType::I32 => cols!(self.i32s()?, from_i32),
            DType::F8E4M3 => cols!(self.f8s()?, from_f8),
            DType::Ggml => Err(Error::DType { op: "narrow1", dtype: DType::Ggml }),
        }
    }

    /// Concatenate along dim 0 (all inputs must share dtype and trailing dims).
    pub fn cat0(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::shape("cat0", "no inputs"))?;
        let tail = &first.shape[1..];
        let mut rows = 0;
        for p in parts {
            if &p.shape[1..] != tail || p.dtype() != first.dtype() {
                return Err(Error::shape("cat0", format!("{:?} vs {:?}", p.shape, first.shape)));
            }
            rows += p.shape[0];
        }
        let mut shape = first.shape.clone();
        shape[0] = rows;
        if first.is_meta() {
            return Ok(Tensor::meta(&shape, first.dtype()));
        }
        macro_rules! cat {
            ($get:ident, $ctor:ident) => {{
                let mut out = Vec::with_capacity(numel(&shape));
                for p in parts {
                    out.extend_from_slice(p.$get()?);
                }
                Tensor::$ctor(out, &shape)
            }};
        }
        match first.dtype() {
            DType::F32 => cat!(f32s, from_f32),
            DType::BF16 => cat!(bf16s, from_bf16),
            DType::F16 => cat!(f16s, from_f16),
            DType::I32 => cat!(i32s, from_i32),
            DType::F8E4M3 => cat!(f8s, from_f8),
            DType::Ggml => Tensor::ggml_cat0(parts, &shape),
        }
    }

    /// Transpose a rank-2 tensor (a copy).
    pub fn t(&self) -> Result<Tensor> {
        let (r, c) = self.dims2("t")?;
        if self.is_meta() {
            return Ok(Tensor::meta(&[c, r], self.dtype()));
        }
        macro_rules! tr {
            ($get:ident, $ctor:ident) => {{
                let s = self.$get()?;
                let mut out = Vec::with_capacity(r * c);
                for j in 0..c {
                    out.extend((0..r).map(|i| s[i * c + j]));
                }
                Tensor::$ctor(out, &[c, r])
            }};
        }
        match self.dtype() {
            DType::F32 => tr!(f32s, from_f32),
            DType::BF16 => tr!(bf16s, from_bf16),
            DType::F16 => tr!(f16s, from_f16),
            DType::I32 => tr!(i32s, from_i32),
            DType::F8E4M3 => tr!(f8s, from_f8),
            DType::Ggml => Err(Error::DType { op: "t", dtype: DType::Ggml }),
        }
    }

    /// Elementwise map of a float tensor into a new f32 tensor.
    pub fn map_f32(&self, f: impl Fn(f32) -> f32) -> Result<Tensor> {
        let v: Vec<f32> = self.to_f32_vec()?.into_iter().map(f).collect();
        Tensor::from_f32(v, &self.shape)
    }
}
