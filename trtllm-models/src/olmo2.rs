//! OLMo 2: a post-norm block (no input norm: the attention and the MLP read the residual stream,
//! their outputs are normalized before the residual add) and RMSNorm of q and k over all heads
//! at once (`AllHeadsRmsNorm`; an all-reduce of the sums under tensor parallelism).

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{AllHeadsRmsNorm, Attention, GatedMlp, RmsNorm};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct Olmo2DecoderLayer {
    #[layer(role = attention)]
    self_attn: Attention<AllHeadsRmsNorm>,
    #[layer(role = post_attention_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
    #[layer(role = post_mlp_norm)]
    post_feedforward_layernorm: RmsNorm,
}

fn olmo2(cfg: &mut ModelConfig) {
    cfg.arch.qk_norm = true;
}

#[register_model("Olmo2ForCausalLM", config = olmo2)]
pub struct Olmo2(DecoderModelForCausalLM<Olmo2DecoderLayer>);
