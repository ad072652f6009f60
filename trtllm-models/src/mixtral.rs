//! Mixtral and Qwen3-MoE: the Llama block with a sparse mixture of experts in place of the MLP.

use trtllm_core::config::{ModelConfig, MoeStyle};
use trtllm_core::layers::{Attention, RmsNorm, SparseMoe};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct MixtralDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    block_sparse_moe: SparseMoe,
}

#[decoder_layer]
pub struct Qwen3MoeDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: SparseMoe,
}

fn qwen3_moe(cfg: &mut ModelConfig) {
    cfg.arch.qk_norm = true;
    cfg.arch.moe_style = MoeStyle::Qwen;
}

#[register_model("MixtralForCausalLM")]
pub struct Mixtral(DecoderModelForCausalLM<MixtralDecoderLayer>);

#[register_model("Qwen3MoeForCausalLM", config = qwen3_moe)]
pub struct Qwen3Moe(DecoderModelForCausalLM<Qwen3MoeDecoderLayer>);
