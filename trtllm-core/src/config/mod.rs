//! A model's configuration: `config.json` normalized into [`ModelConfig`] (aliases, defaults,
//! enums, RoPE parameters), the keys it does not parse ([`ModelConfig::extra`]), and the
//! architecture knobs HF keeps in modeling code ([`ArchOptions`]).

mod extra;
mod keys;
pub mod limits;
mod mla;
mod model;
mod parse;
pub mod quant;
pub mod rope;

pub use keys::{Fallback, DEFAULTS, KEY_ALIASES, PARSED_KEYS};
pub use limits::{
    check_range, Stored, MAX_BATCH_SIZE, MAX_CONTEXT, MAX_DIM, MAX_EXPERTS, MAX_KV_BLOCK_SIZE, MAX_LAYERS,
    MAX_NUM_TOKENS,
};
pub use mla::MlaDims;
pub use model::{Activation, ArchOptions, AttnKind, ModelConfig, MoeOptions, MoeScoring};
pub use quant::{Fp8Scales, QuantConfig, WeightQuant};
