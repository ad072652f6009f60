//! Model configuration, the decoder base, the registry and the factory.

mod config;
mod decoder;
mod factory;
mod registry;
pub mod rope;

pub use config::{Activation, ArchOptions, AttnKind, ModelConfig, MoeStyle};
pub use decoder::{BuildCausalLM, CausalLM, DecoderLayer, DecoderModelForCausalLM};
pub use factory::{
    build_hf_model, build_model, inspect, plan_weights, resolve_config, validate, HfCheckpoint, LoadOptions,
    LoadedModel, ValidationReport,
};
pub(crate) use factory::{build_weights, var_builder};
pub use registry::{architectures, lookup, ModelEntry, ModelLayout};
