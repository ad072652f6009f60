//! A model's configuration: `config.json` normalized into [`ModelConfig`] (aliases, defaults,
//! enums, RoPE parameters), the keys it does not parse ([`ModelConfig::extra`]), and the
//! architecture knobs HF keeps in modeling code ([`ArchOptions`]).

mod extra;
mod keys;
mod model;
mod parse;
pub mod quant;
pub mod rope;

pub use keys::{Fallback, DEFAULTS, KEY_ALIASES};
pub use model::{Activation, ArchOptions, AttnKind, ModelConfig};
pub use quant::{Fp8Scales, QuantConfig, WeightQuant};
