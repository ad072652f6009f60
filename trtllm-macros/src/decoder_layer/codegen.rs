//! Emit `impl DecoderLayer`: `build` (each field from its HF-named sub-builder, with its
//! `names` when given) and
//! `forward_deferred` (the residual wiring its roles describe, the last residual add handed to
//! the next layer's input norm), with `forward` as the add-it-now wrapper. Infallible: every check lives in `validate`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{quote, quote_spanned, ToTokens};
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

/// `ts` with every token reported at `at` (name resolution unchanged).
fn located_at(ts: TokenStream, at: Span) -> TokenStream {
    ts.into_iter()
        .map(|mut t| {
            if let TokenTree::Group(g) = &t {
                let mut inner = Group::new(g.delimiter(), located_at(g.stream(), at));
                inner.set_span(g.span().located_at(at));
                t = TokenTree::Group(inner);
            } else {
                t.set_span(t.span().located_at(at));
            }
            t
        })
        .collect()
}

pub fn codegen(layer: &LayerStruct, item: syn::ItemStruct) -> TokenStream {
    let ident = &layer.ident;
    let (impl_g, ty_g, where_g) = layer.generics.split_for_impl();
    let builds = layer.fields.iter().map(|f| {
        let (name, ty, hf) = (&f.ident, &f.ty, &f.hf);
        match &f.names {
            None => quote_spanned!(ty.span()=> #name: <#ty as ::trtllm_core::layers::Module>::build(__cx, &__vb.pp(#hf))?),
            // All of it located at the names (the type too, so a type without names is one error
            // there, not a second at the type); names of another layer type are reported there.
            Some(names) => {
                let at = names.span();
                let ty = located_at(ty.to_token_stream(), at);
                quote_spanned!(at=>
                    #name: <#ty as ::trtllm_core::layers::Named>::build_named(__cx, &__vb.pp(#hf), &(#names))?)
            }
        }
    });
    // Roles validated present: attention, mlp.
    let (Some(attn), Some(mlp)) = (field(layer, Role::Attention), field(layer, Role::Mlp)) else {
        return quote!(#item);
    };
    let input_norm = field(layer, Role::InputNorm);
    // `(__x, __h)`: the residual stream with the previous layer's deferred add applied, and the
    // attention's input. With an input norm the add is fused with it.
    let entry = match input_norm {
        Some(n) => {
            let h = call(n, quote!(&__x));
            let (in_ident, in_ty) = (&n.ident, &n.ty);
            let h_fused = quote_spanned!(in_ty.span()=>
                <#in_ty as ::trtllm_core::layers::NormLayer>::forward_residual(&self.#in_ident, &__d, &__x)?);
            quote! {
                let (__x, __h) = match __pending {
                    ::core::option::Option::Some(__d) => #h_fused,
                    ::core::option::Option::None => {
                        let __h = #h;
                        (__x, __h)
                    }
                };
            }
        }
        // Post-norm block (OLMo 2): the attention reads the residual stream itself.
        None => quote! {
            let __x = match __pending {
                ::core::option::Option::Some(__d) => ::trtllm_core::ops::add(&__x, &__d)?,
                ::core::option::Option::None => __x,
            };
            let __h = __x.clone();
        },
    };
    let a = call(attn, quote!(&__h, __cx));
    let post_attn = field(layer, Role::PostAttentionNorm).map(|f| {
        let c = call(f, quote!(&__a));
        quote!(let __a = #c;)
    });
    let post_mlp = field(layer, Role::PostMlpNorm).map(|f| {
        let c = call(f, quote!(&__m));
        quote!(let __m = #c;)
    });
    let m = call(mlp, quote!(&__h, __cx));
    let body = match (field(layer, Role::PreMlpNorm), input_norm) {
        // Sequential pre-norm block: x += attn(norm1(x)); x += mlp(norm2(x)).
        (Some(pre), _) => {
            let (pre_ident, pre_ty) = (&pre.ident, &pre.ty);
            let fused = quote_spanned!(pre_ty.span()=>
                <#pre_ty as ::trtllm_core::layers::NormLayer>::forward_residual(&self.#pre_ident, &__a, &__x)?);
            quote! {
                let (__x, __h) = #fused;
                let __m = #m;
                #post_mlp
                ::core::result::Result::Ok((__x, ::core::option::Option::Some(__m)))
            }
        }
        // Post-norm block: x += post_attn_norm(attn(x)); x += post_mlp_norm(mlp(x)).
        (None, None) => quote! {
            let __x = ::trtllm_core::ops::add(&__x, &__a)?;
            let __h = __x.clone();
            let __m = #m;
            #post_mlp
            ::core::result::Result::Ok((__x, ::core::option::Option::Some(__m)))
        },
        // Parallel residual: x + attn(norm(x)) + mlp(norm(x)), or mlp(parallel_mlp_norm(x)).
        (None, Some(_)) => {
            let own = field(layer, Role::ParallelMlpNorm).map(|f| {
                let c = call(f, quote!(&__x));
                quote!(let __h = #c;)
            });
            quote! {
                #own
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
                #entry
                let __a = #a;
                #post_attn
                #body
            }
        }
    }
}
