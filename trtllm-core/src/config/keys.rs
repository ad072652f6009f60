//! The keys `config.json` is read by: their historical spellings ([`KEY_ALIASES`]) and the value
//! of every key a config may leave out ([`DEFAULTS`]). Both are applied to the JSON object, in
//! that order, before the typed parse (`parse.rs`); nothing else in the parse defaults a value.
//!
//! Keys not listed here are either required (`hidden_size`, `num_attention_heads`,
//! `num_hidden_layers`, `vocab_size`) or optional with "absent" meaning "off" (`sliding_window`,
//! the softcappings, `query_pre_attn_scalar`, `moe_intermediate_size`, token ids,
//! `torch_dtype`). The parameters inside `rope_scaling` / `rope_parameters` default per scaling
//! kind, next to that kind (`rope.rs`), as HF's `modeling_rope_utils` does.

use serde_json::{Map, Value};

/// Historical spellings of the keys we read: `(canonical, [aliases])`. The first key present
/// wins; the others are dropped so a config that carries two spellings is not ambiguous.
pub const KEY_ALIASES: &[(&str, &[&str])] = &[
    ("hidden_size", &["n_embd", "d_model"]),
    ("intermediate_size", &["n_inner", "ffn_hidden_size"]),
    ("num_hidden_layers", &["n_layer", "num_layers"]),
    ("num_attention_heads", &["n_head"]),
    ("num_key_value_heads", &["num_kv_heads", "n_head_kv"]),
    ("max_position_embeddings", &["n_positions"]),
    ("layer_norm_eps", &["layer_norm_epsilon", "norm_epsilon"]),
    ("hidden_act", &["hidden_activation", "activation_function", "activation"]),
    ("torch_dtype", &["dtype"]),
    ("num_local_experts", &["n_routed_experts"]),
    ("partial_rotary_factor", &["rotary_pct"]),
    ("rope_theta", &["rotary_emb_base"]),
];

/// Every `config.json` key the shared parse reads (canonical spellings; `KEY_ALIASES` lists the
/// others), whatever the architecture. A config adapter reads more (`ModelConfig::extra`).
pub const PARSED_KEYS: &[&str] = &[
    "architectures",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "vocab_size",
    "max_position_embeddings",
    "original_max_position_embeddings",
    "rms_norm_eps",
    "layer_norm_eps",
    "hidden_act",
    "tie_word_embeddings",
    "attention_bias",
    "mlp_bias",
    "sliding_window",
    "use_sliding_window",
    "max_window_layers",
    "layer_types",
    "sliding_window_pattern",
    "query_pre_attn_scalar",
    "attn_logit_softcapping",
    "final_logit_softcapping",
    "partial_rotary_factor",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "rope_local_base_freq",
    "num_local_experts",
    "num_experts",
    "num_experts_per_tok",
    "norm_topk_prob",
    "moe_intermediate_size",
    "bos_token_id",
    "eos_token_id",
    "torch_dtype",
    "quantization_config",
    "text_config",
];

