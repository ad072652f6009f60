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
        return with_errors(item, cx.check().err().unwrap_or_else(|| syn::Error::new(proc_macro2::Span::call_site(), "invalid input")));
    };
    validate::validate(&mut cx, &layer);
    match cx.check() {
        Ok(()) => codegen::codegen(&layer, stripped),
        Err(e) => with_errors(quote::ToTokens::into_token_stream(stripped), e),
    }
}

#[cfg(test)]
mod tests;
