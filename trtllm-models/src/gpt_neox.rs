//! GPT-NeoX (Pythia): a parallel residual with two LayerNorms (`x + attn(ln1(x)) + mlp(ln2(x))`),
//! the q/k/v projection fused in the checkpoint and interleaved per head (reordered at load),
//! partial rotary (`rotary_pct`, 0.25 when the config says nothing), biases everywhere.

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, AttnNames, LayerNorm, Mlp, MlpNames};
use trtllm_core::model::{DecoderModelForCausalLM, ModelLayout};
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct GptNeoXLayer {
    #[layer(role = input_norm)]
    input_layernorm: LayerNorm,
    #[layer(role = attention, names = NEOX_ATTN)]
    attention: Attention,
    #[layer(role = parallel_mlp_norm)]
    post_attention_layernorm: LayerNorm,
    #[layer(role = mlp, names = NEOX_MLP)]
    mlp: Mlp,
}

pub const NEOX_ATTN: AttnNames =
    AttnNames { qkv: &["query_key_value"], o: "dense", qkv_grouped: true, ..AttnNames::LLAMA };
pub const NEOX_MLP: MlpNames = MlpNames { fc: "dense_h_to_4h", proj: "dense_4h_to_h", conv1d: false };
pub const NEOX_LAYOUT: ModelLayout = ModelLayout {
    prefix: "gpt_neox",
    embed_tokens: "embed_in",
    norm: "final_layer_norm",
    lm_head: "embed_out",
    ..ModelLayout::LLAMA
};

fn gpt_neox(cfg: &mut ModelConfig) -> trtllm_core::Result<()> {
    if !cfg.extra::<bool>("use_parallel_residual")?.unwrap_or(true) {
        return Err(cfg.config_error("use_parallel_residual", "false (a sequential block) is not supported"));
    }
    let bias = cfg.extra::<bool>("attention_bias")?.unwrap_or(true);
    (cfg.arch.qkv_bias, cfg.arch.o_bias, cfg.arch.mlp_bias) = (bias, bias, true);
    // HF's rotary default is a quarter of each head when no spelling of the factor is given.
    let factor = |p: serde_json::Value| p.get("partial_rotary_factor").and_then(|f| f.as_f64());
    let stated = cfg.extra("rope_parameters")?.and_then(factor).or(cfg.extra::<f64>("rotary_pct")?);
    if stated.or(cfg.extra::<f64>("partial_rotary_factor")?).is_none() {
        cfg.rope.rotary_dim = cfg.head_dim / 4;
    }
    Ok(())
}

#[register_model("GPTNeoXForCausalLM", config = gpt_neox, layout = NEOX_LAYOUT)]
pub struct GptNeoX(DecoderModelForCausalLM<GptNeoXLayer, LayerNorm>);
