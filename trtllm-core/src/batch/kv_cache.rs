//! The paged KV cache: per layer, `num_blocks * block_size` slots of `[kv_heads, head_dim]`
//! keys and values (or, for multi-head latent attention, one latent row per slot and no values),
//! handed out in fixed-size blocks by a ref-counted allocator. Keys and values are kept in the
//! activation dtype (f32 on the host), or as FP8 E4M3 with per-layer scales
//! ([`KvCacheDtype::Fp8`]): on the GPU one byte per element; on the host, as the oracle, f32
//! values rounded through E4M3 on write (the same numbers the GPU cache holds).

use std::sync::Arc;

pub use trtllm_kernels::launch::Fp8Kv;
use trtllm_kernels::{DevBuf, Gpu};

use crate::{DType, Error, Result};

/// How the cache stores K and V (`--kv-cache-dtype`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCacheDtype {
    /// The activation dtype (the model's, f32 on the host).
    #[default]
    Auto,
    /// FP8 E4M3, a key stored as e4m3(k / k_scale), a value as e4m3(v / v_scale), per layer.
    Fp8,
}

impl std::str::FromStr for KvCacheDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(KvCacheDtype::Auto),
            "fp8" | "fp8_e4m3" => Ok(KvCacheDtype::Fp8),
            _ => Err(Error::Request(format!("--kv-cache-dtype {s:?}: expected auto, fp8 or fp8_e4m3"))),
        }
    }
}

/// Scale 1 for keys and values: vLLM's default for an FP8 cache without calibrated scales.
const UNIT_SCALES: Fp8Kv = Fp8Kv { k_scale: 1.0, v_scale: 1.0 };

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub num_layers: usize,
    /// KV heads held by this rank.
    pub kv_heads: usize,
    pub head_dim: usize,
    /// A value plane next to the keys; false for MLA, whose one latent row per token serves as
    /// both (the value buffer of each layer is then empty).
    pub values: bool,
}

impl KvLayout {
    /// Cache planes per layer: keys and values, or the latent rows alone.
    pub fn planes(&self) -> usize {
        1 + self.values as usize
    }

    /// Bytes one token takes in the cache of every layer, at `elem` bytes per element.
    pub fn bytes_per_token(&self, elem: usize) -> usize {
        self.planes() * self.num_layers * self.kv_heads * self.head_dim * elem
    }
}

/// One layer's keys and values: host f32, or device memory in the model's dtype `dtype` (one
/// byte per element where `fp8` is set). `fp8`: an FP8 cache's scales.
pub enum KvLayer {
    Cpu { k: Vec<f32>, v: Vec<f32>, fp8: Option<Fp8Kv> },
    Cuda { k: DevBuf, v: DevBuf, dtype: DType, fp8: Option<Fp8Kv> },
}

impl KvLayer {
    pub fn fp8(&self) -> Option<Fp8Kv> {
        match self {
            KvLayer::Cpu { fp8, .. } | KvLayer::Cuda { fp8, .. } => *fp8,
        }
    }
}

pub struct KvCache {
    pub layout: KvLayout,
    pub block_size: usize,
    pub num_blocks: usize,
    layers: Vec<KvLayer>,
}

impl KvCache {
    pub fn new(layout: KvLayout, block_size: usize, num_blocks: usize) -> Result<Self> {
        Self::new_stage(layout, block_size, num_blocks, 0..layout.num_layers, KvCacheDtype::Auto)
    }

    /// A host cache holding only `layers` (a pipeline stage's); the others are empty.
    pub fn new_stage(
        layout: KvLayout,
        block_size: usize,
        num_blocks: usize,
        layers: std::ops::Range<usize>,
        kv_dtype: KvCacheDtype,
    ) -> Result<Self> {
        if block_size == 0 || num_blocks == 0 {
            return Err(Error::KvCache("block_size and num_blocks must be positive".into()));
        }
        check_fp8_layout(layout, kv_dtype)?;
        let fp8 = (kv_dtype == KvCacheDtype::Fp8).then_some(UNIT_SCALES);
        let n = num_blocks * block_size * layout.kv_heads * layout.head_dim;
        let nv = if layout.values { n } else { 0 };
        let layers = (0..layout.num_layers)
            .map(|l| match layers.contains(&l) {
                true => KvLayer::Cpu { k: vec![0.0; n], v: vec![0.0; nv], fp8 },
                false => KvLayer::Cpu { k: vec![], v: vec![], fp8 },
            })
            .collect();
        Ok(KvCache { layout, block_size, num_blocks, layers })
    }

