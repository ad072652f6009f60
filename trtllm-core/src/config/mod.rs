//! A model's configuration: `config.json` normalized into [`ModelConfig`] (aliases, enums,
//! RoPE parameters), and the architecture knobs HF keeps in modeling code ([`ArchOptions`]).

mod model;
pub mod quant;
pub mod rope;

pub use model::{Activation, ArchOptions, AttnKind, ModelConfig, MoeStyle};
pub use quant::{Fp8Scales, QuantConfig, WeightQuant};
