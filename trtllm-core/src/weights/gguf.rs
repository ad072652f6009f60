//! Weights straight from a GGUF file: tensors found by their Hugging Face names (the importer's
//! name map, `gguf::names`), so the ordinary weight map plans, validates and loads a GGUF like an
//! HF directory. A linear weight whose sources all have block types with a kernel stays in its
//! blocks: the rows' bytes are copied out of the mapped file (q/k rows un-permuted as whole
//! rows, q/k/v and gate/up concatenated as rows), so the model holds about the file's size.
//! Which kernels, [`GgufBlocks`]: the CPU's (`ops::cpu::qgemm`, a `DType::Ggml` tensor from
//! `get`; a fused weight whose parts have different types keeps one run of rows per type) or
//! the GPU's (`ops::matmul_t_ggml`, Q8_0 / Q4_K bytes of one type from `ggml_blocks`, which the
//! `Linear` packs). Everything else (norms, f16/f32 tensors, block types without a kernel,
//! mixed block types on the GPU, tensor parallelism) is dequantized to f32 and goes through the
//! spec's usual conversion. Each tensor's pages of the mapped file are released once it is
//! copied (`GgufFile::release`), so the file and the copies are not resident together.

use std::collections::HashMap;
use std::path::Path;

use super::builder::WeightSource;
use super::spec::{Combine, WeightSpec};
use crate::gguf::names::{group_qkv, map_tensor, unpermute_rope, Arch, Transform};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use crate::{DType, Device, Error, Mapping, Result, Tensor};

/// Which linear weights of a GGUF stay in their blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufBlocks {
    /// None: every tensor dequantized (tensor parallelism, `keep_quantized: Some(false)`, GPU
    /// loads in another dtype than bf16).
    Dequantize,
    /// The types `ops::cpu::qgemm` takes, as `DType::Ggml` tensors (CPU, one rank).
    CpuKernels,
    /// The types the GPU kernels take (Q8_0, Q4_K), packed by the `Linear`
    /// (`ops::matmul_t_ggml`; on the CPU its twin).
    Packed,
}

impl GgufBlocks {
    /// The mode of a load on `device` with `tp_size` ranks, weights in `dtype`:
    /// `keep_quantized` `None` is the device's default (GPU bf16: packed; CPU: its kernels),
    /// `Some(false)` dequantizes, `Some(true)` packs (on the CPU: the GPU kernels' twin).
    pub fn choose(device: Device, tp_size: usize, dtype: DType, keep_quantized: Option<bool>) -> Self {
        match (device, keep_quantized) {
            _ if tp_size != 1 => GgufBlocks::Dequantize,
            (_, Some(false)) => GgufBlocks::Dequantize,
            (Device::Cuda(_), _) if dtype == DType::BF16 => GgufBlocks::Packed,
            (Device::Cuda(_), _) => GgufBlocks::Dequantize,
            (_, Some(true)) => GgufBlocks::Packed,
            _ => GgufBlocks::CpuKernels,
        }
    }
}

/// An open GGUF file, indexed by HF tensor name.
pub struct GgufWeights {
    pub file: GgufFile,
    /// HF name -> (index into `file.tensors`, the transform back to HF values).
    by_hf: HashMap<String, (usize, Transform)>,
    /// HF names with their row-major shapes (for validation).
    shapes: HashMap<String, Vec<usize>>,
    /// Which linear weights stay in their blocks.
    blocks: GgufBlocks,
    /// The model layout's `(from, to)` part renames: a name the layers ask for that no tensor
    /// maps to is looked up with `.from.` replaced by `.to.` (Falcon's `ln_attn` / `ln_mlp`
    /// are one `input_layernorm` in its one-norm layout), as for HF directories.
    renames: &'static [(&'static str, &'static str)],
}

