//! config.json and generation_config.json of the HF directory, from the GGUF metadata
//! (`{arch}.embedding_length`, `.block_count`, ...), the tensor list (tied embeddings, q/k/v
//! biases, vocabulary size) and the architecture's fixed facts (Gemma 3's local RoPE base and
//! sliding-window pattern).

use serde_json::{json, Map, Value};

use super::names::Arch;
use super::reader::GgufFile;
use super::st_writer::OutDType;
use crate::Result;

/// Gemma 3 facts llama.cpp keeps in code rather than metadata.
const GEMMA3_ROPE_LOCAL_BASE: f64 = 10000.0;
const GEMMA3_SLIDING_WINDOW_PATTERN: usize = 6;

pub(super) fn rope(theta: f64, scaling: &Option<(String, f64)>) -> Value {
    match scaling {
        None => json!({ "rope_type": "default", "rope_theta": theta }),
        Some((kind, factor)) => json!({ "rope_type": kind, "rope_theta": theta, "factor": factor }),
    }
}

/// `{arch}.rope.scaling.type` / `.factor`: `None` for no scaling; only linear is understood.
fn rope_scaling(g: &GgufFile, a: &str) -> Result<Option<(String, f64)>> {
    let key = format!("{a}.rope.scaling.type");
    match g.opt_str(&key)? {
        None | Some("none") => Ok(None),
        Some("linear") => {
            let fkey = format!("{a}.rope.scaling.factor");
            let f = g.opt_f64(&fkey)?.ok_or_else(|| g.error(format!("metadata `{fkey}` is missing")))?;
            Ok(if f == 1.0 { None } else { Some(("linear".into(), f)) })
        }
        Some(other) => {
            Err(g.error(format!("metadata `{key}`: rope scaling `{other}` is not supported (only linear)")))
        }
    }
}

/// The longest context a GGUF may declare (the loader's cap, `config::MAX_CONTEXT`).
const MAX_CONTEXT: usize = 1 << 24;

/// Counts from the metadata against what the file holds, before anything is built per block:
/// every block stores at least two tensors (attention, MLP); the context is capped.
fn check_counts(g: &GgufFile, a: &str, layers: usize) -> Result<()> {
    let n = g.tensors.len();
    if layers.saturating_mul(2) > n {
        return Err(g.error(format!(
            "metadata `{a}.block_count` = {layers}: the file holds {n} tensors, and every block stores at least 2 (at most {} blocks)",
            n / 2
        )));
    }
    let key = format!("{a}.context_length");
    if let Some(c) = g.opt_usize(&key)?.filter(|&c| c > MAX_CONTEXT || c == 0) {
        return Err(g.error(format!("metadata `{key}` = {c}: must be in 1..={MAX_CONTEXT}")));
    }
    Ok(())
}

/// The block shape every architecture's keys derive from.
pub(super) struct Dims {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub theta: f64,
}

