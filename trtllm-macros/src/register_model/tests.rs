//! Expansion snapshots: what `#[register_model]` emits.

use quote::quote;

fn pretty(ts: proc_macro2::TokenStream) -> String {
    match syn::parse2::<syn::File>(ts.clone()) {
        Ok(f) => prettyplease::unparse(&f),
        Err(_) => ts.to_string(),
    }
}

#[test]
fn llama_with_alias() {
    let out = super::expand(
        quote!("LlamaForCausalLM", "MistralForCausalLM"),
        quote!(
            pub struct Llama(DecoderModelForCausalLM<LlamaDecoderLayer>);
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn config_and_layout() {
    let out = super::expand(
        quote!("GPT2LMHeadModel", config = gpt2_config, layout = GPT2_LAYOUT),
        quote!(
            pub struct Gpt2(DecoderModelForCausalLM<Gpt2Block, LayerNorm>);
        ),
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn non_literal_and_duplicate() {
    let out = super::expand(
        quote!(ARCH, "A", "A"),
        quote!(
            pub struct M(Base);
        ),
    )
    .to_string();
    assert!(out.contains("architecture names must be string literals"), "{out}");
    assert!(out.contains("architecture `A` is listed twice"), "{out}");
}
