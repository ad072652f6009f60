//! Cohere (Command R): one bias-free LayerNorm feeding attention and MLP in parallel,
//! interleaved (GPT-J) RoPE (q/k rows reordered at load, `ArchOptions::rope_interleaved`),
//! logits times `logit_scale`, tied embeddings.

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, GatedMlp, LayerNormNoBias};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct CohereDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: LayerNormNoBias,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

fn cohere(cfg: &mut ModelConfig) -> Result<()> {
    if cfg.extra::<bool>("use_qk_norm")?.unwrap_or(false) {
        return Err(cfg.config_error("use_qk_norm", "true (per-head LayerNorm of q and k) is not supported"));
    }
    cfg.arch.logit_scale = Some(cfg.extra::<f64>("logit_scale")?.unwrap_or(0.0625));
    cfg.arch.rope_interleaved = true;
    Ok(())
}

#[register_model("CohereForCausalLM", config = cohere)]
pub struct Cohere(DecoderModelForCausalLM<CohereDecoderLayer, LayerNormNoBias>);
