//! `ModelConfig::from_hf_dir` on every HF fixture's `config.json`, and `from_hf_value` on the
//! synthetic configs of [`cases`] (aliases, nulls, every default, sliding-window layouts, errors),
//! give the values recorded in `tests/golden/model_configs.json` (the parsed config as JSON, or
//! the error message). A change to the parsing that changes any parsed value or message fails
//! here, naming the case.
//!
//! To record the current values after an intended change: `TRTLLM_TEST_BLESS=1 cargo test -p
//! trtllm-tests --test config_golden`, then review the diff of the golden file.

use std::path::PathBuf;

use std::path::Path;

use serde_json::{json, Map, Value};
use trtllm_core::config::ModelConfig;
use trtllm_tests::fixture;

fn golden_path() -> PathBuf {
    fixture("").parent().expect("tests dir").join("golden").join("model_configs.json")
}

/// `parsed()`: fixture name -> its parsed config as JSON.
macro_rules! parsed {
    ($($name:ident),* $(,)?) => {
        fn parsed() -> Map<String, Value> {
            let mut out = Map::new();
            $(
                let cfg = ModelConfig::from_hf_dir(&fixture(stringify!($name)))
                    .unwrap_or_else(|e| panic!("{}: {e}", stringify!($name)));
                out.insert(stringify!($name).to_string(), serde_json::to_value(&cfg).expect("serialize"));
            )*
            out
        }
    };
}

trtllm_tests::for_each_fixture!(parsed);

/// A small Llama config with `changes` applied (`null` removes a key).
fn llama(changes: Value) -> Value {
    let mut v = json!({
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 16,
        "num_attention_heads": 2,
        "num_hidden_layers": 4,
        "vocab_size": 32,
    });
    for (k, x) in changes.as_object().into_iter().flatten() {
        match x {
            Value::String(s) if s == "<remove>" => {
                v.as_object_mut().expect("object").remove(k);
            }
            _ => v[k] = x.clone(),
        }
    }
    v
}

