//! Mixtral and Qwen3-MoE: the Llama block with a sparse mixture of experts in place of the MLP
//! (Qwen3-MoE: dense on the layers `mlp_only_layers` / `decoder_sparse_step` name).

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, MoeNames, MoeOrDense, RmsNorm, SparseMoe};
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
    #[layer(role = mlp, names = MIXTRAL_MOE)]
    block_sparse_moe: SparseMoe,
}

/// Experts `w1` (gate), `w3` (up), `w2` (down).
pub const MIXTRAL_MOE: MoeNames = MoeNames { gate: "w1", up: "w3", down: "w2", ..MoeNames::LLAMA };

#[decoder_layer]
pub struct Qwen3MoeDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: MoeOrDense,
}

/// Mixtral always renormalizes the top-k router weights.
fn mixtral(cfg: &mut ModelConfig) {
    cfg.norm_topk_prob = true;
}

fn qwen3_moe(cfg: &mut ModelConfig) -> trtllm_core::Result<()> {
    cfg.arch.qk_norm = true;
    cfg.arch.moe.dense_layers = crate::qwen2_moe::qwen_dense_layers(cfg)?;
    Ok(())
}

#[register_model("MixtralForCausalLM", config = mixtral)]
pub struct Mixtral(DecoderModelForCausalLM<MixtralDecoderLayer>);

#[register_model("Qwen3MoeForCausalLM", config = qwen3_moe)]
pub struct Qwen3Moe(DecoderModelForCausalLM<Qwen3MoeDecoderLayer>);