/// What a key left out of `config.json` (absent or `null`) becomes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fallback {
    Bool(bool),
    Int(u64),
    Float(f64),
    Str(&'static str),
    /// The value of another key (with its default, when that key comes earlier in the table).
    Key(&'static str),
    /// `n` times another key.
    Times(u64, &'static str),
    /// One key divided by another, when it divides evenly; else the key stays missing (an
    /// error for `head_dim`).
    Quotient(&'static str, &'static str),
}

/// The RoPE base when `rope_theta` is left out (also `rope.rs`'s, for a non-number value).
pub(crate) const ROPE_THETA: f64 = 10000.0;

/// Every default of the keys we read: `(key, value, what it means)`, applied in this order after
/// the aliases (so `Key` / `Times` / `Quotient` see the canonical spellings).
pub const DEFAULTS: &[(&str, Fallback, &str)] = &[
    ("num_key_value_heads", Fallback::Key("num_attention_heads"), "one KV head per query head"),
    ("head_dim", Fallback::Quotient("hidden_size", "num_attention_heads"), "heads split the hidden size"),
    ("intermediate_size", Fallback::Times(4, "hidden_size"), "GPT-2's MLP width"),
    ("hidden_act", Fallback::Str("silu"), "SiLU, the Llama family's activation"),
    ("max_position_embeddings", Fallback::Int(2048), "the context length (RoPE scalings use it)"),
    ("layer_norm_eps", Fallback::Float(1e-6), "the norm epsilon"),
    ("rms_norm_eps", Fallback::Key("layer_norm_eps"), "the norm epsilon, either spelling"),
    ("partial_rotary_factor", Fallback::Float(1.0), "RoPE rotates every dim of a head"),
    ("rope_theta", Fallback::Float(ROPE_THETA), "the RoPE base"),
    ("tie_word_embeddings", Fallback::Bool(false), "a separate LM head (tied if the files lack it)"),
    ("attention_bias", Fallback::Bool(false), "q/k/v/o projections without bias"),
    ("mlp_bias", Fallback::Bool(false), "MLP projections without bias"),
    ("num_experts", Fallback::Int(0), "a dense MLP"),
    ("num_local_experts", Fallback::Key("num_experts"), "the expert count, either spelling"),
    ("num_experts_per_tok", Fallback::Int(0), "a dense MLP"),
    ("norm_topk_prob", Fallback::Bool(true), "top-k router weights are renormalized"),
];

/// Move every alias to its canonical key (the first spelling present wins; the others go).
pub(super) fn normalize_keys(obj: &mut Map<String, Value>) {
    for (canon, aliases) in KEY_ALIASES {
        for a in *aliases {
            if let Some(val) = obj.remove(*a) {
                let absent = obj.get(*canon).is_none_or(|x| x.is_null());
                if absent && !val.is_null() {
                    obj.insert(canon.to_string(), val);
                }
            }
        }
    }
}

impl Fallback {
    /// The value for a missing key of `obj`, if it can be had.
    fn value(self, obj: &Map<String, Value>) -> Option<Value> {
        let int = |key: &str| obj.get(key).and_then(Value::as_u64);
        match self {
            Fallback::Bool(b) => Some(Value::Bool(b)),
            Fallback::Int(n) => Some(n.into()),
            Fallback::Float(x) => Some(x.into()),
            Fallback::Str(s) => Some(s.into()),
            Fallback::Key(key) => obj.get(key).filter(|v| !v.is_null()).cloned(),
            Fallback::Times(n, key) => int(key).and_then(|v| v.checked_mul(n)).map(Value::from),
            Fallback::Quotient(num, den) => match (int(num), int(den)) {
                (Some(a), Some(b)) if b > 0 && a % b == 0 => Some((a / b).into()),
                _ => None,
            },
        }
    }
}

/// Fill in [`DEFAULTS`] for every key `obj` leaves out or sets to `null`.
pub(super) fn apply_defaults(obj: &mut Map<String, Value>) {
    for &(key, fallback, _) in DEFAULTS {
        if obj.get(key).is_none_or(Value::is_null) {
            match fallback.value(obj) {
                Some(v) => obj.insert(key.to_string(), v),
                None => obj.remove(key),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{json, Value};

    use crate::config::{Activation, ModelConfig};

    fn parse(v: Value) -> crate::Result<ModelConfig> {
        ModelConfig::from_hf_value(&v, Path::new("config.json"))
    }

    fn minimal() -> Value {
        json!({
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": 16,
            "num_attention_heads": 2,
            "num_hidden_layers": 1,
            "vocab_size": 32,
        })
    }

    #[test]
    fn a_minimal_config_gets_every_default() {
        let cfg = parse(minimal()).expect("config");
        assert_eq!(cfg.num_key_value_heads, 2);
        assert_eq!(cfg.head_dim, 8);
        assert_eq!(cfg.intermediate_size, 64);
        assert_eq!(cfg.hidden_act, Activation::Silu);
        assert_eq!(cfg.max_position_embeddings, 2048);
        assert_eq!(cfg.norm_eps, 1e-6);
        assert_eq!((cfg.rope.theta, cfg.rope.rotary_dim), (10000.0, 8));
        assert!(!cfg.tie_word_embeddings);
        assert!(!cfg.arch.qkv_bias && !cfg.arch.o_bias && !cfg.arch.mlp_bias);
        assert_eq!((cfg.num_experts, cfg.num_experts_per_tok), (0, 0));
        assert!(cfg.norm_topk_prob);
    }

    #[test]
    fn defaults_that_follow_other_keys() {
        let mut v = minimal();
        v["layer_norm_epsilon"] = json!(1e-5);
        v["num_experts"] = json!(4);
        v["max_position_embeddings"] = Value::Null;
        let cfg = parse(v.clone()).expect("config");
        assert_eq!((cfg.norm_eps, cfg.num_experts, cfg.max_position_embeddings), (1e-5, 4, 2048));
        v["rms_norm_eps"] = json!(1e-4);
        v["num_local_experts"] = json!(8);
        let cfg = parse(v).expect("config");
        assert_eq!((cfg.norm_eps, cfg.num_experts), (1e-4, 8));
    }

    #[test]
    fn head_dim_is_required_when_the_heads_do_not_split_the_hidden_size() {
        let mut v = minimal();
        v["num_attention_heads"] = json!(3);
        v["num_key_value_heads"] = json!(1);
        let err = parse(v.clone()).expect_err("no head_dim").to_string();
        assert!(err.contains("`head_dim`"), "{err}");
        v["head_dim"] = json!(4);
        assert_eq!(parse(v).expect("config").head_dim, 4);
    }
}
