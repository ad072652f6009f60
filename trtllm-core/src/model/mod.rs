//! The model level: the decoder base ([`DecoderModelForCausalLM`]) and the [`CausalLM`] contract,
//! the registry of architectures, and the factory that plans, validates and builds a model from
//! an HF directory.

mod decoder;
mod factory;
mod gguf_model;
mod registry;

pub use decoder::{BuildCausalLM, CausalLM, DecoderLayer, DecoderModelForCausalLM, StageInput, StageOutput};
pub use factory::{
    build_hf_model, inspect, plan_weights, resolve_config, validate, HfCheckpoint, LoadOptions, LoadedModel,
    TensorCatalog, ValidationReport,
};
pub(crate) use factory::{build_weights, var_builder};
pub use gguf_model::{build_gguf_model, inspect_gguf};
pub use registry::{adapter_keys, architectures, lookup, AdaptResult, ModelEntry, ModelLayout};
