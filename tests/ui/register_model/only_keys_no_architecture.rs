use trtllm::{decoder_layer, register_model};
use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};
use trtllm_core::{config::ModelConfig, model::DecoderModelForCausalLM};

#[decoder_layer]
pub struct Layer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

fn adapt(_: &mut ModelConfig) {}

#[register_model(config = adapt, layout = trtllm_core::model::ModelLayout::LLAMA)]
pub struct UiLlama(DecoderModelForCausalLM<Layer>);

fn main() {}
