//! Whole-struct checks: required roles present (`attention`, `mlp`; a block without `input_norm`
//! is post-norm), single-use roles unique, `parallel_mlp_norm` only in a parallel block, HF names
//! unique.

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
        let required = matches!(role, Role::Attention | Role::Mlp);
        if required && with.is_empty() {
            cx.error_spanned_by(&layer.ident, format!("missing a field with #[layer(role = {name})]"));
        }
    }
    let has = |r: Role| layer.fields.iter().any(|f| f.role == r);
    if let Some(f) = layer.fields.iter().find(|f| f.role == Role::ParallelMlpNorm) {
        if !has(Role::InputNorm) || has(Role::PreMlpNorm) {
            cx.error_spanned_by(
                &f.ident,
                "`parallel_mlp_norm` is the MLP's norm of a parallel block: it needs an `input_norm` and no `pre_mlp_norm`",
            );
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