/// The config.json object.
pub fn config_json(g: &GgufFile, arch: Arch, vocab_size: usize, dtype: OutDType) -> Result<Value> {
    let a = arch.gguf_name();
    let k = |s: &str| format!("{a}.{s}");
    let hidden = g.req_usize(&k("embedding_length"))?;
    let layers = g.req_usize(&k("block_count"))?;
    check_counts(g, a, layers)?;
    let heads = g.req_usize(&k("attention.head_count"))?;
    if heads == 0 {
        return Err(g.error(format!("metadata `{}` is 0", k("attention.head_count"))));
    }
    let kv_heads = g.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(heads);
    let head_dim = match (g.opt_usize(&k("attention.key_length"))?, g.opt_usize(&k("rope.dimension_count"))?)
    {
        (Some(d), _) => d,
        (None, Some(d)) if arch == Arch::Llama => d,
        _ => hidden / heads,
    };
    let theta = g.opt_f64(&k("rope.freq_base"))?.unwrap_or(10000.0);
    let scaling = rope_scaling(g, a)?;
    let mut c = Map::new();
    let mut set = |key: &str, v: Value| {
        c.insert(key.to_string(), v);
    };
    set("hidden_size", json!(hidden));
    set("intermediate_size", json!(super::hf_config_zoo::ffn_size(g, a)?));
    set("num_hidden_layers", json!(layers));
    set("num_attention_heads", json!(heads));
    set("num_key_value_heads", json!(kv_heads));
    set("max_position_embeddings", json!(g.req_usize(&k("context_length"))?));
    if matches!(arch, Arch::Llama | Arch::Qwen2 | Arch::Gemma3 | Arch::Olmo2) {
        set("rms_norm_eps", json!(g.opt_f64(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6)));
    } else {
        let key = k("attention.layer_norm_epsilon");
        set(
            "layer_norm_eps",
            json!(g.opt_f64(&key)?.ok_or_else(|| g.error(format!("metadata `{key}` is missing")))?),
        );
    }
    set("rope_theta", json!(theta));
    set("vocab_size", json!(vocab_size));
    set("tie_word_embeddings", json!(g.tensor("output.weight").is_none()));
    set("torch_dtype", json!(dtype.torch_name()));
    set("attention_dropout", json!(0.0));
    set("initializer_range", json!(0.02));
    set("use_cache", json!(true));
    for (key, field) in [
        ("bos_token_id", "bos_token_id"),
        ("eos_token_id", "eos_token_id"),
        ("pad_token_id", "padding_token_id"),
        ("unk_token_id", "unknown_token_id"),
    ] {
        if let Some(id) = g.opt_token_id(&format!("tokenizer.ggml.{field}"))? {
            set(key, json!(id));
        }
    }
    let bias = g.tensor("blk.0.attn_q.bias").is_some();
    match arch {
        Arch::Llama => {
            set("architectures", json!(["LlamaForCausalLM"]));
            set("model_type", json!("llama"));
            set("head_dim", json!(head_dim));
            set("hidden_act", json!("silu"));
            set("attention_bias", json!(bias));
            set("mlp_bias", json!(false));
            set("pretraining_tp", json!(1));
            set("rope_parameters", rope(theta, &scaling));
            if let Some((kind, factor)) = &scaling {
                set("rope_scaling", json!({ "rope_type": kind, "factor": factor }));
            }
        }
        Arch::Qwen2 => {
            set("architectures", json!(["Qwen2ForCausalLM"]));
            set("model_type", json!("qwen2"));
            if head_dim != hidden / heads {
                set("head_dim", json!(head_dim));
            }
            set("hidden_act", json!("silu"));
            set("use_sliding_window", json!(false));
            set("sliding_window", Value::Null);
            set("max_window_layers", json!(layers));
            set("layer_types", json!(vec!["full_attention"; layers]));
            set("rope_parameters", rope(theta, &scaling));
            if let Some((kind, factor)) = &scaling {
                set("rope_scaling", json!({ "rope_type": kind, "factor": factor }));
            }
        }
        Arch::Gemma3 => {
            set("architectures", json!(["Gemma3ForCausalLM"]));
            set("model_type", json!("gemma3_text"));
            set("head_dim", json!(head_dim));
            set("hidden_activation", json!("gelu_pytorch_tanh"));
            set("query_pre_attn_scalar", json!(head_dim));
            set("attention_bias", json!(bias));
            set("use_bidirectional_attention", json!(false));
            let window = g.opt_usize(&k("attention.sliding_window"))?;
            set("sliding_window", json!(window));
            set("attn_logit_softcapping", json!(g.opt_f64(&k("attn_logit_softcapping"))?));
            set("final_logit_softcapping", json!(g.opt_f64(&k("final_logit_softcapping"))?));
            let sliding = match g.opt_bool_array(&k("attention.sliding_window_pattern")) {
                Ok(Some(p)) if p.len() == layers => p,
                _ => {
                    let p = g.opt_usize(&k("attention.sliding_window_pattern")).ok().flatten();
                    let p = p.filter(|&p| p > 0).unwrap_or(GEMMA3_SLIDING_WINDOW_PATTERN);
                    set("sliding_window_pattern", json!(p));
                    set("_sliding_window_pattern", json!(p));
                    (0..layers).map(|i| (i + 1) % p != 0).collect()
                }
            };
            let types: Vec<&str> =
                sliding.iter().map(|&s| if s { "sliding_attention" } else { "full_attention" }).collect();
            set("layer_types", json!(types));
            set("rope_local_base_freq", json!(GEMMA3_ROPE_LOCAL_BASE));
            set(
                "rope_parameters",
                json!({ "full_attention": rope(theta, &scaling), "sliding_attention": rope(GEMMA3_ROPE_LOCAL_BASE, &None) }),
            );
            if let Some((kind, factor)) = &scaling {
                set("rope_scaling", json!({ "rope_type": kind, "factor": factor }));
            }
        }
        _ => {
            let dims = Dims { heads, kv_heads, head_dim, theta };
            super::hf_config_zoo::arch_keys(g, arch, &dims, &scaling, &mut c)?;
        }
    }
    Ok(Value::Object(c))
}

/// generation_config.json: the special token ids the config carries.
pub fn generation_config_json(config: &Value) -> Value {
    let mut gc = Map::new();
    gc.insert("_from_model_config".into(), json!(true));
    for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        if let Some(v) = config.get(key) {
            gc.insert(key.into(), v.clone());
        }
    }
    Value::Object(gc)
}
