//! trtllm-core: the engine, in layers. Each folder depends only on the ones above it in this
//! list (the table in ARCHITECTURE.md; `tests/tests/layering.rs` enforces it):
//!
//! | layer | modules | what |
//! |---|---|---|
//! | base | [`error`], [`dtype`], [`mapping`], [`env`] | errors, element types, the parallel mapping, the knob table |
//! | leaves | [`text`], [`gguf`], [`device`] | tokenizer/detokenizer/chat; the GGUF importer; the GPU table and timers |
//! | tensor | [`tensor`] | host / device / meta tensors |
//! | config, batch | [`config`], [`batch`] | `ModelConfig` + RoPE; `ForwardBatch` + paged `KvCache` |
//! | ops | [`ops`] | functional ops, CPU oracle + CUDA |
//! | dist, weights | [`dist`], [`weights`] | `Communicator` (local, NCCL, multi-process); weight maps and sources |
//! | layers | [`layers`] | Linear, norms, Attention, MLPs, MoE |
//! | model | [`model`] | decoder base, registry, factory |
//! | checkpoint | [`checkpoint`] | converted checkpoints and engine directories |
//! | load | [`load`] | `LlmOptions`, directory dispatch, the tensor-parallel group |
//! | runner | [`runner`] | `ModelRunner`: model + KV cache + CUDA graphs + sampling |
//! | serve | [`serve`] | scheduling policy, prefix cache, engine thread, metrics |
//! | llm | [`llm`] | `Llm`: the scheduler driven to completion |
//! | eval | [`eval`] | verify, summarize, ROUGE |

pub mod dtype;
pub mod env;
pub mod error;
pub mod mapping;

pub mod device;
pub mod gguf;
pub mod text;

pub mod tensor;

pub mod batch;
pub mod config;

pub mod ops;

pub mod dist;
pub mod weights;

pub mod layers;

pub mod model;

pub mod checkpoint;

pub mod load;

pub mod runner;

pub mod serve;

pub mod llm;

pub mod eval;

pub use dtype::DType;
pub use error::{Error, Result};
pub use llm::{Generation, Llm};
pub use load::LlmOptions;
pub use mapping::Mapping;
pub use tensor::{Device, Tensor};

/// Used by the code `#[register_model]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
