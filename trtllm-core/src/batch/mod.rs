//! What one forward step runs on: the packed batch of new tokens ([`ForwardBatch`], and its
//! device copy [`DeviceBatch`]) and the paged KV cache with its block allocator.

mod forward;
mod kv_cache;

pub use forward::{DeviceBatch, ForwardBatch, SeqMeta, SeqStep};
pub use kv_cache::{BlockAllocator, KvCache, KvLayer, KvLayout};
