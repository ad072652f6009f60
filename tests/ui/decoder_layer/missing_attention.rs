use trtllm::decoder_layer;
use trtllm_core::layers::{GatedMlp, RmsNorm};

#[decoder_layer]
pub struct NoAttention {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

fn main() {}
