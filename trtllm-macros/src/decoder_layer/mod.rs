//! `#[decoder_layer]`: parse -> validate -> codegen.

mod codegen;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::ctxt::{with_errors, Ctxt};

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed = parse::parse(&mut cx, args, item.clone());
    let Some((layer, stripped)) = parsed else {
        let err = cx
            .check()
            .err()
            .unwrap_or_else(|| syn::Error::new(proc_macro2::Span::call_site(), "invalid input"));
        return with_errors(strip_layer_attrs(item), err);
    };
    validate::validate(&mut cx, &layer);
    match cx.check() {
        Ok(()) => codegen::codegen(&layer, stripped),
        Err(e) => with_errors(quote::ToTokens::into_token_stream(stripped), e),
    }
}

/// The item with every `#[layer]` attribute removed (so an error on the item does not also
/// produce "cannot find attribute `layer`").
fn strip_layer_attrs(item: TokenStream) -> TokenStream {
    match syn::parse2::<syn::ItemStruct>(item.clone()) {
        Ok(mut s) => {
            for f in s.fields.iter_mut() {
                f.attrs.retain(|a| !a.path().is_ident("layer"));
            }
            quote::ToTokens::into_token_stream(s)
        }
        Err(_) => item,
    }
}

#[cfg(test)]
mod tests;
