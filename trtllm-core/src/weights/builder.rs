//! `VarBuilder`: the cursor layers use to declare and obtain their weights. A layer calls
//! `vb.pp("self_attn").get(...)`; the spec it passes goes to a `WeightSource`, which either
//! records it (the planner: a meta tensor comes back, no data is read) or loads it (from an HF
//! checkpoint through the spec's transform, or from our converted checkpoint by engine name).

use std::sync::{Arc, Mutex};

use trtllm_kernels::{Gpu, UploadStats, Uploader};

use super::raw::{engine_raw, hf_raw, RawShard};
use super::safetensors::SafetensorsFiles;
use super::spec::{Combine, Source, TpSplit, Transform, WeightSpec};
use crate::{DType, Error, Mapping, Result, Tensor};

/// Where weights come from.
pub trait WeightSource: Sync {
    /// Produce rank `mapping.tp_rank()`'s shard of the tensor `spec` describes.
    fn get(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Tensor>;

    /// The same shard as stored bytes, when it needs no conversion (see `raw.rs`); `None`
    /// sends the spec through `get`.
    fn raw(&self, _spec: &WeightSpec, _mapping: &Mapping) -> Result<Option<RawShard<'_>>> {
        Ok(None)
    }

    /// The shard as ggml blocks a GPU kernel takes (a GGUF's linears, `GgufBlocks::Packed`):
    /// the block type and the rows' bytes; `None` sends the spec through `get`.
    fn ggml_blocks(
        &self,
        _spec: &WeightSpec,
        _mapping: &Mapping,
    ) -> Result<Option<(crate::gguf::GgmlType, Vec<u8>)>> {
        Ok(None)
    }
}

/// Records every spec; returns data-less tensors of the shard shape.
#[derive(Default)]
pub struct Planner {
    specs: Mutex<Vec<WeightSpec>>,
}

impl Planner {
    pub fn into_specs(self) -> Vec<WeightSpec> {
        self.specs.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl WeightSource for Planner {
    fn get(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Tensor> {
        let shape = spec.shard_shape(mapping.tp_size)?;
        self.specs.lock().unwrap_or_else(|p| p.into_inner()).push(spec.clone());
        Ok(Tensor::meta(&shape, spec.dtype))
    }
}

/// Loads from an HF checkpoint: reads the sources, applies the transform, shards.
pub struct HfSource<'a> {
    pub files: &'a SafetensorsFiles,
    /// Rewrites an engine-side HF name to the name stored in this checkpoint (prefix aliases).
    pub resolve: &'a (dyn Fn(&str) -> String + Sync),
}

impl WeightSource for HfSource<'_> {
    fn get(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Tensor> {
        let sources = spec
            .sources
            .iter()
            .map(|s| self.files.read(&(self.resolve)(&s.name)))
            .collect::<Result<Vec<_>>>()?;
        let full = spec.to_engine(sources)?;
        spec.shard(&full, mapping.tp_rank(), mapping.tp_size)
    }

    fn raw(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Option<RawShard<'_>>> {
        hf_raw(self.files, self.resolve, spec, mapping)
    }
}

/// Loads from our converted checkpoint (`rank{N}.safetensors`): tensors are stored by engine name,
/// already fused, cast and sharded.
pub struct EngineSource<'a> {
    pub files: &'a SafetensorsFiles,
}

impl WeightSource for EngineSource<'_> {
    fn get(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Tensor> {
        let t = self.files.read(&spec.name)?;
        let want = spec.shard_shape(mapping.tp_size)?;
        if t.shape() != want.as_slice() {
            return Err(Error::tensor(
                &spec.name,
                format!("shape {:?} in checkpoint, expected {want:?}", t.shape()),
            ));
        }
        t.to_dtype(spec.dtype)
    }

    fn raw(&self, spec: &WeightSpec, mapping: &Mapping) -> Result<Option<RawShard<'_>>> {
        engine_raw(self.files, spec, mapping)
    }
}

