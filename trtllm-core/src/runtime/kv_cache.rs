//! The paged KV cache: per layer, `num_blocks * block_size` slots of `[kv_heads, head_dim]`
//! keys and values, handed out in fixed-size blocks by a ref-counted allocator.

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    pub num_layers: usize,
    /// KV heads held by this rank.
    pub kv_heads: usize,
    pub head_dim: usize,
}

pub struct KvCache {
    pub layout: KvLayout,
    pub block_size: usize,
    pub num_blocks: usize,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl KvCache {
    pub fn new(layout: KvLayout, block_size: usize, num_blocks: usize) -> Result<Self> {
        if block_size == 0 || num_blocks == 0 {
            return Err(Error::KvCache("block_size and num_blocks must be positive".into()));
        }
        let n = num_blocks * block_size * layout.kv_heads * layout.head_dim;
        Ok(KvCache {
            layout,
            block_size,
            num_blocks,
            k: (0..layout.num_layers).map(|_| vec![0.0; n]).collect(),
            v: (0..layout.num_layers).map(|_| vec![0.0; n]).collect(),
        })
    }

    /// Blocks that fit in `bytes` of f32 K and V.
    pub fn blocks_for_bytes(layout: KvLayout, block_size: usize, bytes: usize) -> usize {
        let per_block = 2 * layout.num_layers * block_size * layout.kv_heads * layout.head_dim * 4;
        (bytes / per_block.max(1)).max(1)
    }

    /// Key and value slots of one layer.
    pub fn layer_mut(&mut self, layer: usize) -> Result<(&mut [f32], &mut [f32])> {
        match (self.k.get_mut(layer), self.v.get_mut(layer)) {
            (Some(k), Some(v)) => Ok((k, v)),
            _ => Err(Error::KvCache(format!("no layer {layer}"))),
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
            return Err(Error::KvCache(format!("need {} more blocks, {} free", need - table.len(), self.free.len())));
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