impl GgufWeights {
    /// Open `path` and map every tensor name (an unmapped name or a duplicate is an error
    /// naming the file and the tensor); `blocks`: which linears stay in their blocks.
    pub fn open(path: &Path, blocks: GgufBlocks) -> Result<Self> {
        let mut file = GgufFile::open(path)?;
        // The tokenizer's arrays are the importer's, not the weights': not kept through the load.
        file.retain_metadata(|k| !k.starts_with("tokenizer."));
        file.release_header();
        let arch = Arch::of_file(&file)?;
        let a = arch.gguf_name();
        let heads = file.req_usize(&format!("{a}.attention.head_count"))?;
        let kv_heads = file.opt_usize(&format!("{a}.attention.head_count_kv"))?.unwrap_or(heads);
        let mut by_hf = HashMap::new();
        let mut shapes = HashMap::new();
        for (i, t) in file.tensors.iter().enumerate() {
            let m = map_tensor(arch, &t.name, heads, kv_heads).map_err(|e| file.error(e))?;
            if !t.ty.can_dequantize() {
                return Err(file.error(format!("tensor `{}`: block type {} is not supported", t.name, t.ty)));
            }
            if let Some((j, _)) = by_hf.insert(m.hf_name.clone(), (i, m.transform)) {
                return Err(file.error(format!(
                    "tensors `{}` and `{}` both map to `{}`",
                    file.tensors[j].name, t.name, m.hf_name
                )));
            }
            shapes.insert(m.hf_name, t.shape());
        }
        Ok(GgufWeights { file, by_hf, shapes, blocks, renames: &[] })
    }

    /// Look names up with the model layout's part renames too (see the field).
    pub fn with_renames(mut self, renames: &'static [(&'static str, &'static str)]) -> Self {
        self.renames = renames;
        self
    }

    /// HF names with their shapes.
    pub fn shapes(&self) -> &HashMap<String, Vec<usize>> {
        &self.shapes
    }

    fn info(&self, hf: &str) -> Result<(&TensorInfo, Transform)> {
        let renamed = || {
            self.renames
                .iter()
                .find_map(|(from, to)| self.by_hf.get(&hf.replace(&format!(".{from}."), &format!(".{to}."))))
        };
        let &(i, tr) = self
            .by_hf
            .get(hf)
            .or_else(renamed)
            .ok_or_else(|| self.file.error(format!("no tensor maps to `{hf}`")))?;
        Ok((&self.file.tensors[i], tr))
    }

    fn tensor_err(&self, t: &TensorInfo, msg: impl std::fmt::Display) -> Error {
        self.file.error(format!("tensor `{}`: {msg}", t.name))
    }

    /// A source's values as an f32 tensor of its HF shape (dequantized, transform undone).
    fn f32_source(&self, hf: &str, want: &[usize]) -> Result<Tensor> {
        let (t, tr) = self.info(hf)?;
        let shape = t.shape();
        if shape != want {
            return Err(self.tensor_err(t, format!("shape {shape:?}, the model expects {want:?}")));
        }
        let data = self.file.tensor_data(t)?;
        let mut v = vec![0f32; t.n_elements as usize];
        crate::gguf::dequantize(t.ty, data, &mut v).map_err(|e| self.tensor_err(t, e))?;
        self.file.release(t);
        match tr {
            Transform::None => {}
            Transform::SubtractOne => v.iter_mut().for_each(|x| *x -= 1.0),
            Transform::UnpermuteRope { heads } => {
                let rows = shape[0];
                v = unpermute_rope(&v, rows, shape[1..].iter().product(), heads)
                    .map_err(|e| self.tensor_err(t, e))?;
            }
            Transform::GroupQkv { heads, kv_heads } => {
                v = group_qkv(&v, shape[0], shape[1..].iter().product(), heads, kv_heads)
                    .map_err(|e| self.tensor_err(t, e))?;
            }
        }
        Tensor::from_f32(v, &shape)
    }

    /// Which linears stay in their blocks (set after `open`, once the load's dtype is known).
    pub fn set_blocks(&mut self, blocks: GgufBlocks) {
        self.blocks = blocks;
    }

