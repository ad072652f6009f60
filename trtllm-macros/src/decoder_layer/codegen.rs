//! Emit `impl DecoderLayer`: `build` (each field from its HF-named sub-builder) and
//! `forward_deferred` (the residual wiring its roles describe, each norm handed to the layer after
//! it as a `NormedInput`, the last residual add handed to the next layer's input norm), with
//! `forward` as the add-it-now wrapper. Infallible: every check lives in `validate`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::{LayerField, LayerStruct, Role};

fn field(layer: &LayerStruct, role: Role) -> Option<&LayerField> {
    layer.fields.iter().find(|f| f.role == role)
}

/// `<Ty as Trait>::forward(&self.field, args...)`, spanned at the field type so a type that is
/// not a layer of that role is reported there.
fn call(f: &LayerField, args: TokenStream) -> TokenStream {
    let (ident, ty) = (&f.ident, &f.ty);
    let tr = match f.role {
        Role::Attention => quote_spanned!(ty.span()=> ::trtllm_core::layers::AttentionLayer),
        Role::Mlp => quote_spanned!(ty.span()=> ::trtllm_core::layers::MlpLayer),
        _ => quote_spanned!(ty.span()=> ::trtllm_core::layers::NormLayer),
    };
    quote_spanned!(ty.span()=> <#ty as #tr>::forward(&self.#ident, #args)?)
}

/// `<Ty as Trait>::forward_normed(&self.field, input, __cx)`: the layer with its norm in front.
fn call_normed(f: &LayerField, input: TokenStream) -> TokenStream {
    let (ident, ty) = (&f.ident, &f.ty);
    let tr = match f.role {
        Role::Attention => quote_spanned!(ty.span()=> ::trtllm_core::layers::AttentionLayer),
        _ => quote_spanned!(ty.span()=> ::trtllm_core::layers::MlpLayer),
    };
    quote_spanned!(ty.span()=> <#ty as #tr>::forward_normed(&self.#ident, #input, __cx)?)
}

pub fn codegen(layer: &LayerStruct, item: syn::ItemStruct) -> TokenStream {
    let ident = &layer.ident;
    let (impl_g, ty_g, where_g) = layer.generics.split_for_impl();
    let builds = layer.fields.iter().map(|f| {
        let (name, ty, hf) = (&f.ident, &f.ty, &f.hf);
        quote_spanned!(ty.span()=> #name: <#ty as ::trtllm_core::layers::Module>::build(__cx, &__vb.pp(#hf))?)
    });
    // Roles validated present: input_norm, attention, mlp.
    let (Some(input_norm), Some(attn), Some(mlp)) =
        (field(layer, Role::InputNorm), field(layer, Role::Attention), field(layer, Role::Mlp))
    else {
        return quote!(#item);
    };
    // The layer's input before its norm, the previous layer's residual add still pending: the
    // first projection may fuse both (`NormedInput`).
    let normed = |norm: &LayerField, delta: TokenStream| {
        let (ident, ty) = (&norm.ident, &norm.ty);
        quote_spanned!(ty.span()=> ::trtllm_core::layers::NormedInput::new::<#ty>(&self.#ident, __x, #delta))
    };
    let input = normed(input_norm, quote!(__pending));
    let post_attn = field(layer, Role::PostAttentionNorm).map(|f| {
        let c = call(f, quote!(&__a));
        quote!(let __a = #c;)
    });
    let post_mlp = field(layer, Role::PostMlpNorm).map(|f| {
        let c = call(f, quote!(&__m));
        quote!(let __m = #c;)
    });
    let body = match field(layer, Role::PreMlpNorm) {
        // Sequential pre-norm block: x += attn(norm1(x)); x += mlp(norm2(x)).
        Some(pre) => {
            let a = call_normed(attn, input);
            let m = call_normed(mlp, normed(pre, quote!(::core::option::Option::Some(__a))));
            quote! {
                let (__x, __a) = #a;
                #post_attn
                let (__x, __m) = #m;
                #post_mlp
                ::core::result::Result::Ok((__x, ::core::option::Option::Some(__m)))
            }
        }
        // Parallel residual: x + attn(norm(x)) + mlp(norm(x)); both read the one normed input.
        None => {
            let a = call(attn, quote!(&__h, __cx));
            let m = call(mlp, quote!(&__h, __cx));
            quote! {
                let (__x, __h) = #input.materialize()?;
                let __a = #a;
                #post_attn
                let __m = #m;
                #post_mlp
                ::core::result::Result::Ok((::trtllm_core::ops::add(&__x, &__a)?, ::core::option::Option::Some(__m)))
            }
        }
    };
    quote! {
        #item

        #[automatically_derived]
        impl #impl_g ::trtllm_core::model::DecoderLayer for #ident #ty_g #where_g {
            fn build(
                __cx: &::trtllm_core::layers::BuildCtx<'_>,
                __vb: &::trtllm_core::weights::VarBuilder<'_>,
            ) -> ::trtllm_core::Result<Self> {
                ::core::result::Result::Ok(Self { #(#builds,)* })
            }

            fn forward(
                &self,
                __x: ::trtllm_core::Tensor,
                __cx: &mut ::trtllm_core::layers::ForwardCtx<'_>,
            ) -> ::trtllm_core::Result<::trtllm_core::Tensor> {
                match <Self as ::trtllm_core::model::DecoderLayer>::forward_deferred(self, __x, ::core::option::Option::None, __cx)? {
                    (__y, ::core::option::Option::Some(__d)) => ::trtllm_core::ops::add(&__y, &__d),
                    (__y, ::core::option::Option::None) => ::core::result::Result::Ok(__y),
                }
            }

            fn forward_deferred(
                &self,
                __x: ::trtllm_core::Tensor,
                __pending: ::core::option::Option<::trtllm_core::Tensor>,
                __cx: &mut ::trtllm_core::layers::ForwardCtx<'_>,
            ) -> ::trtllm_core::Result<(::trtllm_core::Tensor, ::core::option::Option<::trtllm_core::Tensor>)> {
                #body
            }
        }
    }
}
