//! Falcon: attention and MLP in parallel off LayerNorms with biases, the q/k/v projection fused
//! and grouped by KV head in the checkpoint (the new decoder's GQA, or multi-query: one group of
//! all q heads, `[q; k; v]`), GELU MLP. Two LayerNorms (`ln_attn`, `ln_mlp`: the new decoder) or
//! one (`input_layernorm`: Falcon-7B, `num_ln_in_parallel_attn: 1`) read as both (layout renames).
//! `activation` and `ffn_hidden_size` are aliases of `hidden_act` and `intermediate_size`.

use trtllm_core::config::{Activation, ModelConfig};
use trtllm_core::layers::{Attention, AttnNames, LayerNorm, Mlp, MlpNames};
use trtllm_core::model::{DecoderModelForCausalLM, ModelLayout};
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct FalconDecoderLayer {
    #[layer(role = input_norm)]
    ln_attn: LayerNorm,
    #[layer(role = attention, names = FALCON_ATTN)]
    self_attention: Attention,
    #[layer(role = parallel_mlp_norm)]
    ln_mlp: LayerNorm,
    #[layer(role = mlp, names = FALCON_MLP)]
    mlp: Mlp,
}

pub const FALCON_ATTN: AttnNames =
    AttnNames { qkv: &["query_key_value"], o: "dense", qkv_grouped: true, ..AttnNames::LLAMA };
pub const FALCON_MLP: MlpNames = MlpNames { fc: "dense_h_to_4h", proj: "dense_4h_to_h", conv1d: false };
pub const FALCON_LAYOUT: ModelLayout = ModelLayout {
    embed_tokens: "word_embeddings",
    position_embeddings: None,
    prefix_aliases: &[],
    renames: &[("ln_attn", "input_layernorm"), ("ln_mlp", "input_layernorm")],
    ..crate::gpt2::GPT2_LAYOUT
};

fn falcon(cfg: &mut ModelConfig) -> trtllm_core::Result<()> {
    cfg.refuse("alibi", false, true, "ALiBi position biases")?;
    cfg.refuse("parallel_attn", true, false, "a sequential block")?;
    let (new_arch, bias) = (cfg.flag("new_decoder_architecture", false)?, cfg.flag("bias", false)?);
    if !new_arch {
        cfg.num_key_value_heads = if cfg.flag("multi_query", true)? { 1 } else { cfg.num_attention_heads };
    }
    if cfg.extra::<String>("activation")?.is_none() {
        cfg.hidden_act = Activation::Gelu; // FalconConfig's default
    }
    (cfg.arch.qkv_bias, cfg.arch.o_bias, cfg.arch.mlp_bias) = (bias, bias, bias);
    Ok(())
}

#[register_model("FalconForCausalLM", config = falcon, layout = FALCON_LAYOUT)]
pub struct Falcon(DecoderModelForCausalLM<FalconDecoderLayer, LayerNorm>);
