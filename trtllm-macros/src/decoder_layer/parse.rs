//! Parse the struct and its `#[layer(...)]` attributes into plain data.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;

use crate::ctxt::Ctxt;

/// Where a field sits in the block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    InputNorm,
    Attention,
    PostAttentionNorm,
    PreMlpNorm,
    Mlp,
    PostMlpNorm,
    /// The MLP's own input norm in a parallel block (GPT-NeoX, Falcon's new decoder):
    /// `x + attn(input_norm(x)) + mlp(parallel_mlp_norm(x))`.
    ParallelMlpNorm,
}

impl Role {
    pub const ALL: [(&'static str, Role); 7] = [
        ("input_norm", Role::InputNorm),
        ("attention", Role::Attention),
        ("post_attention_norm", Role::PostAttentionNorm),
        ("pre_mlp_norm", Role::PreMlpNorm),
        ("mlp", Role::Mlp),
        ("post_mlp_norm", Role::PostMlpNorm),
        ("parallel_mlp_norm", Role::ParallelMlpNorm),
    ];
}

pub struct LayerField {
    pub ident: syn::Ident,
    pub ty: syn::Type,
    pub role: Role,
    /// The checkpoint name of this field (the field name unless `hf = "..."`).
    pub hf: String,
    /// The token to point at for errors about the HF name.
    pub hf_span: Span,
    /// `names = EXPR`: the checkpoint names of the layer's inner tensors (`Named::Names`).
    pub names: Option<syn::Expr>,
}

pub struct LayerStruct {
    pub ident: syn::Ident,
    pub generics: syn::Generics,
    pub fields: Vec<LayerField>,
    /// Some field's attribute failed to parse: whole-struct checks would only add noise.
    pub had_field_errors: bool,
}

/// Parse; returns the IR and the struct with our attributes removed.
pub fn parse(cx: &mut Ctxt, args: TokenStream, item: TokenStream) -> Option<(LayerStruct, syn::ItemStruct)> {
    if !args.is_empty() {
        cx.error_spanned_by(&args, "#[decoder_layer] takes no arguments");
    }
    let mut item: syn::ItemStruct = match syn::parse2::<syn::Item>(item) {
        Ok(syn::Item::Struct(s)) => s,
        Ok(other) => {
            cx.push(syn::Error::new(
                item_kind_span(&other),
                "#[decoder_layer] can only be applied to a struct with named fields",
            ));
            return None;
        }
        Err(e) => {
            cx.push(e);
            return None;
        }
    };
    let named = match &mut item.fields {
        syn::Fields::Named(n) => n,
        other => {
            let span = if matches!(other, syn::Fields::Unit) { item.ident.span() } else { other.span() };
            cx.push(syn::Error::new(
                span,
                "#[decoder_layer] needs named fields: one per sub-layer, named as in the HF checkpoint",
            ));
            return None;
        }
    };
    let mut fields = vec![];
    let mut had_field_errors = false;
    for f in named.named.iter_mut() {
        let ident = f.ident.clone()?;
        let mut role = None;
        let mut hf = None;
        let mut names = None;
        let mut found = false;
        for attr in f.attrs.iter().filter(|a| a.path().is_ident("layer")) {
            found = true;
            let res = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("role") {
                    let v: syn::Ident = meta.value()?.parse()?;
                    match Role::ALL.iter().find(|(n, _)| v == n) {
                        Some((_, r)) => role = Some(*r),
                        None => {
                            let known: Vec<&str> = Role::ALL.iter().map(|(n, _)| *n).collect();
                            return Err(syn::Error::new(
                                v.span(),
                                format!("unknown role `{v}`; expected one of: {}", known.join(", ")),
                            ));
                        }
                    }
                    Ok(())
                } else if meta.path.is_ident("hf") {
                    let s: syn::LitStr = meta.value()?.parse()?;
                    if s.value().is_empty() {
                        return Err(syn::Error::new(s.span(), "`hf` name must not be empty"));
                    }
                    hf = Some((s.value(), s.span()));
                    Ok(())
                } else if meta.path.is_ident("names") {
                    names = Some(meta.value()?.parse::<syn::Expr>()?);
                    Ok(())
                } else {
                    let key = meta.path.to_token_stream().to_string().replace(' ', "");
                    Err(meta.error(format!("unknown #[layer] key `{key}`; expected `role`, `hf` or `names`")))
                }
            });
            if let Err(e) = res {
                cx.push(e);
                had_field_errors = true;
            }
        }
        f.attrs.retain(|a| !a.path().is_ident("layer"));
        match role {
            Some(role) => {
                let (hf, hf_span) = hf.unwrap_or_else(|| (ident.to_string(), ident.span()));
                fields.push(LayerField { ident, ty: f.ty.clone(), role, hf, hf_span, names });
            }
            None if found && had_field_errors => {}
            None => {
                had_field_errors = true;
                cx.error_spanned_by(&ident, format!("field `{ident}` needs #[layer(role = ...)]"));
            }
        }
    }
    Some((
        LayerStruct { ident: item.ident.clone(), generics: item.generics.clone(), fields, had_field_errors },
        item,
    ))
}

/// The keyword of a non-struct item (`enum`, `fn`, ...), for the error caret.
fn item_kind_span(item: &syn::Item) -> Span {
    match item {
        syn::Item::Enum(e) => e.enum_token.span,
        syn::Item::Fn(f) => f.sig.fn_token.span,
        syn::Item::Union(u) => u.union_token.span,
        syn::Item::Type(t) => t.type_token.span,
        syn::Item::Trait(t) => t.trait_token.span,
        other => other.span(),
    }
}
