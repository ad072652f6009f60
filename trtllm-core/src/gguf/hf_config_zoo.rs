//! config.json keys of the non-llama-family architectures (gptneox, starcoder2, falcon,
//! command-r, olmo2): what their GGUF metadata says, what the tensor list shows (biases, the
//! second Falcon norm, q/k norms) and what llama.cpp keeps in code (the activation).

use serde_json::{json, Map, Value};

use super::hf_config::{rope, Dims};
use super::names::Arch;
use super::reader::GgufFile;
use crate::Result;

/// The MLP width: `{arch}.feed_forward_length` (a contradicting tensor shape is the weight
/// validation's error). llama.cpp's Falcon converter writes `4 * embedding_length` whatever the
/// model's width, so for `falcon` the rows of `blk.0.ffn_up.weight` are the width.
pub(super) fn ffn_size(g: &GgufFile, a: &str) -> Result<usize> {
    let rows = g.tensor("blk.0.ffn_up.weight").and_then(|t| t.shape().first().copied());
    match rows {
        Some(r) if a == "falcon" => Ok(r),
        _ => g.req_usize(&format!("{a}.feed_forward_length")),
    }
}

/// The architecture-specific keys of config.json.
pub(super) fn arch_keys(
    g: &GgufFile,
    arch: Arch,
    d: &Dims,
    scaling: &Option<(String, f64)>,
    c: &mut Map<String, Value>,
) -> Result<()> {
    let a = arch.gguf_name();
    let k = |s: &str| format!("{a}.{s}");
    let has = |n: &str| g.tensor(n).is_some();
    let eps = c.get("layer_norm_eps").cloned().unwrap_or(Value::Null);
    let ffn = c.get("intermediate_size").cloned().unwrap_or(Value::Null);
    let mut set = |key: &str, v: Value| {
        c.insert(key.to_string(), v);
    };
    let mut rope_params = rope(d.theta, scaling);
    if let Some((kind, factor)) = scaling {
        set("rope_scaling", json!({ "rope_type": kind, "factor": factor }));
    }
    let (archs, model_type) = match arch {
        Arch::GptNeoX => {
            let key = k("rope.dimension_count");
            let rot = g.opt_usize(&key)?.unwrap_or(d.head_dim);
            if rot == 0 || rot > d.head_dim || rot % 2 != 0 {
                return Err(g.error(format!(
                    "metadata `{key}` = {rot}: must be even and in 2..={} (the head size)",
                    d.head_dim
                )));
            }
            let key = k("use_parallel_residual");
            if !g.opt_bool(&key)?.unwrap_or(true) {
                return Err(g.error(format!("metadata `{key}` = false: a sequential block is not supported")));
            }
            let factor = rot as f64 / d.head_dim as f64;
            rope_params["partial_rotary_factor"] = json!(factor);
            set("rotary_pct", json!(factor));
            set("use_parallel_residual", json!(true));
            set("attention_bias", json!(has("blk.0.attn_qkv.bias")));
            // llama.cpp's gptneox graph uses GELU; HF's GPT-NeoX default (Pythia) is exact GELU.
            set("hidden_act", json!("gelu"));
            ("GPTNeoXForCausalLM", "gpt_neox")
        }
        Arch::Starcoder2 => {
            set("use_bias", json!(has("blk.0.attn_q.bias")));
            set("norm_epsilon", eps);
            set("hidden_act", json!("gelu_pytorch_tanh"));
            set("sliding_window", json!(g.opt_usize(&k("attention.sliding_window"))?));
            ("Starcoder2ForCausalLM", "starcoder2")
        }
        Arch::Falcon | Arch::FalconOneNorm => {
            let key = k("attention.head_count_kv");
            if !d.heads.is_multiple_of(d.kv_heads) {
                return Err(
                    g.error(format!("metadata `{key}` = {}: must divide the {} heads", d.kv_heads, d.heads))
                );
            }
            // One norm and one KV head: Falcon-7B's multi-query layout; one norm and a KV head
            // per query head: the old multi-head layout; anything else the new decoder.
            let two_norms = arch == Arch::Falcon;
            let new_decoder = two_norms || (d.kv_heads != 1 && d.kv_heads != d.heads);
            set("new_decoder_architecture", json!(new_decoder));
            set("multi_query", json!(d.kv_heads == 1));
            set("num_kv_heads", json!(d.kv_heads));
            if new_decoder {
                set("num_ln_in_parallel_attn", json!(if two_norms { 2 } else { 1 }));
            }
            set("parallel_attn", json!(true));
            set("alibi", json!(false));
            set("bias", json!(has("blk.0.attn_qkv.bias")));
            set("activation", json!("gelu"));
            set("ffn_hidden_size", ffn);
            ("FalconForCausalLM", "falcon")
        }
        Arch::CommandR => {
            let key = k("logit_scale");
            let scale = g.opt_f64(&key)?.ok_or_else(|| g.error(format!("metadata `{key}` is missing")))?;
            set("logit_scale", json!(scale));
            set("use_qk_norm", json!(has("blk.0.attn_q_norm.weight")));
            set("attention_bias", json!(false));
            set("hidden_act", json!("silu"));
            ("CohereForCausalLM", "cohere")
        }
        Arch::Olmo2 => {
            set("attention_bias", json!(has("blk.0.attn_q.bias")));
            set("hidden_act", json!("silu"));
            ("Olmo2ForCausalLM", "olmo2")
        }
        Arch::Llama | Arch::Qwen2 | Arch::Gemma3 => {
            return Err(g.error(format!("internal: `{a}` keys are written by the llama-family path")))
        }
    };
    set("architectures", json!([archs]));
    set("model_type", json!(model_type));
    set("rope_parameters", rope_params);
    Ok(())
}