    /// A cache in GPU memory, in `dtype` (f32 or bf16), or FP8 for a bf16 model.
    pub fn new_cuda(
        gpu: &Arc<Gpu>,
        dtype: DType,
        layout: KvLayout,
        block_size: usize,
        num_blocks: usize,
        kv_dtype: KvCacheDtype,
    ) -> Result<Self> {
        Self::new_cuda_stage(gpu, dtype, layout, block_size, num_blocks, 0..layout.num_layers, kv_dtype)
    }

    /// A GPU cache holding only `layers` (a pipeline stage's); the others are empty host layers.
    pub fn new_cuda_stage(
        gpu: &Arc<Gpu>,
        dtype: DType,
        layout: KvLayout,
        block_size: usize,
        num_blocks: usize,
        layers: std::ops::Range<usize>,
        kv_dtype: KvCacheDtype,
    ) -> Result<Self> {
        if block_size == 0 || num_blocks == 0 || layers.is_empty() {
            return Err(Error::KvCache("block_size, num_blocks and the layers must be non-empty".into()));
        }
        check_fp8_layout(layout, kv_dtype)?;
        if kv_dtype == KvCacheDtype::Fp8 && dtype != DType::BF16 {
            return Err(Error::KvCache(format!(
                "--kv-cache-dtype fp8 on the GPU needs a bf16 model (--dtype bf16), not {dtype}"
            )));
        }
        let fp8 = (kv_dtype == KvCacheDtype::Fp8).then_some(UNIT_SCALES);
        let bytes =
            num_blocks * block_size * layout.kv_heads * layout.head_dim * kv_elem_bytes(dtype, kv_dtype);
        let mut out = Vec::with_capacity(layout.num_layers);
        for l in 0..layout.num_layers {
            if !layers.contains(&l) {
                out.push(KvLayer::Cpu { k: vec![], v: vec![], fp8 });
                continue;
            }
            let alloc = |bytes: usize| {
                DevBuf::alloc(gpu, bytes)
                    .map_err(|e| Error::KvCache(format!("allocating {bytes} bytes: {e}")))
            };
            let v_bytes = if layout.values { bytes } else { 0 };
            out.push(KvLayer::Cuda { k: alloc(bytes)?, v: alloc(v_bytes)?, dtype, fp8 });
        }
        Ok(KvCache { layout, block_size, num_blocks, layers: out })
    }

    pub fn is_cuda(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, KvLayer::Cuda { .. }))
    }

    /// How K and V are stored.
    pub fn kv_dtype(&self) -> KvCacheDtype {
        match self.layers.iter().any(|l| l.fp8().is_some()) {
            true => KvCacheDtype::Fp8,
            false => KvCacheDtype::Auto,
        }
    }

    /// Bytes of one cached element on its device (the host cache holds f32 either way).
    pub fn elem_bytes(&self) -> usize {
        match self.cuda_dtype() {
            Some(d) => kv_elem_bytes(d, self.kv_dtype()),
            None => 4,
        }
    }

    /// Per-layer scales of an FP8 cache (`scales[l]` for layer l), e.g. a checkpoint's
    /// `k_scale` / `v_scale`; an error for a cache that is not FP8, a wrong count, or a scale
    /// that is not positive and finite.
    pub fn set_fp8_scales(&mut self, scales: &[Fp8Kv]) -> Result<()> {
        if self.kv_dtype() != KvCacheDtype::Fp8 || scales.len() != self.layers.len() {
            return Err(Error::KvCache(format!(
                "{} FP8 scales for a {:?} cache of {} layers",
                scales.len(),
                self.kv_dtype(),
                self.layers.len()
            )));
        }
        if let Some((l, s)) = scales.iter().enumerate().find(|(_, s)| {
            !(s.k_scale.is_finite() && s.k_scale > 0.0 && s.v_scale.is_finite() && s.v_scale > 0.0)
        }) {
            return Err(Error::KvCache(format!(
                "layer {l}: FP8 KV scales {s:?} must be positive and finite"
            )));
        }
        for (layer, s) in self.layers.iter_mut().zip(scales) {
            match layer {
                KvLayer::Cpu { fp8, .. } | KvLayer::Cuda { fp8, .. } => *fp8 = Some(*s),
            }
        }
        Ok(())
    }

    /// The element type of a GPU cache (`None` for the host cache, always f32).
    pub fn cuda_dtype(&self) -> Option<DType> {
        self.layers.iter().find_map(|l| match l {
            KvLayer::Cuda { dtype, .. } => Some(*dtype),
            KvLayer::Cpu { .. } => None,
        })
    }

    /// The GPU holding this cache, if any.
    pub fn gpu(&self) -> Option<Arc<Gpu>> {
        self.layers.iter().find_map(|l| match l {
            KvLayer::Cuda { k, .. } => Some(k.gpu().clone()),
            KvLayer::Cpu { .. } => None,
        })
    }

    pub fn layer(&mut self, layer: usize) -> Result<&mut KvLayer> {
        self.layers.get_mut(layer).ok_or_else(|| Error::KvCache(format!("no layer {layer}")))
    }

    pub fn num_slots(&self) -> usize {
        self.num_blocks * self.block_size
    }

    /// Blocks that fit in `bytes` of f32 K and V.
    pub fn blocks_for_bytes(layout: KvLayout, block_size: usize, bytes: usize) -> usize {
        let per_block = block_size * layout.bytes_per_token(4);
        (bytes / per_block.max(1)).max(1)
    }

    /// Key and value slots of one layer.
    pub fn layer_mut(&mut self, layer: usize) -> Result<(&mut [f32], &mut [f32])> {
        match self.layers.get_mut(layer) {
            Some(KvLayer::Cpu { k, v, .. }) => Ok((k, v)),
            Some(KvLayer::Cuda { .. }) => Err(Error::KvCache(format!("layer {layer} is on the GPU"))),
            None => Err(Error::KvCache(format!("no layer {layer}"))),
        }
    }
}

