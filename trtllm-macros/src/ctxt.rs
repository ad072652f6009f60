//! Error accumulator: collect every error of a macro invocation, report them together.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

#[derive(Default)]
pub struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    pub fn error_spanned_by<T: ToTokens, M: Display>(&mut self, tokens: T, msg: M) {
        self.errors.push(syn::Error::new_spanned(tokens.into_token_stream(), msg));
    }
    pub fn push(&mut self, err: syn::Error) {
        self.errors.push(err);
    }
    /// All errors combined into one, or `Ok` when there were none.
    pub fn check(self) -> syn::Result<()> {
        let mut iter = self.errors.into_iter();
        let Some(mut first) = iter.next() else { return Ok(()) };
        for e in iter {
            first.combine(e);
        }
        Err(first)
    }
}

/// The item as written (attributes we own stripped) followed by the errors, so one macro error
/// does not cascade into "cannot find type" errors elsewhere.
pub fn with_errors(item: TokenStream, err: syn::Error) -> TokenStream {
    let mut out = item;
    out.extend(err.to_compile_error());
    out
}
