//! Qwen2-MoE: the Qwen2 block (q/k/v biases from `qkv_bias`) with a sparse MoE whose shared
//! expert is added behind a sigmoid gate; `mlp_only_layers` and `decoder_sparse_step` pick the
//! layers that keep a dense MLP (`MoeOrDense`).

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, MoeNames, MoeOrDense, RmsNorm};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct Qwen2MoeDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp, names = QWEN2_MOE)]
    mlp: MoeOrDense,
}

pub const QWEN2_MOE: MoeNames =
    MoeNames { shared: Some("shared_expert"), shared_gate: Some("shared_expert_gate"), ..MoeNames::LLAMA };

/// The layers of a Qwen-MoE config that keep a dense MLP: `mlp_only_layers`, and every layer
/// `l` with `(l + 1) % decoder_sparse_step != 0`.
pub fn qwen_dense_layers(cfg: &ModelConfig) -> Result<Vec<usize>> {
    let only: Vec<usize> = cfg.extra("mlp_only_layers")?.unwrap_or_default();
    let step = cfg.extra::<usize>("decoder_sparse_step")?.unwrap_or(1);
    if step == 0 {
        return Err(cfg.config_error("decoder_sparse_step", "must be at least 1"));
    }
    Ok((0..cfg.num_hidden_layers).filter(|l| only.contains(l) || (l + 1) % step != 0).collect())
}

fn qwen2_moe(cfg: &mut ModelConfig) -> Result<()> {
    (cfg.arch.qkv_bias, cfg.arch.o_bias) = (cfg.extra::<bool>("qkv_bias")?.unwrap_or(true), false);
    cfg.arch.moe.shared_intermediate = cfg.extra("shared_expert_intermediate_size")?;
    cfg.arch.moe.dense_layers = qwen_dense_layers(cfg)?;
    Ok(())
}

#[register_model("Qwen2MoeForCausalLM", config = qwen2_moe)]
pub struct Qwen2Moe(DecoderModelForCausalLM<Qwen2MoeDecoderLayer>);
