//! KV block management for serving: the ref-counted [`BlockAllocator`] plus prefix caching by
//! block hash.
//!
//! A *full* block of a sequence is identified by a hash chained over the sequence:
//! `h_i = hash(h_{i-1}, tokens[i*bs .. (i+1)*bs])`, so equal hashes mean equal whole prefixes.
//! Once a full block's KV is computed it is registered under its hash and the cache takes one
//! reference of its own on it (`BlockAllocator::retain`). A new sequence whose prompt starts with
//! cached blocks takes them (`retain` again) and skips their prefill. When no sequence uses a
//! cached block any more it stays in the cache, on a least-recently-used list of evictable
//! blocks; allocation takes truly free blocks first and evicts from that LRU only when none are
//! left. So "free" for admission and metrics = free + evictable.
//!
//! Hashes are 64-bit SipHash with fixed keys; a hit also compares the block's token ids, so a
//! collision of the block itself cannot alias (a collision of an earlier link in the chain, at
//! ~2^-64 per pair, is accepted, as vLLM does).

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

use crate::batch::BlockAllocator;
use crate::{Error, Result};

/// The hash of a full block given its parent's hash (0 for the first block).
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// Hashes of the full blocks of `tokens`.
pub fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(tokens.len() / block_size);
    let mut parent = 0;
    for chunk in tokens.chunks_exact(block_size) {
        parent = block_hash(parent, chunk);
        out.push(parent);
    }
    out
}

struct Cached {
    hash: u64,
    tokens: Vec<u32>,
}

/// Blocks for sequences: allocation, sharing, prefix cache, eviction.
pub struct BlockManager {
    alloc: BlockAllocator,
    block_size: usize,
    enabled: bool,
    /// Sequences using each block (the allocator's count minus the cache's own reference).
    users: Vec<u32>,
    cached: Vec<Option<Cached>>,
    by_hash: HashMap<u64, u32>,
    /// Evictable cached blocks (no users), oldest release first: tick -> block.
    lru: BTreeMap<u64, u32>,
    lru_tick: Vec<Option<u64>>,
    tick: u64,
    /// Prefix-cache lookups and hits, in tokens.
    pub queried_tokens: u64,
    pub hit_tokens: u64,
}

