//! Model configuration, the decoder base, the registry and the factory.

mod config;
mod decoder;
mod factory;
mod registry;
pub mod rope;

pub use config::{Activation, ArchOptions, AttnKind, ModelConfig, MoeStyle};
pub use decoder::{BuildCausalLM, CausalLM, DecoderLayer, DecoderModelForCausalLM};
pub(crate) use factory::var_builder;
pub use factory::{
    build_hf_model, build_model, inspect, plan_weights, resolve_config, validate, HfCheckpoint, LoadOptions,
    LoadedModel, ValidationReport,
};
pub use registry::{architectures, lookup, ModelEntry, ModelLayout};
