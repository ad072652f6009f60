//! GPT-OSS: the Llama block with biases on q/k/v/o, attention sinks (a learned logit per head
//! in each softmax), sliding and full layers alternating (`layer_types`), YaRN, and a MoE whose
//! router and experts have biases: top-k of the raw logits, softmax over those k, experts with a
//! clamped SwiGLU over interleaved gate/up columns, stored as 3-D `[experts, in, out]` tensors.

use trtllm_core::config::{ModelConfig, MoeScoring};
use trtllm_core::layers::{Attention, MoeNames, RmsNorm, SparseMoe};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct GptOssDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp, names = GPT_OSS_MOE)]
    mlp: SparseMoe,
}

pub const GPT_OSS_MOE: MoeNames =
    MoeNames { router: "router", fused_gate_up: Some("gate_up_proj"), ..MoeNames::LLAMA };

fn gpt_oss(cfg: &mut ModelConfig) -> Result<()> {
    let bias = cfg.extra::<bool>("attention_bias")?.unwrap_or(true);
    (cfg.arch.qkv_bias, cfg.arch.o_bias, cfg.arch.attn_sinks) = (bias, bias, true);
    let alpha = cfg.extra::<f64>("swiglu_alpha")?.unwrap_or(1.702);
    let limit = cfg.extra::<f64>("swiglu_limit")?.unwrap_or(7.0);
    let moe = &mut cfg.arch.moe;
    (moe.scoring, moe.router_bias, moe.expert_bias) = (MoeScoring::TopKSoftmax, true, true);
    moe.clamped_swiglu = Some((alpha, limit));
    Ok(())
}

#[register_model("GptOssForCausalLM", config = gpt_oss)]
pub struct GptOss(DecoderModelForCausalLM<GptOssDecoderLayer>);
