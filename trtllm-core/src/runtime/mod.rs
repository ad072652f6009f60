//! Running models: the packed batch, the paged KV cache, sampling, tokenization, chat templates,
//! generation; and checking them: `verify` (against an HF reference dump), `summarize` + `rouge`.

mod batch;
mod chat;
mod comm;
mod comm_nccl;
mod detok;
mod dist;
mod engine;
mod engine_loop;
mod generate;
mod graph;
mod kv_cache;
mod load;
pub mod load_timing;
mod logits;
mod metrics;
mod prefix_cache;
pub mod rouge;
mod sampler;
mod scheduler;
mod sequence;
pub mod summarize;
mod tokenizer;
mod tp;
pub mod verify;

pub use batch::{DeviceBatch, ForwardBatch, SeqMeta, SeqStep};
pub use chat::{ChatMessage, ChatTemplate};
pub use comm::LocalComm;
pub use comm_nccl::NcclComm;
pub use dist::DistEnv;
pub use generate::{EngineOptions, FinishReason, Generation, Llm};
pub use graph::{cuda_graphs_disabled_by_env, DecodeGraphs};
pub use kv_cache::{BlockAllocator, KvCache, KvLayer, KvLayout};
pub use load::load_engine_model;
pub use sampler::{Sampler, SamplingParams, MAX_LOGPROBS, MAX_N};
pub use tokenizer::{StreamDecoder, Tokenizer};
pub use tp::TpModel;
// Serving (issue 7): continuous batching, prefix caching, the engine thread.
pub use detok::{IncrementalDetokenizer, StopMatcher};
pub use engine::{Delta, Engine, EngineHandle, Event, EventSink, Limits, RequestHandle, SubmitError, Usage};
pub use logits::TokenLogprob;
pub use metrics::{EngineMetrics, Histogram};
pub use prefix_cache::{block_hashes, BlockManager};
pub use scheduler::{Scheduler, SchedulerConfig, StepOutput, TokenOut};
pub use sequence::{Finish, SeqRequest};
