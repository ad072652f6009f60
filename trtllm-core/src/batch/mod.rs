//! What one forward step runs on: the packed batch of new tokens ([`ForwardBatch`], and its
//! device copy [`DeviceBatch`]; its wire form for multi-process workers: `wire.rs`) and the
//! paged KV cache with its block allocator.

mod forward;
mod kv_cache;
mod wire;

pub use forward::{DeviceBatch, ForwardBatch, SeqMeta, SeqStep};
pub use kv_cache::{kv_elem_bytes, BlockAllocator, Fp8Kv, KvCache, KvCacheDtype, KvLayer, KvLayout};
