//! `#[register_model]`: parse -> validate -> codegen.

mod codegen;
mod parse;
mod validate;

use proc_macro2::TokenStream;

use crate::ctxt::{with_errors, Ctxt};

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let parsed = parse::parse(&mut cx, args, item.clone());
    if let Some(model) = &parsed {
        validate::validate(&mut cx, model);
    }
    match (cx.check(), parsed) {
        (Ok(()), Some(model)) => codegen::codegen(&model),
        (Err(e), _) => with_errors(item, e),
        (Ok(()), None) => with_errors(item, syn::Error::new(proc_macro2::Span::call_site(), "invalid input")),
    }
}

#[cfg(test)]
mod tests;