/// The cursor: a name prefix, the source, the mapping and the dtype weights are stored in.
#[derive(Clone)]
pub struct VarBuilder<'a> {
    src: &'a dyn WeightSource,
    prefix: String,
    pub mapping: Mapping,
    pub dtype: DType,
    /// Upload every loaded tensor to this uploader's GPU.
    up: Option<Arc<Uploader>>,
    /// Threads a model may build its parts on (1: in order, as the planner needs).
    threads: usize,
    /// The checkpoint's `quantization_config`: which linears are stored quantized, and how.
    quant: Option<Arc<crate::config::QuantConfig>>,
    /// Load the quantized linears the GPU kernels take as stored (E4M3 codes + scales) instead
    /// of dequantizing them.
    keep_quantized: bool,
}

/// Staging chunk size (`TRTLLM_LOAD_CHUNK_MB`, else 16 MiB).
fn chunk_bytes() -> usize {
    crate::env::knobs().load_chunk_mb << 20
}

impl<'a> VarBuilder<'a> {
    pub fn new(src: &'a dyn WeightSource, mapping: Mapping, dtype: DType) -> Self {
        VarBuilder {
            src,
            prefix: String::new(),
            mapping,
            dtype,
            up: None,
            threads: 1,
            quant: None,
            keep_quantized: false,
        }
    }

    /// Let the model build its parts on up to `n` threads (set before `on_gpu`, which sizes
    /// the staging pool by it).
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Read the linears `quant` quantizes as quantized (`weights/quant.rs`).
    pub fn with_quant(mut self, quant: Option<crate::config::QuantConfig>) -> Self {
        self.quant = quant.map(Arc::new);
        self
    }

    /// Keep quantized linears quantized where a kernel takes them (`keep_quantized`).
    pub fn keep_quantized(mut self, on: bool) -> Self {
        self.keep_quantized = on;
        self
    }

    /// Whether quantized linears load as stored (see `keep_quantized`).
    pub fn keeps_quantized(&self) -> bool {
        self.keep_quantized
    }

    /// How the linear module `module` (a path under this prefix) is stored, if quantized.
    pub fn quant_of(&self, module: &str) -> Option<crate::config::WeightQuant> {
        let q = self.quant.as_ref()?;
        q.quantizes(&self.path(module)).then_some(q.weight)
    }

    /// Threads the model may build its parts on.
    pub fn load_threads(&self) -> usize {
        self.threads
    }

    /// Place the weights on `gpu` as they load, through pinned staging buffers (two per
    /// loading thread, plus two).
    pub fn on_gpu(mut self, gpu: Arc<Gpu>) -> Self {
        self.up = Some(Arc::new(Uploader::new(&gpu, chunk_bytes(), 2 * self.threads + 2)));
        self
    }

    /// Wait for every upload enqueued so far to finish; what they did (`None` on the host).
    pub fn finish_uploads(&self) -> Result<Option<UploadStats>> {
        match &self.up {
            Some(up) => up.finish().map(Some).map_err(|e| Error::Device(format!("uploading weights: {e}"))),
            None => Ok(None),
        }
    }

    /// Descend into a sub-module: `vb.pp("self_attn")`.
    pub fn pp(&self, name: impl std::fmt::Display) -> Self {
        let prefix =
            if self.prefix.is_empty() { name.to_string() } else { format!("{}.{name}", self.prefix) };
        VarBuilder { prefix, ..self.clone() }
    }