impl BlockManager {
    pub fn new(num_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        BlockManager {
            alloc: BlockAllocator::new(num_blocks),
            block_size,
            enabled: prefix_caching,
            users: vec![0; num_blocks],
            cached: (0..num_blocks).map(|_| None).collect(),
            by_hash: HashMap::new(),
            lru: BTreeMap::new(),
            lru_tick: vec![None; num_blocks],
            tick: 0,
            queried_tokens: 0,
            hit_tokens: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }
    pub fn num_total(&self) -> usize {
        self.alloc.num_total()
    }
    /// Blocks a sequence could get now: free plus evictable cached ones.
    pub fn num_available(&self) -> usize {
        self.alloc.num_free() + self.lru.len()
    }
    /// Cached blocks no sequence uses (part of [`Self::num_available`]).
    pub fn num_evictable(&self) -> usize {
        self.lru.len()
    }
    pub fn num_cached(&self) -> usize {
        self.by_hash.len()
    }

    fn allocate(&mut self) -> Result<u32> {
        if self.alloc.num_free() == 0 {
            let Some((_, b)) = self.lru.pop_first() else {
                return Err(Error::KvCache("out of KV blocks".into()));
            };
            self.lru_tick[b as usize] = None;
            self.uncache(b);
        }
        let b = self.alloc.allocate()?;
        self.users[b as usize] = 1;
        Ok(b)
    }

    /// Drop `b` from the cache and give back the cache's reference.
    fn uncache(&mut self, b: u32) {
        if let Some(c) = self.cached[b as usize].take() {
            self.by_hash.remove(&c.hash);
            self.alloc.release(b);
        }
    }

    /// New blocks needed to grow `table` to `len` tokens.
    pub fn blocks_needed(&self, table: &[u32], len: usize) -> usize {
        len.div_ceil(self.block_size).saturating_sub(table.len())
    }

    /// Grow `table` to cover `len` tokens; `false` (and no change) if there are not enough blocks.
    pub fn try_grow(&mut self, table: &mut Vec<u32>, len: usize) -> Result<bool> {
        let need = self.blocks_needed(table, len);
        if need > self.num_available() {
            return Ok(false);
        }
        for _ in 0..need {
            let b = self.allocate()?;
            table.push(b);
        }
        Ok(true)
    }

    /// The cached blocks that start `tokens` (full blocks only, never the last token: a prefill
    /// must compute at least one token to have logits). Nothing is taken yet.
    pub fn lookup(&mut self, tokens: &[u32]) -> Vec<u32> {
        if !self.enabled || tokens.len() < 2 {
            return vec![];
        }
        let usable = &tokens[..tokens.len() - 1];
        let mut hits = vec![];
        let mut parent = 0;
        for chunk in usable.chunks_exact(self.block_size) {
            parent = block_hash(parent, chunk);
            match self.by_hash.get(&parent) {
                Some(&b) if self.cached[b as usize].as_ref().is_some_and(|c| c.tokens == chunk) => {
                    hits.push(b)
                }
                _ => break,
            }
        }
        hits
    }

    /// Of `hits`, those that are evictable now (taking them reduces what is available).
    pub fn evictable_among(&self, hits: &[u32]) -> usize {
        hits.iter().filter(|&&b| self.lru_tick[b as usize].is_some()).count()
    }

    /// Take cached blocks found by [`Self::lookup`] into a sequence's table.
    pub fn take_cached(&mut self, hits: &[u32], table: &mut Vec<u32>) {
        for &b in hits {
            if let Some(t) = self.lru_tick[b as usize].take() {
                self.lru.remove(&t);
            }
            self.alloc.retain(b);
            self.users[b as usize] += 1;
            table.push(b);
        }
    }

    /// Count a prefix-cache lookup of a new sequence's prompt (the hit-rate metric).
    pub fn record_lookup(&mut self, prompt_tokens: usize, hit_tokens: usize) {
        self.queried_tokens += prompt_tokens as u64;
        self.hit_tokens += hit_tokens as u64;
    }

    /// Register the full, computed block `b` holding `tokens` under `hash`. A block whose hash
    /// is already cached (computed twice by concurrent sequences) stays private.
    pub fn register(&mut self, b: u32, hash: u64, tokens: &[u32]) {
        if !self.enabled || self.cached[b as usize].is_some() || self.by_hash.contains_key(&hash) {
            return;
        }
        self.alloc.retain(b);
        self.by_hash.insert(hash, b);
        self.cached[b as usize] = Some(Cached { hash, tokens: tokens.to_vec() });
    }

    /// A sequence gives back its blocks (last block first, so a prefix's head stays cached
    /// longest).
    pub fn release_all(&mut self, table: &mut Vec<u32>) {
        for b in table.drain(..).rev() {
            let u = &mut self.users[b as usize];
            if *u == 0 {
                continue;
            }
            *u -= 1;
            self.alloc.release(b);
            if *u == 0 && self.cached[b as usize].is_some() {
                self.tick += 1;
                self.lru.insert(self.tick, b);
                self.lru_tick[b as usize] = Some(self.tick);
            }
        }
    }

    /// Give back the blocks of `table` past its first `len` tokens (the KV of rejected draft
    /// tokens: never registered, so never cached).
    pub fn truncate(&mut self, table: &mut Vec<u32>, len: usize) {
        let keep = len.div_ceil(self.block_size);
        if table.len() > keep {
            let mut tail = table.split_off(keep);
            self.release_all(&mut tail);
        }
    }

    /// Forget every evictable cached block (they become plain free blocks).
    pub fn clear_cache(&mut self) {
        while let Some((_, b)) = self.lru.pop_first() {
            self.lru_tick[b as usize] = None;
            self.uncache(b);
        }
    }

    /// Sequences using block `b` (tests, debugging).
    pub fn users(&self, b: u32) -> u32 {
        self.users.get(b as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_evict_and_account() {
        let mut m = BlockManager::new(4, 2, true);
        let toks = [1, 2, 3, 4, 5];
        let mut t = vec![];
        assert!(m.try_grow(&mut t, toks.len()).expect("grow"));
        assert_eq!(m.num_available(), 1);
        let h = block_hashes(&toks, 2);
        m.register(t[0], h[0], &toks[0..2]);
        m.register(t[1], h[1], &toks[2..4]);
        m.release_all(&mut t);
        assert_eq!((m.num_available(), m.num_evictable()), (4, 2));
        let hits = m.lookup(&toks);
        assert_eq!(hits.len(), 2);
        let mut t2 = vec![];
        m.take_cached(&hits, &mut t2);
        assert_eq!(m.num_available(), 2);
        m.release_all(&mut t2);
        // Eviction: four fresh blocks take the two free ones, then both cached ones.
        let mut t3 = vec![];
        assert!(m.try_grow(&mut t3, 8).expect("grow"));
        assert_eq!((m.num_available(), m.num_cached()), (0, 0));
        assert!(!m.try_grow(&mut t3, 9).expect("grow"));
        m.release_all(&mut t3);
        assert_eq!(m.num_available(), 4);
        assert!(m.lookup(&toks).is_empty());
    }
}
