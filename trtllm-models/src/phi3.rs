//! Phi-3: the Llama block with checkpoint-fused `qkv_proj` and `gate_up_proj`; LongRoPE and
//! `partial_rotary_factor` come from the config.

use trtllm_core::config::ModelConfig;

use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::register_model;

use crate::llama::LlamaDecoderLayer;

fn phi3(cfg: &mut ModelConfig) {
    cfg.arch.fused_qkv = true;
    cfg.arch.fused_gate_up = true;
}

#[register_model("Phi3ForCausalLM", config = phi3)]
pub struct Phi3(DecoderModelForCausalLM<LlamaDecoderLayer>);
