//! Qwen2: the Llama block with q/k/v biases (no o_proj bias). `use_sliding_window` /
//! `max_window_layers` become per-layer windows in the config.

use trtllm_core::config::ModelConfig;

use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::register_model;

use crate::llama::LlamaDecoderLayer;

fn qwen2(cfg: &mut ModelConfig) {
    cfg.arch.qkv_bias = true;
    cfg.arch.o_bias = false;
}

#[register_model("Qwen2ForCausalLM", config = qwen2)]
pub struct Qwen2(DecoderModelForCausalLM<LlamaDecoderLayer>);
