//! Granite: the Llama block with four multipliers from the config (`embedding_multiplier` on the
//! embeddings, `attention_multiplier` as the softmax scale, `residual_multiplier` on each
//! attention / MLP output before the residual add, logits divided by `logits_scaling`). HF's
//! default for each is 1.0, so an absent key is 1.0 here too (not `1 / sqrt(head_dim)`).

use trtllm_core::config::ModelConfig;
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::register_model;

use crate::llama::LlamaDecoderLayer;

fn granite(cfg: &mut ModelConfig) -> Result<()> {
    let mult = |key: &str| Ok::<_, trtllm_core::Error>(cfg.extra::<f64>(key)?.unwrap_or(1.0));
    let (embedding, attention) = (mult("embedding_multiplier")?, mult("attention_multiplier")?);
    let (residual, logits) = (mult("residual_multiplier")?, mult("logits_scaling")?);
    cfg.arch.embedding_multiplier = Some(embedding);
    cfg.arch.attention_multiplier = Some(attention);
    cfg.arch.residual_multiplier = Some(residual);
    cfg.arch.logit_scale = Some(1.0 / logits);
    Ok(())
}

#[register_model("GraniteForCausalLM", config = granite)]
pub struct Granite(DecoderModelForCausalLM<LlamaDecoderLayer>);
