//! Gemma 1, 2 and 3. `(1 + w)` RMSNorm (the `GemmaRmsNorm` layer type, for the q/k norms too:
//! `Attention<GemmaRmsNorm>`), embeddings scaled by sqrt(hidden), GeGLU; Gemma 2/3 add post-attention and post-feed-forward norms (roles),
//! soft-capping, `query_pre_attn_scalar` and sliding layers (config); Gemma 3 adds q/k norm and
//! a separate RoPE base for local layers (config).

use trtllm_core::config::ModelConfig;
use trtllm_core::layers::{Attention, GatedMlp, GemmaRmsNorm};
use trtllm_core::model::{DecoderModelForCausalLM, ModelLayout};
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct GemmaDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: GemmaRmsNorm,
    #[layer(role = attention)]
    self_attn: Attention<GemmaRmsNorm>,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: GemmaRmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
}

#[decoder_layer]
pub struct Gemma2DecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: GemmaRmsNorm,
    #[layer(role = attention)]
    self_attn: Attention<GemmaRmsNorm>,
    #[layer(role = post_attention_norm)]
    post_attention_layernorm: GemmaRmsNorm,
    #[layer(role = pre_mlp_norm)]
    pre_feedforward_layernorm: GemmaRmsNorm,
    #[layer(role = mlp)]
    mlp: GatedMlp,
    #[layer(role = post_mlp_norm)]
    post_feedforward_layernorm: GemmaRmsNorm,
}

fn gemma(cfg: &mut ModelConfig) {
    cfg.arch.embedding_multiplier = Some((cfg.hidden_size as f64).sqrt());
}

fn gemma3(cfg: &mut ModelConfig) {
    gemma(cfg);
    cfg.arch.qk_norm = true;
}

/// Gemma 3 multimodal checkpoints keep the text model under another prefix; the vision tower
/// and projector are not used.
pub const GEMMA3_LAYOUT: ModelLayout = ModelLayout {
    prefix_aliases: &["model.language_model", "language_model.model"],
    ignore: &[
        "vision_tower.",
        "multi_modal_projector.",
        "model.vision_tower.",
        "model.multi_modal_projector.",
    ],
    ..ModelLayout::LLAMA
};

#[register_model("GemmaForCausalLM", config = gemma)]
pub struct Gemma(DecoderModelForCausalLM<GemmaDecoderLayer, GemmaRmsNorm>);

#[register_model("Gemma2ForCausalLM", config = gemma)]
pub struct Gemma2(DecoderModelForCausalLM<Gemma2DecoderLayer, GemmaRmsNorm>);

#[register_model("Gemma3ForCausalLM", "Gemma3ForConditionalGeneration", config = gemma3, layout = GEMMA3_LAYOUT)]
pub struct Gemma3(DecoderModelForCausalLM<Gemma2DecoderLayer, GemmaRmsNorm>);