/// Bytes of one GPU cache element of a `dtype` model.
pub fn kv_elem_bytes(dtype: DType, kv_dtype: KvCacheDtype) -> usize {
    match kv_dtype {
        KvCacheDtype::Fp8 => 1,
        KvCacheDtype::Auto => dtype.size_in_bytes(),
    }
}

/// An FP8 cache needs a value plane (multi-head latent attention's latent rows stay in the
/// activation dtype).
fn check_fp8_layout(layout: KvLayout, kv_dtype: KvCacheDtype) -> Result<()> {
    if kv_dtype == KvCacheDtype::Fp8 && !layout.values {
        return Err(Error::KvCache(
            "--kv-cache-dtype fp8 is not supported for multi-head latent attention (DeepSeek-V2/V3): use auto".into(),
        ));
    }
    Ok(())
}

/// Hands out KV blocks. Blocks are ref-counted so sequences can share a prefix.
pub struct BlockAllocator {
    free: Vec<u32>,
    refs: Vec<u32>,
}

impl BlockAllocator {
    pub fn new(num_blocks: usize) -> Self {
        BlockAllocator { free: (0..num_blocks as u32).rev().collect(), refs: vec![0; num_blocks] }
    }
    pub fn num_free(&self) -> usize {
        self.free.len()
    }
    pub fn num_total(&self) -> usize {
        self.refs.len()
    }
    pub fn allocate(&mut self) -> Result<u32> {
        let b = self.free.pop().ok_or_else(|| Error::KvCache("out of KV blocks".into()))?;
        self.refs[b as usize] = 1;
        Ok(b)
    }
    /// Another owner of `b` (prefix sharing).
    pub fn retain(&mut self, b: u32) {
        self.refs[b as usize] += 1;
    }
    pub fn release(&mut self, b: u32) {
        let r = &mut self.refs[b as usize];
        if *r > 0 {
            *r -= 1;
            if *r == 0 {
                self.free.push(b);
            }
        }
    }
    /// Grow `table` so that it covers `len` tokens.
    pub fn ensure(&mut self, table: &mut Vec<u32>, len: usize, block_size: usize) -> Result<()> {
        let need = len.div_ceil(block_size);
        if need.saturating_sub(table.len()) > self.free.len() {
            return Err(Error::KvCache(format!(
                "need {} more blocks, {} free",
                need - table.len(),
                self.free.len()
            )));
        }
        while table.len() < need {
            table.push(self.allocate()?);
        }
        Ok(())
    }
    pub fn release_all(&mut self, table: &mut Vec<u32>) {
        for b in table.drain(..) {
            self.release(b);
        }
    }
}
