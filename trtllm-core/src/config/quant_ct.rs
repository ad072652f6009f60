//! compressed-tensors (`quant_method: compressed-tensors`, llm-compressor / Neural Magic / Red Hat
//! checkpoints): the float-quantized FP8 schemes, and the `re:` patterns of its `ignore` lists.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{field, typed, Fp8Scales, Ignore, QuantConfig, WeightQuant};
use crate::Result;

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCt {
    format: Option<String>,
    config_groups: BTreeMap<String, RawGroup>,
    ignore: Vec<String>,
    kv_cache_scheme: Option<Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawGroup {
    targets: Vec<String>,
    weights: Option<RawArgs>,
    input_activations: Option<RawArgs>,
    output_activations: Option<Value>,
}

#[derive(Deserialize, Default, Clone, PartialEq, Debug)]
#[serde(default)]
struct RawArgs {
    num_bits: Option<u32>,
    #[serde(rename = "type")]
    kind: Option<String>,
    symmetric: Option<bool>,
    strategy: Option<String>,
    dynamic: Option<Value>,
    group_size: Option<Value>,
    block_structure: Option<Value>,
}

fn block_of(v: &Option<Value>) -> Option<(usize, usize)> {
    let a = v.as_ref()?.as_array()?;
    match a.as_slice() {
        [r, c] => Some((r.as_u64()? as usize, c.as_u64()? as usize)).filter(|(r, c)| *r > 0 && *c > 0),
        _ => None,
    }
}

pub(super) fn compressed_tensors(q: &Value, file: &Path) -> Result<QuantConfig> {
    let raw: RawCt = typed(q, file, "compressed-tensors")?;
    let fmt = raw.format.as_deref().unwrap_or("float-quantized");
    if !matches!(fmt, "float-quantized" | "naive-quantized") {
        return Err(field(
            file,
            "format",
            format!(
                "compressed-tensors format `{fmt}` is not supported (float-quantized FP8 only; {})",
                super::SUPPORTED
            ),
        ));
    }
    if raw.config_groups.is_empty() {
        return Err(field(file, "config_groups", "missing or empty"));
    }
    let mut scheme: Option<(String, RawArgs)> = None;
    let mut static_input = false;
    for (name, g) in &raw.config_groups {
        let f = |k: &str| format!("config_groups.{name}.{k}");
        if !g.targets.iter().any(|t| t == "Linear") {
            return Err(field(
                file,
                &f("targets"),
                format!("{:?}: only groups targeting `Linear` are supported", g.targets),
            ));
        }
        if g.output_activations.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(field(
                file,
                &f("output_activations"),
                "output activation quantization is not supported",
            ));
        }
        let w = g
            .weights
            .clone()
            .ok_or_else(|| field(file, &f("weights"), "missing (weight quantization required)"))?;
        if w.num_bits != Some(8) || w.kind.as_deref() != Some("float") {
            return Err(field(
                file,
                &f("weights"),
                format!(
                    "num_bits {:?} type {:?}: only 8-bit float (FP8 E4M3) weights are supported",
                    w.num_bits, w.kind
                ),
            ));
        }
        if w.symmetric == Some(false) {
            return Err(field(file, &f("weights.symmetric"), "asymmetric FP8 weights are not supported"));
        }
        if w.dynamic.as_ref().is_some_and(|d| d != &Value::Bool(false)) {
            return Err(field(file, &f("weights.dynamic"), "dynamic weight quantization is not supported"));
        }
        if let Some(a) = &g.input_activations {
            if a.num_bits != Some(8) || a.kind.as_deref() != Some("float") {
                return Err(field(
                    file,
                    &f("input_activations"),
                    "only 8-bit float input activations are supported",
                ));
            }
            static_input |= a.dynamic.as_ref() == Some(&Value::Bool(false));
        }
        if let Some((first, prev)) = &scheme {
            if prev != &w {
                return Err(field(
                    file,
                    &f("weights"),
                    format!("differs from group `{first}`: one weight scheme per model is supported"),
                ));
            }
        } else {
            scheme = Some((name.clone(), w));
        }
    }
    let Some((gname, w)) = scheme else { return Err(field(file, "config_groups", "no group")) };
    let scales = match w.strategy.as_deref() {
        Some("tensor") => Fp8Scales::Tensor,
        Some("channel") => Fp8Scales::Channel,
        Some("block") => match block_of(&w.block_structure) {
            Some((rows, cols)) => Fp8Scales::Block { rows, cols, inv_name: false },
            None => {
                return Err(field(
                    file,
                    &format!("config_groups.{gname}.weights.block_structure"),
                    "expected two positive sizes for strategy `block`",
                ))
            }
        },
        other => {
            return Err(field(
                file,
                &format!("config_groups.{gname}.weights.strategy"),
                format!("{other:?} is not supported (tensor, channel, block)"),
            ))
        }
    };
    let mut unused_leaves = vec![];
    if static_input {
        unused_leaves.push("input_scale".to_string());
    }
    if raw.kv_cache_scheme.as_ref().is_some_and(|v| !v.is_null()) {
        // FP8 KV-cache scales: the KV cache stays in the activation dtype, so they go unread.
        unused_leaves.extend(["k_scale".to_string(), "v_scale".to_string()]);
    }
    let ignore = raw
        .ignore
        .iter()
        .map(|s| match s.strip_prefix("re:") {
            Some(r) => Ignore::Regex(r.to_string()),
            None => Ignore::Name(s.clone()),
        })
        .collect();
    Ok(QuantConfig {
        method: "compressed-tensors".into(),
        weight: WeightQuant::Fp8(scales),
        ignore,
        unused_leaves,
    })
}

/// Python `re.match(pattern, s)` for the subset ignore lists use: literals, `\.` (and other
/// escaped literals), `.`, `.*`, `.+`, a trailing `$`, and `a|b` alternatives at the top level.
/// A pattern outside the subset matches nothing (the module stays quantized and, if it is not
/// stored quantized, validation reports it by name).
pub(super) fn regex_match(pattern: &str, s: &str) -> bool {
    pattern.split('|').any(|alt| {
        let (alt, anchored) = match alt.strip_suffix('$') {
            Some(a) => (a, true),
            None => (alt, false),
        };
        let mut toks: Vec<(Option<char>, bool)> = vec![]; // (literal or any, repeated `*`)
        let mut chars = alt.chars().peekable();
        while let Some(c) = chars.next() {
            let tok = match c {
                '\\' => match chars.next() {
                    Some(e) => Some(e),
                    None => return false,
                },
                '.' => None,
                '*' | '+' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '^' => return false,
                c => Some(c),
            };
            match chars.peek() {
                Some('*') => {
                    chars.next();
                    toks.push((tok, true));
                }
                Some('+') => {
                    chars.next();
                    toks.push((tok, false));
                    toks.push((tok, true));
                }
                _ => toks.push((tok, false)),
            }
        }
        matches(&toks, &s.chars().collect::<Vec<_>>(), anchored)
    })
}

fn matches(toks: &[(Option<char>, bool)], s: &[char], anchored: bool) -> bool {
    let Some((&(t, star), rest)) = toks.split_first() else { return !anchored || s.is_empty() };
    let ok = |c: char| t.is_none_or(|l| l == c);
    if star {
        (0..=s.len()).take_while(|&i| i == 0 || ok(s[i - 1])).any(|i| matches(rest, &s[i..], anchored))
    } else {
        s.first().is_some_and(|&c| ok(c)) && matches(rest, &s[1..], anchored)
    }
}
