//! Running models: the packed batch, the paged KV cache, sampling, tokenization, generation.

mod batch;
mod generate;
mod kv_cache;
mod sampler;
mod tokenizer;

pub use batch::{ForwardBatch, SeqMeta, SeqStep};
pub use generate::{EngineOptions, FinishReason, Generation, Llm};
pub use kv_cache::{BlockAllocator, KvCache, KvLayout};
pub use sampler::{Sampler, SamplingParams};
pub use tokenizer::{StreamDecoder, Tokenizer};
