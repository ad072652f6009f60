//! The paged KV cache: per layer, `num_blocks * block_size` slots of `[kv_heads, head_dim]`
//! keys and values (or, for multi-head latent attention, one latent row per slot and no values),
//! handed out in fixed-size blocks by a ref-counted allocator.

use std::sync::Arc;

use trtllm_kernels::{DevBuf, Gpu};

use crate::{DType, Error, Result};

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

/// One layer's keys and values: host f32, or device memory in the model's dtype.
pub enum KvLayer {
    Cpu { k: Vec<f32>, v: Vec<f32> },
    Cuda { k: DevBuf, v: DevBuf, dtype: DType },
}

pub struct KvCache {
    pub layout: KvLayout,
    pub block_size: usize,
    pub num_blocks: usize,
    layers: Vec<KvLayer>,
}

impl KvCache {
    pub fn new(layout: KvLayout, block_size: usize, num_blocks: usize) -> Result<Self> {
        Self::new_stage(layout, block_size, num_blocks, 0..layout.num_layers)
    }

    /// A host cache holding only `layers` (a pipeline stage's); the others are empty.
    pub fn new_stage(
        layout: KvLayout,
        block_size: usize,
        num_blocks: usize,
        layers: std::ops::Range<usize>,
    ) -> Result<Self> {
        if block_size == 0 || num_blocks == 0 {
            return Err(Error::KvCache("block_size and num_blocks must be positive".into()));
        }
        let n = num_blocks * block_size * layout.kv_heads * layout.head_dim;
        let nv = if layout.values { n } else { 0 };
        let layers = (0..layout.num_layers)
            .map(|l| match layers.contains(&l) {
                true => KvLayer::Cpu { k: vec![0.0; n], v: vec![0.0; nv] },
                false => KvLayer::Cpu { k: vec![], v: vec![] },
            })
            .collect();
        Ok(KvCache { layout, block_size, num_blocks, layers })
    }

    /// A cache in GPU memory, in `dtype` (f32 or bf16).
    pub fn new_cuda(
        gpu: &Arc<Gpu>,
        dtype: DType,
        layout: KvLayout,
        block_size: usize,
        num_blocks: usize,
    ) -> Result<Self> {
        Self::new_cuda_stage(gpu, dtype, layout, block_size, num_blocks, 0..layout.num_layers)
    }

    /// A GPU cache holding only `layers` (a pipeline stage's); the others are empty host layers.
    pub fn new_cuda_stage(
        gpu: &Arc<Gpu>,
        dtype: DType,
        layout: KvLayout,
        block_size: usize,
        num_blocks: usize,
        layers: std::ops::Range<usize>,
    ) -> Result<Self> {
        if block_size == 0 || num_blocks == 0 || layers.is_empty() {
            return Err(Error::KvCache("block_size, num_blocks and the layers must be non-empty".into()));
        }
        let bytes = num_blocks * block_size * layout.kv_heads * layout.head_dim * dtype.size_in_bytes();
        let mut out = Vec::with_capacity(layout.num_layers);
        for l in 0..layout.num_layers {
            if !layers.contains(&l) {
                out.push(KvLayer::Cpu { k: vec![], v: vec![] });
                continue;
            }
            let alloc = |bytes: usize| {
                DevBuf::alloc(gpu, bytes)
                    .map_err(|e| Error::KvCache(format!("allocating {bytes} bytes: {e}")))
            };
            let v_bytes = if layout.values { bytes } else { 0 };
            out.push(KvLayer::Cuda { k: alloc(bytes)?, v: alloc(v_bytes)?, dtype });
        }
        Ok(KvCache { layout, block_size, num_blocks, layers: out })
    }

    pub fn is_cuda(&self) -> bool {
        self.layers.iter().any(|l| matches!(l, KvLayer::Cuda { .. }))
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
            Some(KvLayer::Cpu { k, v }) => Ok((k, v)),
            Some(KvLayer::Cuda { .. }) => Err(Error::KvCache(format!("layer {layer} is on the GPU"))),
            None => Err(Error::KvCache(format!("no layer {layer}"))),
        }
    }
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
