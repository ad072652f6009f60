//! trtllm-core: tensors, functional ops, layers, model configs, weight maps, the model
//! registry and the runtime (paged KV cache, sampling, tokenizer, generation).
//!
//! The four API levels: [`ops`] (functional), [`layers`] (Linear, Embedding, norms; Attention,
//! GatedMlp), and [`model::DecoderModelForCausalLM`] (the model base).

pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod gguf;
pub mod layers;
pub mod mapping;
pub mod model;
pub mod ops;
pub mod runtime;
pub mod tensor;
pub mod weights;

pub use dtype::DType;
pub use error::{Error, Result};
pub use mapping::Mapping;
pub use tensor::{Device, Tensor};

/// Used by the code `#[register_model]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use inventory;
}
