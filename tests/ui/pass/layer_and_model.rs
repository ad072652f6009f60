//! A layer and a model defined outside the zoo register themselves and are found by lookup.

use trtllm::{decoder_layer, register_model};
use trtllm_core::layers::{Attention, GatedMlp, GatedMlpNames, GemmaRmsNorm, RmsNorm};
use trtllm_core::{config::ModelConfig, model::{DecoderModelForCausalLM, ModelLayout}};

#[decoder_layer]
pub struct UiLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention, hf = "self_attn")]
    attn: Attention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

/// A parallel-residual layer (no pre_mlp_norm) with a post-attention norm: the other wiring;
/// Gemma q/k norms and a checkpoint that stores gate/up fused under its own name.
#[decoder_layer]
pub struct UiParallelLayer {
    #[layer(role = input_norm)]
    ln: RmsNorm,
    #[layer(role = attention)]
    self_attn: Attention<GemmaRmsNorm>,
    #[layer(role = post_attention_norm)]
    post_ln: RmsNorm,
    #[layer(role = mlp, names = UI_MLP)]
    mlp: GatedMlp,
}

const UI_MLP: GatedMlpNames = GatedMlpNames { gate_up: &["w13"], ..GatedMlpNames::LLAMA };

fn adapt(cfg: &mut ModelConfig) {
    cfg.arch.qk_norm = false;
}

#[register_model("UiTestForCausalLM", "UiTestAliasForCausalLM", config = adapt, layout = ModelLayout::LLAMA)]
pub struct UiTest(DecoderModelForCausalLM<UiLayer>);

#[register_model("UiParallelForCausalLM")]
pub struct UiParallel(DecoderModelForCausalLM<UiParallelLayer, RmsNorm>);

fn main() {
    let e = trtllm_core::model::lookup("UiTestForCausalLM").expect("registered");
    assert!(e.type_name.ends_with("::UiTest"), "{}", e.type_name);
    assert_eq!(e.architectures, ["UiTestForCausalLM", "UiTestAliasForCausalLM"]);
    assert_eq!(e.layout.prefix, "model");
    let alias = trtllm_core::model::lookup("UiTestAliasForCausalLM").expect("alias");
    assert!(std::ptr::eq(e, alias));
    assert!(trtllm_core::model::lookup("UiParallelForCausalLM").expect("parallel").type_name.ends_with("::UiParallel"));
    // The zoo is linked too, through the facade.
    trtllm::init();
    assert!(trtllm_core::model::lookup("LlamaForCausalLM").is_ok());
    let err = trtllm_core::model::lookup("UiTestForCasualLM").err().expect("typo").to_string();
    assert!(err.contains("did you mean `UiTestForCausalLM`"), "{err}");
}
