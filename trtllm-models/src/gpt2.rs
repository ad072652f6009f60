//! GPT-2: LayerNorm with bias, learned absolute positions, `Conv1D` weights (`[in, out]`,
//! transposed at load), fused `c_attn`, GELU MLP, tied head; tensor names with or without
//! the `transformer.` prefix.

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, AttnNames, LayerNorm, Mlp, MlpNames};
use trtllm_core::model::{DecoderModelForCausalLM, ModelLayout};
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct Gpt2Block {
    #[layer(role = input_norm)]
    ln_1: LayerNorm,
    #[layer(role = attention, names = GPT2_ATTN)]
    attn: Attention,
    #[layer(role = pre_mlp_norm)]
    ln_2: LayerNorm,
    #[layer(role = mlp, names = GPT2_MLP)]
    mlp: Mlp,
}

/// `Conv1D` projections: q/k/v fused as `c_attn`, output `c_proj`; MLP `c_fc`, `c_proj`.
pub const GPT2_ATTN: AttnNames =
    AttnNames { qkv: &["c_attn"], o: "c_proj", conv1d: true, ..AttnNames::LLAMA };
pub const GPT2_MLP: MlpNames = MlpNames { fc: "c_fc", proj: "c_proj", conv1d: true };

fn gpt2(cfg: &mut ModelConfig) {
    cfg.arch.no_rope = true;
    cfg.tie_word_embeddings = true;
}

pub const GPT2_LAYOUT: ModelLayout = ModelLayout {
    prefix: "transformer",
    embed_tokens: "wte",
    position_embeddings: Some("wpe"),
    layers: "h",
    norm: "ln_f",
    lm_head: "lm_head",
    prefix_aliases: &[""],
    renames: &[],
    ignore: &[],
};

#[register_model("GPT2LMHeadModel", config = gpt2, layout = GPT2_LAYOUT)]
pub struct Gpt2(DecoderModelForCausalLM<Gpt2Block, LayerNorm>);
