//! The trtllm model zoo: one file per family, each a `#[decoder_layer]` struct and a
//! `#[register_model]` newtype. Registration happens at link time (`inventory`); nothing here
//! lists the models.

pub mod cohere;
pub mod deepseek_v2;
pub mod deepseek_v3;
pub mod falcon;
pub mod gemma;
pub mod gpt2;
pub mod gpt_neox;
pub mod gpt_oss;
pub mod granite;
pub mod llama;
pub mod mixtral;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen2_moe;
pub mod qwen3;
pub mod starcoder2;

/// Call once from a binary that uses the registry, so the linker keeps this crate's
/// registrations (`trtllm::init` does).
#[inline(never)]
pub fn link() -> usize {
    std::hint::black_box(0)
}
