//! The model-definition macros of trtllm.
//!
//! - `#[decoder_layer]` on a struct of layers, each field tagged `#[layer(role = ...)]`,
//!   generates `DecoderLayer`: construction from the config (each field's weights under its HF
//!   name, which is the field name unless `hf = "..."` says otherwise; the layer's inner tensors
//!   under the names of `names = CONST` when given) and the forward wiring
//!   from the roles (pre-norm residual blocks; optional post-norms; parallel residual when
//!   there is no `pre_mlp_norm`).
//! - `#[register_model("Arch", "Alias", config = fn, layout = CONST)]` on a newtype over a model
//!   base generates `CausalLM` for it and submits its registry entry with `inventory`.
//!
//! Each entry point is thin: parse -> validate -> codegen, with every error collected and
//! reported at its token.

mod ctxt;
mod decoder_layer;
mod register_model;

use proc_macro::TokenStream;

/// Generate a decoder layer's construction, weight names and forward from field roles.
#[proc_macro_attribute]
pub fn decoder_layer(args: TokenStream, item: TokenStream) -> TokenStream {
    decoder_layer::expand(args.into(), item.into()).into()
}

/// Register a model family under one or more HF architecture strings.
#[proc_macro_attribute]
pub fn register_model(args: TokenStream, item: TokenStream) -> TokenStream {
    register_model::expand(args.into(), item.into()).into()
}
