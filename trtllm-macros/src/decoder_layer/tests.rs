//! Expansion snapshots: what `#[decoder_layer]` emits, reviewed as `.snap` files.

use quote::quote;

fn pretty(ts: proc_macro2::TokenStream) -> String {
    match syn::parse2::<syn::File>(ts.clone()) {
        Ok(f) => prettyplease::unparse(&f),
        Err(_) => ts.to_string(),
    }
}

#[test]
fn llama_layer() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct LlamaDecoderLayer {
                #[layer(role = input_norm)] input_layernorm: RmsNorm,
                #[layer(role = attention)] self_attn: Attention,
                #[layer(role = pre_mlp_norm)] post_attention_layernorm: RmsNorm,
                #[layer(role = mlp)] mlp: GatedMlp,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn gemma2_post_norms_and_hf_rename() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct Gemma2DecoderLayer {
                #[layer(role = input_norm)] input_layernorm: GemmaRmsNorm,
                #[layer(role = attention)] self_attn: Attention,
                #[layer(role = post_attention_norm)] post_attention_layernorm: GemmaRmsNorm,
                #[layer(role = pre_mlp_norm)] pre_feedforward_layernorm: GemmaRmsNorm,
                #[layer(role = mlp)] mlp: GatedMlp,
                #[layer(role = post_mlp_norm, hf = "post_feedforward_layernorm")] post_ffn_norm: GemmaRmsNorm,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn parallel_residual_without_pre_mlp_norm() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct ParallelLayer {
                #[layer(role = input_norm)] ln: LayerNorm,
                #[layer(role = attention)] attn: Attention,
                #[layer(role = mlp)] mlp: Mlp,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn post_norm_without_input_norm() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct Olmo2DecoderLayer {
                #[layer(role = attention)] self_attn: Attention<AllHeadsRmsNorm>,
                #[layer(role = post_attention_norm)] post_attention_layernorm: RmsNorm,
                #[layer(role = mlp)] mlp: GatedMlp,
                #[layer(role = post_mlp_norm)] post_feedforward_layernorm: RmsNorm,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn parallel_residual_with_its_own_mlp_norm() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct GptNeoXLayer {
                #[layer(role = input_norm)] input_layernorm: LayerNorm,
                #[layer(role = attention)] attention: Attention,
                #[layer(role = parallel_mlp_norm)] post_attention_layernorm: LayerNorm,
                #[layer(role = mlp)] mlp: Mlp,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn parallel_mlp_norm_needs_a_parallel_block() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct Bad {
                #[layer(role = input_norm)] a: LayerNorm,
                #[layer(role = attention)] attn: Attention,
                #[layer(role = pre_mlp_norm)] b: LayerNorm,
                #[layer(role = parallel_mlp_norm)] c: LayerNorm,
                #[layer(role = mlp)] mlp: Mlp,
            }
        },
    )
    .to_string();
    assert!(out.contains("needs an `input_norm` and no `pre_mlp_norm`"), "{out}");
}

#[test]
fn names_build_through_named() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct Gpt2Block {
                #[layer(role = input_norm)] ln_1: LayerNorm,
                #[layer(role = attention, names = GPT2_ATTN)] attn: Attention,
                #[layer(role = pre_mlp_norm)] ln_2: LayerNorm,
                #[layer(role = mlp, names = MlpNames { fc: "c_fc", ..MlpNames::LLAMA })] mlp: Mlp,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn errors_are_collected() {
    let out = super::expand(
        quote!(),
        quote! {
            pub struct Broken {
                #[layer(role = attention)] a: Attention,
                #[layer(role = attention)] b: Attention,
                #[layer(role = pre_mlp_norm, hf = "a")] c: RmsNorm,
            }
        },
    );
    let s = out.to_string();
    assert!(s.contains("a decoder layer has one `attention` field; `b` is a second"), "{s}");
    assert!(s.contains("missing a field with #[layer(role = mlp)]"), "{s}");
    assert!(s.contains("HF name `a` is used twice"), "{s}");
}
