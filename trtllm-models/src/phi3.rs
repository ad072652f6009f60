//! Phi-3: the Llama block with checkpoint-fused `qkv_proj` and `gate_up_proj`; LongRoPE and
//! `partial_rotary_factor` come from the config.

use trtllm_core::layers::{Attention, AttnNames, GatedMlp, GatedMlpNames, RmsNorm};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct Phi3DecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention, names = PHI3_ATTN)]
    self_attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp, names = PHI3_MLP)]
    mlp: GatedMlp,
}

pub const PHI3_ATTN: AttnNames = AttnNames { qkv: &["qkv_proj"], ..AttnNames::LLAMA };
pub const PHI3_MLP: GatedMlpNames = GatedMlpNames { gate_up: &["gate_up_proj"], ..GatedMlpNames::LLAMA };

#[register_model("Phi3ForCausalLM")]
pub struct Phi3(DecoderModelForCausalLM<Phi3DecoderLayer>);
