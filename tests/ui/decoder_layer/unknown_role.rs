// Our message at the role; the dropped field then also triggers "missing a field with
// #[layer(role = attention)]" (a secondary error, acceptable but avoidable).
use trtllm::decoder_layer;
use trtllm_core::layers::{Attention, GatedMlp, RmsNorm};

#[decoder_layer]
pub struct Layer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = self_attention)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

fn main() {}
