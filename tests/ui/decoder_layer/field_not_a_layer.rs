use trtllm::decoder_layer;
use trtllm_core::layers::{Attention, RmsNorm};

#[decoder_layer]
pub struct StringMlp {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: String,
}

fn main() {}
