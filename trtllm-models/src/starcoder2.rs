//! StarCoder2: LayerNorm with bias, a plain GELU MLP (`c_fc` / `c_proj`, not `Conv1D`), biases on
//! every projection when `use_bias` (HF's default), a sliding window on every layer when the
//! config sets `sliding_window`.

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, LayerNorm, Mlp, MlpNames};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct Starcoder2DecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: LayerNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: LayerNorm,
    #[layer(role = mlp, names = STARCODER2_MLP)]
    mlp: Mlp,
}

pub const STARCODER2_MLP: MlpNames = MlpNames { fc: "c_fc", proj: "c_proj", conv1d: false };

fn starcoder2(cfg: &mut ModelConfig) -> Result<()> {
    let bias = cfg.extra::<bool>("use_bias")?.unwrap_or(true);
    (cfg.arch.qkv_bias, cfg.arch.o_bias, cfg.arch.mlp_bias) = (bias, bias, bias);
    Ok(())
}

#[register_model("Starcoder2ForCausalLM", config = starcoder2)]
pub struct Starcoder2(DecoderModelForCausalLM<Starcoder2DecoderLayer, LayerNorm>);
