//! Weights that need no conversion: a rank's shard as byte ranges of the mapped checkpoint, in
//! order. An engine directory's tensors are all like this (stored by engine name, already fused,
//! cast and sharded); so are an HF checkpoint's when the spec only concatenates sources along
//! dim 0 (q/k/v, gate/up) and takes whole rows for the rank, in the dtype the engine wants. Such
//! a shard goes from the page cache straight into pinned staging memory and on to the device
//! (no intermediate `Vec`), or on the host into the tensor by one copy per range.

use trtllm_kernels::Uploader;

use super::safetensors::SafetensorsFiles;
use super::spec::{Combine, Transform, WeightSpec};
use crate::{DType, Error, Mapping, Result, Tensor};

/// A shard's bytes: the concatenation of `parts` is the tensor `shape` of `dtype`
/// (little-endian, as safetensors stores it and every host we build for runs).
pub struct RawShard<'a> {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub parts: Vec<&'a [u8]>,
}

/// `parts` gathered into one vector of `T`.
fn gather<T: bytemuck::Pod>(parts: &[&[u8]], n: usize) -> Vec<T> {
    let mut v = vec![T::zeroed(); n];
    let dst = bytemuck::cast_slice_mut::<T, u8>(&mut v);
    let mut off = 0;
    for p in parts {
        dst[off..off + p.len()].copy_from_slice(p);
        off += p.len();
    }
    v
}

impl RawShard<'_> {
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self) -> Result<usize> {
        let n: usize = self.shape.iter().product();
        if self.len() != n * self.dtype.size_in_bytes() {
            return Err(Error::tensor(
                &self.name,
                format!("{} stored bytes cannot hold {:?} {}", self.len(), self.shape, self.dtype),
            ));
        }
        Ok(n)
    }

    /// A host tensor (one copy of each range).
    pub fn to_host(&self) -> Result<Tensor> {
        let n = self.check()?;
        let p = &self.parts;
        match self.dtype {
            DType::F32 => Tensor::from_f32(gather(p, n), &self.shape),
            DType::BF16 => Tensor::from_bf16(gather(p, n), &self.shape),
            DType::F16 => Tensor::from_f16(gather(p, n), &self.shape),
            DType::I32 => Tensor::from_i32(gather(p, n), &self.shape),
            DType::F8E4M3 => Tensor::from_f8(gather(p, n), &self.shape),
            DType::Ggml => Err(Error::tensor(&self.name, "ggml blocks are not read as raw ranges")),
        }
    }

    /// A device tensor, through `up`'s pinned staging buffers.
    pub fn upload(&self, up: &Uploader) -> Result<Tensor> {
        self.check()?;
        let buf = up.upload(&self.parts).map_err(|e| Error::tensor(&self.name, format!("upload: {e}")))?;
        Tensor::from_devbuf(buf, &self.shape, self.dtype)
    }
}

/// An engine tensor stored as it is wanted: same shard shape, same dtype.
pub(crate) fn engine_raw<'a>(
    files: &'a SafetensorsFiles,
    spec: &WeightSpec,
    mapping: &Mapping,
) -> Result<Option<RawShard<'a>>> {
    let Some(info) = files.info(&spec.name) else { return Ok(None) };
    let want = spec.shard_shape(mapping.tp_size)?;
    if info.dtype != spec.dtype || info.shape != want {
        return Ok(None); // converted (or reported) by the ordinary path
    }
    let bytes = files.bytes(&spec.name)?;
    Ok(Some(RawShard { name: spec.name.clone(), shape: want, dtype: spec.dtype, parts: vec![bytes] }))
}

/// An HF spec whose shard is whole rows of its sources concatenated along dim 0, stored in the
/// engine dtype with no transform; `None` for anything else (the ordinary path converts it, or
/// reports what is wrong).
pub(crate) fn hf_raw<'a>(
    files: &'a SafetensorsFiles,
    resolve: &(dyn Fn(&str) -> String + Sync),
    spec: &WeightSpec,
    mapping: &Mapping,
) -> Result<Option<RawShard<'a>>> {
    if spec.combine != Combine::Concat0
        || spec.transform != Transform::default()
        || spec.shape.is_empty()
        || spec.quant.is_some()
    {
        return Ok(None);
    }
    let tail = &spec.shape[1..];
    let mut sources = Vec::with_capacity(spec.sources.len());
    let mut total_rows = 0;
    for src in &spec.sources {
        let stored = resolve(&src.name);
        let Some(info) = files.info(&stored) else { return Ok(None) };
        if info.dtype != spec.dtype || info.shape != src.shape || src.shape.get(1..) != Some(tail) {
            return Ok(None);
        }
        total_rows += src.shape[0];
        sources.push((src.shape[0], files.bytes(&stored)?));
    }
    if total_rows != spec.shape[0] {
        return Ok(None);
    }
    let Some(ranges) = spec.shard_rows(mapping.tp_rank(), mapping.tp_size)? else { return Ok(None) };
    let row_bytes = tail.iter().product::<usize>() * spec.dtype.size_in_bytes();
    let mut parts = vec![];
    for (start, len) in ranges {
        let end = start + len;
        let mut first = 0; // first row of the current source in the concatenation
        for &(rows, bytes) in &sources {
            let (a, b) = (start.max(first), end.min(first + rows));
            if a < b {
                parts.push(&bytes[(a - first) * row_bytes..(b - first) * row_bytes]);
            }
            first += rows;
        }
    }
    let shape = spec.shard_shape(mapping.tp_size)?;
    Ok(Some(RawShard { name: spec.name.clone(), shape, dtype: spec.dtype, parts }))
}
