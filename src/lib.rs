//! trtllm: a Rust LLM inference engine whose model zoo is written with proc macros.
//!
//! This facade re-exports the workspace crates and links the model zoo so that every
//! registered architecture is visible to [`model::lookup`].

pub use trtllm_core::*;
pub use trtllm_kernels as kernels;
pub use trtllm_macros::{decoder_layer, register_model};
pub use trtllm_models as models;

/// Keep the model zoo linked (its registrations are collected at link time).
pub fn init() {
    trtllm_models::link();
}
