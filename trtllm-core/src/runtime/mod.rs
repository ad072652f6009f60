//! Running models: the packed batch, the paged KV cache, sampling, tokenization, generation.

mod batch;
mod comm;
mod generate;
mod kv_cache;
mod load;
mod sampler;
mod tokenizer;
mod tp;

pub use batch::{DeviceBatch, ForwardBatch, SeqMeta, SeqStep};
pub use comm::LocalComm;
pub use generate::{EngineOptions, FinishReason, Generation, Llm};
pub use kv_cache::{BlockAllocator, KvCache, KvLayer, KvLayout};
pub use load::load_engine_model;
pub use sampler::{Sampler, SamplingParams};
pub use tokenizer::{StreamDecoder, Tokenizer};
pub use tp::TpModel;
