//! Whole-struct checks: required roles present, single-use roles unique, HF names unique.

use super::parse::{LayerStruct, Role};
use crate::ctxt::Ctxt;

pub fn validate(cx: &mut Ctxt, layer: &LayerStruct) {
    for (name, role) in Role::ALL {
        if layer.had_field_errors {
            break;
        }
        let with: Vec<_> = layer.fields.iter().filter(|f| f.role == role).collect();
        for dup in with.iter().skip(1) {
            cx.error_spanned_by(
                &dup.ident,
                format!("a decoder layer has one `{name}` field; `{}` is a second", dup.ident),
            );
        }
        let required = matches!(role, Role::InputNorm | Role::Attention | Role::Mlp);
        if required && with.is_empty() {
            cx.error_spanned_by(&layer.ident, format!("missing a field with #[layer(role = {name})]"));
        }
    }
    for (i, f) in layer.fields.iter().enumerate() {
        if let Some(first) = layer.fields[..i].iter().find(|g| g.hf == f.hf) {
            cx.push(syn::Error::new(
                f.hf_span,
                format!("HF name `{}` is used twice (fields `{}` and `{}`)", f.hf, first.ident, f.ident),
            ));
        }
    }
}