    /// The full name of `leaf` under this prefix.
    pub fn path(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    pub fn tp_size(&self) -> usize {
        self.mapping.tp_size
    }

    /// A tensor stored under its own name with shape `shape`.
    pub fn get(&self, leaf: &str, shape: &[usize], split: TpSplit) -> Result<Tensor> {
        self.get_spec(self.spec(leaf, &[leaf], shape, split))
    }

    /// Same as `get`, but always stored in f32 (norm weights, biases of norms).
    pub fn get_f32(&self, leaf: &str, shape: &[usize], transform: Transform) -> Result<Tensor> {
        let mut spec = self.spec(leaf, &[leaf], shape, TpSplit::Replicate);
        spec.dtype = DType::F32;
        spec.transform = transform;
        self.get_spec(spec)
    }

    /// A spec for engine tensor `leaf` built from sources `hf_leaves` (relative to this prefix),
    /// each of shape `[rows_i, shape[1..]]` concatenated along dim 0 when there are several.
    pub fn spec(&self, leaf: &str, hf_leaves: &[&str], shape: &[usize], split: TpSplit) -> WeightSpec {
        let sources = if hf_leaves.len() == 1 {
            vec![Source { name: self.path(hf_leaves[0]), shape: shape.to_vec() }]
        } else {
            let rows: Vec<usize> = match &split {
                TpSplit::Column(parts) if parts.len() == hf_leaves.len() => parts.clone(),
                TpSplit::Heads(groups) if groups.len() == hf_leaves.len() => {
                    groups.iter().map(|(h, d)| h * d).collect()
                }
                _ => vec![shape[0] / hf_leaves.len(); hf_leaves.len()],
            };
            hf_leaves
                .iter()
                .zip(rows)
                .map(|(l, r)| {
                    let mut s = shape.to_vec();
                    s[0] = r;
                    Source { name: self.path(l), shape: s }
                })
                .collect()
        };
        WeightSpec {
            name: self.path(leaf),
            sources,
            combine: Combine::Concat0,
            transform: Transform::default(),
            shape: shape.to_vec(),
            split,
            dtype: self.dtype,
            quant: None,
        }
    }

    /// Stored tensor `leaf` (under this prefix) as it is in the checkpoint, cast to `dtype`, on
    /// the host: the parts of a quantized layer the layer repacks itself.
    pub fn read_host(&self, leaf: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let mut spec = self.spec(leaf, &[leaf], shape, TpSplit::Replicate);
        spec.dtype = dtype;
        VarBuilder { up: None, ..self.clone() }.get_spec(spec)
    }

    /// `spec` loaded like `get_spec` but kept on the host (a tensor derived at build, then `place`d).
    pub fn get_host(&self, spec: WeightSpec) -> Result<Tensor> {
        VarBuilder { up: None, ..self.clone() }.get_spec(spec)
    }

    /// A tensor the layer built on the host, placed where this builder loads (the GPU's
    /// staging uploads, or left on the host).
    pub fn place(&self, name: &str, t: Tensor) -> Result<Tensor> {
        match (&self.up, t.host_bytes()) {
            (Some(up), Some(bytes)) => {
                let buf = up.upload(&[bytes]).map_err(|e| Error::tensor(name, format!("upload: {e}")))?;
                Tensor::from_devbuf(buf, t.shape(), t.dtype())
            }
            _ => Ok(t),
        }
    }

    /// A linear weight `[n, k]` kept in the ggml blocks of its source, packed for
    /// `ops::matmul_t_ggml` and placed like any weight; `None` when the source keeps no blocks
    /// for it (load it with `get_spec`).
    pub fn get_ggml(&self, spec: &WeightSpec) -> Result<Option<(Tensor, crate::ops::GgmlLayout)>> {
        let Some((ty, bytes)) = self.src.ggml_blocks(spec, &self.mapping)? else { return Ok(None) };
        let block = crate::ops::ggml_gpu_block(ty)
            .ok_or_else(|| Error::tensor(&spec.name, format!("block type {ty} has no GPU kernel")))?;
        let [n, k] = spec.shape[..] else {
            return Err(Error::tensor(
                &spec.name,
                format!("ggml blocks of shape {:?} (want 2-D)", spec.shape),
            ));
        };
        let (t, layout) = crate::ops::GgmlLayout::pack(&spec.name, block, &bytes, n, k)?;
        drop(bytes);
        Ok(Some((self.place(&spec.name, t)?, layout)))
    }

    pub fn get_spec(&self, spec: WeightSpec) -> Result<Tensor> {
        // Stored as wanted: straight from the mapped file (no intermediate tensor).
        if let Some(raw) = self.src.raw(&spec, &self.mapping)? {
            return match &self.up {
                Some(up) => raw.upload(up),
                None => raw.to_host(),
            };
        }
        let t = self.src.get(&spec, &self.mapping)?;
        self.place(&spec.name, t)
    }
}
