//! Architecture strings: non-empty, distinct, identifier-like.

use super::parse::RegisterModel;
use crate::ctxt::Ctxt;

pub fn validate(cx: &mut Ctxt, m: &RegisterModel) {
    for (i, a) in m.archs.iter().enumerate() {
        let v = a.value();
        if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            cx.error_spanned_by(
                a,
                format!("`{v}` is not an HF architecture name (letters, digits and `_` only)"),
            );
        }
        if m.archs[..i].iter().any(|b| b.value() == v) {
            cx.error_spanned_by(a, format!("architecture `{v}` is listed twice"));
        }
    }
    if m.archs.is_empty() && !m.item.ident.to_string().is_empty() {
        // Reported by `parse` when there were no arguments at all; here only keys were given.
        if m.config.is_some() || m.layout.is_some() {
            cx.error_spanned_by(&m.item.ident, "#[register_model] needs at least one architecture string");
        }
    }
}
