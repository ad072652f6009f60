//! Llama (and Mistral without a sliding window; SmolLM2 is a Llama).

use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct LlamaDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

#[register_model("LlamaForCausalLM", "MistralForCausalLM")]
pub struct Llama(DecoderModelForCausalLM<LlamaDecoderLayer>);
