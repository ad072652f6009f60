//! Weights straight from a GGUF file: tensors found by their Hugging Face names (the importer's
//! name map, `gguf::names`), so the ordinary weight map plans, validates and loads a GGUF like an
//! HF directory. A linear weight whose sources all have one block type with a CPU kernel
//! (`ops::cpu::qgemm`) stays in its blocks: the rows' bytes are copied out of the mapped file
//! (q/k rows un-permuted as whole rows, q/k/v and gate/up concatenated as rows), so the model
//! holds about the file's size. Everything else (norms, f16/f32 tensors, mixed block types in a
//! fused weight, tensor parallelism, GPU loads) is dequantized to f32 and goes through the
//! spec's usual conversion. Each tensor's pages of the mapped file are released once it is
//! copied (`GgufFile::release`), so the file and the copies are not resident together.

use std::collections::HashMap;
use std::path::Path;

use super::builder::WeightSource;
use super::spec::{Combine, WeightSpec};
use crate::gguf::names::{group_qkv, map_tensor, unpermute_rope, Arch, Transform};
use crate::gguf::{GgmlType, GgufFile, TensorInfo};
use crate::{Error, Mapping, Result, Tensor};

/// An open GGUF file, indexed by HF tensor name.
pub struct GgufWeights {
    pub file: GgufFile,
    /// HF name -> (index into `file.tensors`, the transform back to HF values).
    by_hf: HashMap<String, (usize, Transform)>,
    /// HF names with their row-major shapes (for validation).
    shapes: HashMap<String, Vec<usize>>,
    /// Keep block-quantized linear weights in their blocks (CPU, one rank).
    keep_blocks: bool,
    /// The model layout's `(from, to)` part renames: a name the layers ask for that no tensor
    /// maps to is looked up with `.from.` replaced by `.to.` (Falcon's `ln_attn` / `ln_mlp`
    /// are one `input_layernorm` in its one-norm layout), as for HF directories.
    renames: &'static [(&'static str, &'static str)],
}

impl GgufWeights {
    /// Open `path` and map every tensor name (an unmapped name or a duplicate is an error
    /// naming the file and the tensor).
    pub fn open(path: &Path, keep_blocks: bool) -> Result<Self> {
        let file = GgufFile::open(path)?;
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
        Ok(GgufWeights { file, by_hf, shapes, keep_blocks, renames: &[] })
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

    /// The spec's engine tensor in ggml blocks, when every source is a 2-D weight of one block
    /// type with a CPU kernel and the spec only concatenates rows.
    fn blocks(&self, spec: &WeightSpec) -> Result<Option<Tensor>> {
        use crate::ops::cpu::qgemm;
        let plain = spec.quant.is_none()
            && spec.combine == Combine::Concat0
            && spec.transform == Default::default()
            && spec.shape.len() == 2;
        if !plain {
            return Ok(None);
        }
        let mut ty: Option<GgmlType> = None;
        for s in &spec.sources {
            let (t, _) = self.info(&s.name)?;
            let k = *t.shape().last().unwrap_or(&0);
            let ok = qgemm::supported(t.ty)
                && k.is_multiple_of(qgemm::block_len(t.ty))
                && t.shape() == s.shape
                && ty.is_none_or(|ty| ty == t.ty);
            if !ok {
                return Ok(None);
            }
            ty = Some(t.ty);
        }
        let Some(ty) = ty else { return Ok(None) };
        let mut bytes = Vec::new();
        for s in &spec.sources {
            let (t, tr) = self.info(&s.name)?;
            let data = self.file.tensor_data(t)?;
            match tr {
                Transform::UnpermuteRope { heads } => {
                    let rb = qgemm::row_bytes(ty, s.shape[1]);
                    let rows =
                        unpermute_rope(data, s.shape[0], rb, heads).map_err(|e| self.tensor_err(t, e))?;
                    bytes.extend_from_slice(&rows);
                }
                Transform::None => bytes.extend_from_slice(data),
                // Values change (norms) or the spec regroups HF's qkv order itself.
                Transform::SubtractOne | Transform::GroupQkv { .. } => return Ok(None),
            }
            self.file.release(t);
        }
        Tensor::from_ggml(ty, bytes, &spec.shape).map(Some)
    }
}

impl WeightSource for GgufWeights {
    fn get(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Tensor> {
        if self.keep_blocks && mapping.tp_size == 1 {
            if let Some(t) = self.blocks(spec)? {
                return Ok(t);
            }
        }
        let sources =
            spec.sources.iter().map(|s| self.f32_source(&s.name, &s.shape)).collect::<Result<Vec<_>>>()?;
        let full = spec.to_engine(sources)?;
        spec.shard(&full, mapping.tp_rank(), mapping.tp_size)
    }
}
