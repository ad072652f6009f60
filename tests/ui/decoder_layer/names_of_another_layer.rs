use trtllm::decoder_layer;
use trtllm_core::layers::{Attention, GatedMlp, GatedMlpNames, RmsNorm};

#[decoder_layer]
pub struct Layer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention, names = GatedMlpNames::LLAMA)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

fn main() {}
