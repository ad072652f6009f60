//! Parse `#[register_model("Arch", ..., config = path, layout = expr)]` and its newtype.

use proc_macro2::TokenStream;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::Token;

use crate::ctxt::Ctxt;

pub struct RegisterModel {
    pub archs: Vec<syn::LitStr>,
    pub config: Option<syn::Path>,
    pub layout: Option<syn::Expr>,
    pub item: syn::ItemStruct,
    /// The wrapped model base type.
    pub inner: syn::Type,
}

/// One argument: a string literal, `key = value`, or anything else (reported).
enum Arg {
    Arch(syn::LitStr),
    KeyValue(syn::Ident, syn::Expr),
    Other(syn::Expr),
}

impl Parse for Arg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        if input.peek(syn::LitStr) {
            return Ok(Arg::Arch(input.parse()?));
        }
        if input.peek(syn::Ident) && input.peek2(Token![=]) {
            let key: syn::Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            return Ok(Arg::KeyValue(key, input.parse()?));
        }
        Ok(Arg::Other(input.parse()?))
    }
}

struct Args(Punctuated<Arg, Token![,]>);

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        Ok(Args(Punctuated::parse_terminated(input)?))
    }
}

pub fn parse(cx: &mut Ctxt, args: TokenStream, item: TokenStream) -> Option<RegisterModel> {
    let (mut archs, mut config, mut layout) = (vec![], None, None);
    match syn::parse2::<Args>(args.clone()) {
        Ok(Args(list)) => {
            for arg in list {
                match arg {
                    Arg::Arch(s) => archs.push(s),
                    Arg::KeyValue(k, v) if k == "config" => match v {
                        syn::Expr::Path(p) => config = Some(p.path),
                        other => {
                            cx.error_spanned_by(&other, "`config` takes the path of a `fn(&mut ModelConfig)`")
                        }
                    },
                    Arg::KeyValue(k, v) if k == "layout" => layout = Some(v),
                    Arg::KeyValue(k, _) => cx.error_spanned_by(
                        &k,
                        format!("unknown #[register_model] key `{k}`; expected `config` or `layout`"),
                    ),
                    Arg::Other(e) => cx.error_spanned_by(
                        &e,
                        "architecture names must be string literals, e.g. \"LlamaForCausalLM\"",
                    ),
                }
            }
        }
        Err(e) => cx.push(e),
    }
    let item: syn::ItemStruct = match syn::parse2::<syn::Item>(item) {
        Ok(syn::Item::Struct(s)) => s,
        Ok(other) => {
            let span: Box<dyn quote::ToTokens> = match &other {
                syn::Item::Enum(e) => Box::new(e.enum_token),
                syn::Item::Fn(f) => Box::new(f.sig.fn_token),
                syn::Item::Union(u) => Box::new(u.union_token),
                _ => Box::new(other.clone()),
            };
            cx.error_spanned_by(span, "#[register_model] must be applied to a newtype struct, e.g. `pub struct Llama(DecoderModelForCausalLM<LlamaDecoderLayer>);`");
            return None;
        }
        Err(e) => {
            cx.push(e);
            return None;
        }
    };
    let inner = match &item.fields {
        syn::Fields::Unnamed(f) if f.unnamed.len() == 1 => f.unnamed[0].ty.clone(),
        other => {
            let span = if matches!(other, syn::Fields::Unit) { item.ident.span() } else { other.span() };
            cx.push(syn::Error::new(span, "#[register_model] needs a newtype with one field: the model base, e.g. `(DecoderModelForCausalLM<MyLayer>)`"));
            return None;
        }
    };
    if args.is_empty() {
        cx.error_spanned_by(&item.ident, "#[register_model] needs at least one architecture string, e.g. #[register_model(\"LlamaForCausalLM\")]");
    }
    Some(RegisterModel { archs, config, layout, item, inner })
}
