//! Qwen3: the Llama block with per-head RMSNorm of q and k before RoPE; `head_dim` from the
//! config (not hidden / heads).

use trtllm_core::config::ModelConfig;

use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::register_model;

use crate::llama::LlamaDecoderLayer;

fn qwen3(cfg: &mut ModelConfig) {
    cfg.arch.qk_norm = true;
}

#[register_model("Qwen3ForCausalLM", config = qwen3)]
pub struct Qwen3(DecoderModelForCausalLM<LlamaDecoderLayer>);