/// Synthetic configs: `(name, config.json)`.
fn cases() -> Vec<(&'static str, Value)> {
    let nulls = [
        "num_key_value_heads",
        "head_dim",
        "intermediate_size",
        "hidden_act",
        "max_position_embeddings",
        "rms_norm_eps",
        "layer_norm_eps",
        "partial_rotary_factor",
        "rope_theta",
        "tie_word_embeddings",
        "attention_bias",
        "mlp_bias",
        "num_experts",
        "num_local_experts",
        "num_experts_per_tok",
        "norm_topk_prob",
        "sliding_window",
        "torch_dtype",
        "bos_token_id",
        "eos_token_id",
    ];
    let all_null = Value::Object(nulls.iter().map(|k| (k.to_string(), Value::Null)).collect());
    vec![
        ("minimal", llama(json!({}))),
        ("all_null", llama(all_null)),
        (
            "gpt2_aliases",
            json!({
                "architectures": ["GPT2LMHeadModel"], "n_embd": 32, "n_head": 4, "n_layer": 2,
                "n_positions": 128, "n_inner": null, "layer_norm_epsilon": 1e-5,
                "activation_function": "gelu_new", "vocab_size": 50, "dtype": "float32"
            }),
        ),
        ("both_eps", llama(json!({ "rms_norm_eps": 1e-5, "layer_norm_eps": 1e-3 }))),
        ("layer_norm_eps_only", llama(json!({ "layer_norm_eps": 1e-3 }))),
        ("int_eps", llama(json!({ "rms_norm_eps": 0 }))),
        (
            "num_experts",
            llama(json!({ "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": false })),
        ),
        ("both_experts", llama(json!({ "num_experts": 4, "num_local_experts": 8 }))),
        ("gqa", llama(json!({ "num_key_value_heads": 1, "head_dim": 4, "intermediate_size": 40 }))),
        ("biases", llama(json!({ "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": true }))),
        ("rope", llama(json!({ "rope_theta": 500000.0, "partial_rotary_factor": 0.5 }))),
        ("rope_theta_string", llama(json!({ "rope_theta": "big" }))),
        ("rope_linear", llama(json!({ "rope_scaling": { "type": "linear", "factor": 2.0 } }))),
        ("swa_all", llama(json!({ "sliding_window": 8 }))),
        ("swa_false", llama(json!({ "sliding_window": false }))),
        ("swa_off", llama(json!({ "sliding_window": 8, "use_sliding_window": false }))),
        (
            "swa_qwen2",
            llama(json!({ "sliding_window": 8, "use_sliding_window": true, "max_window_layers": 2 })),
        ),
        ("swa_max_layers_ignored", llama(json!({ "sliding_window": 8, "max_window_layers": 2 }))),
        ("swa_pattern", llama(json!({ "sliding_window": 8, "sliding_window_pattern": 2 }))),
        (
            "layer_types",
            llama(json!({ "sliding_window": 8, "layer_types":
                ["sliding_attention", "full_attention", "sliding_attention", "full_attention"] })),
        ),
        (
            "layer_types_no_window",
            llama(json!({ "layer_types":
                ["sliding_attention", "full_attention", "sliding_attention", "full_attention"] })),
        ),
        (
            "text_config",
            json!({
                "architectures": ["Gemma3ForConditionalGeneration"], "vocab_size": 7,
                "text_config": { "hidden_size": 16, "num_attention_heads": 2, "num_hidden_layers": 1,
                    "vocab_size": 32, "hidden_activation": "gelu_pytorch_tanh" }
            }),
        ),
        ("token_ids", llama(json!({ "bos_token_id": 1, "eos_token_id": [2, 3], "torch_dtype": "bfloat16" }))),
        ("err_root", json!([1, 2])),
        ("err_architectures", llama(json!({ "architectures": "<remove>" }))),
        ("err_architectures_type", llama(json!({ "architectures": ["A", 5] }))),
        ("err_missing_vocab", llama(json!({ "vocab_size": "<remove>" }))),
        ("err_missing_heads", llama(json!({ "num_attention_heads": "<remove>" }))),
        ("err_zero_hidden", llama(json!({ "hidden_size": 0 }))),
        ("err_hidden_type", llama(json!({ "hidden_size": "x" }))),
        ("err_hidden_float", llama(json!({ "hidden_size": 16.0 }))),
        ("err_heads_type", llama(json!({ "num_attention_heads": "x" }))),
        ("err_layer_norm_eps_type", llama(json!({ "rms_norm_eps": 1e-5, "layer_norm_eps": "x" }))),
        ("err_layer_norm_eps_type_alone", llama(json!({ "layer_norm_eps": "x" }))),
        ("err_num_experts_type", llama(json!({ "num_local_experts": 2, "num_experts": "x" }))),
        ("err_kv_divides", llama(json!({ "num_key_value_heads": 3 }))),
        ("err_kv_zero", llama(json!({ "num_key_value_heads": 0 }))),
        ("err_head_dim", llama(json!({ "num_attention_heads": 3, "num_key_value_heads": 1 }))),
        ("err_act", llama(json!({ "hidden_act": "swishy" }))),
        ("err_act_type", llama(json!({ "hidden_act": 3 }))),
        ("err_window_type", llama(json!({ "sliding_window": "x" }))),
        ("err_layer_types_len", llama(json!({ "layer_types": ["full_attention"] }))),
        (
            "err_layer_types_value",
            llama(json!({ "layer_types": ["full_attention", "global", "full_attention", "nope"] })),
        ),
        ("err_dtype", llama(json!({ "torch_dtype": "float7" }))),
        ("err_eos", llama(json!({ "eos_token_id": [1, "x"] }))),
        ("err_rope_type", llama(json!({ "rope_scaling": { "rope_type": "warp" } }))),
        ("err_partial_rotary", llama(json!({ "partial_rotary_factor": 0.1 }))),
    ]
}

/// Every fixture and case: the parsed config as JSON, or the error message.
fn all() -> Map<String, Value> {
    let mut out = parsed();
    for (name, v) in cases() {
        let got = match ModelConfig::from_hf_value(&v, Path::new("case/config.json")) {
            Ok(cfg) => serde_json::to_value(&cfg).expect("serialize"),
            Err(e) => Value::String(format!("error: {e}")),
        };
        assert!(out.insert(format!("case.{name}"), got).is_none(), "case {name} twice");
    }
    out
}

#[test]
fn every_config_parses_to_the_recorded_values() {
    let got = all();
    let path = golden_path();
    if std::env::var_os("TRTLLM_TEST_BLESS").is_some() {
        let text = serde_json::to_string_pretty(&Value::Object(got)).expect("json") + "\n";
        std::fs::write(&path, text).expect("write golden");
        return;
    }
    let want: Map<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("golden json");
    // Key order is not compared: serde_json's map keeps insertion order in this workspace
    // (llguidance enables `preserve_order`), the golden file is sorted.
    let sorted = |m: &Map<String, Value>| {
        let mut k: Vec<String> = m.keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(sorted(&got), sorted(&want), "case list");
    for (name, value) in &got {
        assert_eq!(value, &want[name], "{name}: parsed config differs from {}", path.display());
    }
}