    /// The block type of each source of the spec's engine tensor, when every source is a 2-D
    /// weight of a type `kernel` takes with whole blocks per row and the spec only concatenates
    /// rows; `None`: it loads dequantized.
    pub fn source_types(
        &self,
        spec: &WeightSpec,
        kernel: fn(GgmlType) -> bool,
    ) -> Result<Option<Vec<GgmlType>>> {
        let plain = spec.quant.is_none()
            && spec.combine == Combine::Concat0
            && spec.transform == Default::default()
            && spec.shape.len() == 2;
        if !plain {
            return Ok(None);
        }
        let mut tys = Vec::with_capacity(spec.sources.len());
        for s in &spec.sources {
            let (t, tr) = self.info(&s.name)?;
            let k = *t.shape().last().unwrap_or(&0);
            let per = t.ty.block().map_or(0, |(b, _)| b);
            let ok = kernel(t.ty)
                && per > 1
                && k.is_multiple_of(per)
                && t.shape() == s.shape
                && matches!(tr, Transform::None | Transform::UnpermuteRope { .. });
            if !ok {
                return Ok(None);
            }
            tys.push(t.ty);
        }
        Ok(Some(tys))
    }

    /// The one block type of all the spec's sources (see [`GgufWeights::source_types`]); `None`
    /// also when the sources differ in type.
    pub fn block_type(&self, spec: &WeightSpec, kernel: fn(GgmlType) -> bool) -> Result<Option<GgmlType>> {
        Ok(self.source_types(spec, kernel)?.and_then(|t| match t.split_first() {
            Some((&first, rest)) if rest.iter().all(|&ty| ty == first) => Some(first),
            _ => None,
        }))
    }

    /// The rows' bytes of source `i` of the spec, of block type `ty` (q/k rows un-permuted).
    fn source_bytes(&self, spec: &WeightSpec, i: usize, ty: GgmlType) -> Result<Vec<u8>> {
        let s = &spec.sources[i];
        let (t, tr) = self.info(&s.name)?;
        let data = self.file.tensor_data(t)?;
        let (per, bb) = ty.block().ok_or_else(|| self.tensor_err(t, format!("{ty} is not a block type")))?;
        let bytes = match tr {
            Transform::UnpermuteRope { heads } => {
                let rb = s.shape[1] / per * bb;
                unpermute_rope(data, s.shape[0], rb, heads).map_err(|e| self.tensor_err(t, e))?
            }
            Transform::None => data.to_vec(),
            // source_types keeps only plain and un-permuted rows in blocks
            Transform::SubtractOne | Transform::GroupQkv { .. } => {
                return Err(self.tensor_err(t, "a norm weight or a regrouped qkv cannot stay in blocks"))
            }
        };
        self.file.release(t);
        Ok(bytes)
    }

    /// The rows' bytes of the spec's sources, all of block type `ty`, concatenated.
    fn block_bytes(&self, spec: &WeightSpec, ty: GgmlType) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        for i in 0..spec.sources.len() {
            bytes.extend_from_slice(&self.source_bytes(spec, i, ty)?);
        }
        Ok(bytes)
    }
}

impl WeightSource for GgufWeights {
    fn get(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Tensor> {
        if self.blocks == GgufBlocks::CpuKernels && mapping.tp_size == 1 {
            if let Some(tys) = self.source_types(spec, crate::ops::cpu::qgemm::supported)? {
                // One run per source (runs of one type merge): a fused weight whose parts differ
                // in block type keeps each part's blocks, and the matmul runs each its own kernel.
                let mut runs = Vec::with_capacity(tys.len());
                for (i, &ty) in tys.iter().enumerate() {
                    runs.push((ty, spec.sources[i].shape[0], self.source_bytes(spec, i, ty)?));
                }
                return Tensor::from_ggml_parts(runs, &spec.shape)
                    .map_err(|e| self.file.error(format!("`{}`: {e}", spec.name)));
            }
        }
        let sources =
            spec.sources.iter().map(|s| self.f32_source(&s.name, &s.shape)).collect::<Result<Vec<_>>>()?;
        let full = spec.to_engine(sources)?;
        spec.shard(&full, mapping.tp_rank(), mapping.tp_size)
    }

    fn ggml_blocks(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Option<(GgmlType, Vec<u8>)>> {
        if self.blocks != GgufBlocks::Packed || mapping.tp_size != 1 {
            return Ok(None);
        }
        let gpu = |ty| crate::ops::ggml_gpu_block(ty).is_some();
        match self.block_type(spec, gpu)? {
            Some(ty) => Ok(Some((ty, self.block_bytes(spec, ty)?))),
            None => Ok(None),
        }
    }
}
