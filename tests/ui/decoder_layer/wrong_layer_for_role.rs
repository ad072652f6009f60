use trtllm::decoder_layer;
use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};

// A real layer, in the wrong role: an MLP where the attention goes.
#[decoder_layer]
pub struct Swapped {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: GatedMlp,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: Attention,
}

fn main() {}
