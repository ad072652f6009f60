//! Emit `CausalLM` for the newtype (delegating to the base) and its `inventory` entry.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::parse::RegisterModel;

pub fn codegen(m: &RegisterModel) -> TokenStream {
    let item = &m.item;
    let ident = &item.ident;
    let inner = &m.inner;
    let archs = &m.archs;
    let layout = match &m.layout {
        Some(e) => quote!(#e),
        None => quote!(::trtllm_core::model::ModelLayout::LLAMA),
    };
    let adapt = match &m.config {
        Some(p) => quote!(::trtllm_core::model::AdaptResult::into_result(#p(__cfg))),
        None => quote!(let _ = __cfg; ::core::result::Result::Ok(())),
    };
    let lm = quote_spanned!(inner.span()=> <#inner as ::trtllm_core::model::CausalLM>);
    let build = quote_spanned!(inner.span()=>
        <#inner as ::trtllm_core::model::BuildCausalLM>::build(__cfg, __vb, __layout)?);
    quote! {
        #item

        #[automatically_derived]
        impl ::trtllm_core::model::CausalLM for #ident {
            fn config(&self) -> &::trtllm_core::config::ModelConfig {
                #lm::config(&self.0)
            }
            fn kv_layout(&self) -> ::trtllm_core::batch::KvLayout {
                #lm::kv_layout(&self.0)
            }
            fn forward(
                &self,
                __batch: &::trtllm_core::batch::ForwardBatch,
                __kv: &mut ::trtllm_core::batch::KvCache,
                __comm: &dyn ::trtllm_core::dist::Communicator,
                __hidden: ::core::option::Option<&mut ::std::vec::Vec<::trtllm_core::Tensor>>,
            ) -> ::trtllm_core::Result<::trtllm_core::Tensor> {
                #lm::forward(&self.0, __batch, __kv, __comm, __hidden)
            }
            fn stage_layers(&self) -> ::core::ops::Range<usize> {
                #lm::stage_layers(&self.0)
            }
            fn forward_stage(
                &self,
                __batch: &::trtllm_core::batch::ForwardBatch,
                __kv: &mut ::trtllm_core::batch::KvCache,
                __comm: &dyn ::trtllm_core::dist::Communicator,
                __input: ::trtllm_core::model::StageInput,
            ) -> ::trtllm_core::Result<::trtllm_core::model::StageOutput> {
                #lm::forward_stage(&self.0, __batch, __kv, __comm, __input)
            }
        }

        const _: () = {
            fn __adapt(__cfg: &mut ::trtllm_core::config::ModelConfig) -> ::trtllm_core::Result<()> {
                #adapt
            }
            fn __build(
                __cfg: &::trtllm_core::config::ModelConfig,
                __vb: &::trtllm_core::weights::VarBuilder<'_>,
                __layout: &::trtllm_core::model::ModelLayout,
            ) -> ::trtllm_core::Result<::std::boxed::Box<dyn ::trtllm_core::model::CausalLM>> {
                ::core::result::Result::Ok(::std::boxed::Box::new(#ident(#build)))
            }
            ::trtllm_core::__private::inventory::submit! {
                ::trtllm_core::model::ModelEntry {
                    architectures: &[#(#archs),*],
                    type_name: ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ident)),
                    layout: #layout,
                    adapt_config: __adapt,
                    build: __build,
                }
            }
        };
    }
}
