//! The metadata of a GGUF written from an HF directory (`convert --quantize q8_0 | q4_k`): the
//! `{arch}.*` hyperparameters llama.cpp's converter writes for each architecture, and the tokenizer
//! twice: as `tokenizer.ggml.*` (tokens, types, merges, special ids, chat template: what
//! llama.cpp reads) and as `tokenizer.huggingface.json` (the directory's own tokenizer.json, which
//! this engine's importer gives back verbatim).

use std::path::Path;

use serde_json::Value as Json;

use crate::config::rope::RopeScaling;
use crate::config::ModelConfig;
use crate::gguf::names::Arch;
use crate::gguf::{Value, ValueType};
use crate::{Error, Result};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const NORMAL: i32 = 1;
const UNUSED: i32 = 5;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const BYTE: i32 = 6;

/// Split regexes of llama.cpp's `tokenizer.ggml.pre` names this engine's importer also knows.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

type Kv = Vec<(String, Value)>;

fn u32v(x: usize) -> Value {
    Value::U32(x as u32)
}

/// `general.*` and `{arch}.*` of `cfg`.
pub(super) fn model_kv(cfg: &ModelConfig, arch: Arch, name: &str, file_type: u32) -> Kv {
    let a = arch.gguf_name();
    let mut kv: Kv = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(name.into())),
        ("general.file_type".into(), Value::U32(file_type)),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    let mut put = |k: &str, v: Value| kv.push((format!("{a}.{k}"), v));
    put("context_length", u32v(cfg.max_position_embeddings));
    put("embedding_length", u32v(cfg.hidden_size));
    put("block_count", u32v(cfg.num_hidden_layers));
    put("feed_forward_length", u32v(cfg.intermediate_size));
    put("attention.head_count", u32v(cfg.num_attention_heads));
    put("attention.head_count_kv", u32v(cfg.num_key_value_heads));
    match arch {
        Arch::Llama | Arch::Qwen2 | Arch::Gemma3 | Arch::Olmo2 => {
            put("attention.layer_norm_rms_epsilon", Value::F32(cfg.norm_eps as f32))
        }
        _ => put("attention.layer_norm_epsilon", Value::F32(cfg.norm_eps as f32)),
    }
    match arch {
        Arch::GptNeoX => put("use_parallel_residual", Value::Bool(true)),
        Arch::CommandR => put("logit_scale", Value::F32(cfg.arch.logit_scale.unwrap_or(1.0) as f32)),
        Arch::Starcoder2 | Arch::Gemma3 => {
            if let Some(w) = cfg.sliding_window {
                put("attention.sliding_window", u32v(w));
            }
        }
        _ => {}
    }
    put("rope.freq_base", Value::F32(cfg.rope.theta as f32));
    put("rope.dimension_count", u32v(cfg.rope.rotary_dim));
    put("vocab_size", u32v(cfg.vocab_size));
    if cfg.head_dim * cfg.num_attention_heads != cfg.hidden_size || arch == Arch::Gemma3 {
        put("attention.key_length", u32v(cfg.head_dim));
        put("attention.value_length", u32v(cfg.head_dim));
    }
    if let RopeScaling::Linear { factor } = cfg.rope.scaling {
        put("rope.scaling.type", Value::String("linear".into()));
        put("rope.scaling.factor", Value::F32(factor as f32));
    }
    kv
}

fn str_array(items: Vec<String>) -> Value {
    Value::Array(ValueType::String, items.into_iter().map(Value::String).collect())
}

/// A special token of tokenizer_config.json: a string or `{"content": ...}`.
fn token_str(v: Option<&Json>) -> Option<&str> {
    v.and_then(|v| v.as_str().or_else(|| v.get("content").and_then(|c| c.as_str())))
}

/// llama.cpp's `tokenizer.ggml.pre` for a byte-level BPE's pre-tokenizer.
fn pre_name(pre: &Json) -> &'static str {
    let kinds: Vec<&str> = match pre.get("pretokenizers").and_then(|p| p.as_array()) {
        Some(list) => list.iter().filter_map(|p| p.get("type").and_then(|t| t.as_str())).collect(),
        None => pre.get("type").and_then(|t| t.as_str()).into_iter().collect(),
    };
    let regex = pre.get("pretokenizers").and_then(|p| p.as_array()).and_then(|list| {
        list.iter().find_map(|p| p.get("pattern").and_then(|r| r.get("Regex")).and_then(|r| r.as_str()))
    });
    match (kinds.as_slice(), regex) {
        (["Digits", "ByteLevel"], _) => "smollm",
        (["Split", "ByteLevel"], Some(re)) if re == LLAMA3_SPLIT => "llama-bpe",
        (["Split", "ByteLevel"], Some(re)) if re == QWEN2_SPLIT => "qwen2",
        (["ByteLevel"], _) => "gpt-2",
        _ => "default",
    }
}

/// The `tokenizer.*` keys of the HF directory `dir` for a vocabulary of `vocab` rows.
pub(super) fn tokenizer_kv(dir: &Path, cfg: &ModelConfig, vocab: usize) -> Result<Kv> {
    let file = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Error::io(&file, std::io::Error::new(e.kind(), format!("a GGUF embeds the tokenizer: {e}")))
    })?;
    let tok: Json = serde_json::from_str(&text).map_err(|e| Error::config(&file, "(root)", e.to_string()))?;
    let model = &tok["model"];
    if model.get("type").and_then(|t| t.as_str()) != Some("BPE") {
        return Err(Error::config(&file, "model.type", "a GGUF tokenizer is written for BPE models only"));
    }
    let byte_fallback = model.get("byte_fallback").and_then(|b| b.as_bool()).unwrap_or(false);
    let map = model.get("vocab").and_then(|v| v.as_object());
    let map = map.ok_or_else(|| Error::config(&file, "model.vocab", "missing or not an object"))?;
    let added = tok.get("added_tokens").and_then(|a| a.as_array()).cloned().unwrap_or_default();
    let max_id =
        map.values().chain(added.iter().filter_map(|a| a.get("id"))).filter_map(|i| i.as_u64()).max();
    let n = vocab.max(max_id.map_or(0, |m| m as usize + 1));
    if n > vocab.max(1 << 24) {
        return Err(Error::config(
            &file,
            "model.vocab",
            format!("token id {max_id:?} is far past the {vocab} embedding rows"),
        ));
    }
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![NORMAL; n];
    for (t, id) in map {
        let id = id.as_u64().ok_or_else(|| Error::config(&file, format!("model.vocab.{t}"), "not an id"))?;
        tokens[id as usize] = Some(t.clone());
        if byte_fallback && t.len() == 6 && t.starts_with("<0x") && t.ends_with('>') {
            types[id as usize] = BYTE;
        }
    }
    for a in &added {
        let (Some(id), Some(c)) =
            (a.get("id").and_then(|i| i.as_u64()), a.get("content").and_then(|c| c.as_str()))
        else {
            return Err(Error::config(&file, "added_tokens", "an entry without id or content"));
        };
        tokens[id as usize] = Some(c.to_string());
        let special = a.get("special").and_then(|s| s.as_bool()).unwrap_or(false);
        types[id as usize] = if special { CONTROL } else { USER_DEFINED };
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            t.unwrap_or_else(|| {
                types[i] = UNUSED;
                format!("[PAD{i}]")
            })
        })
        .collect();
    let merges: Vec<String> = match model.get("merges").and_then(|m| m.as_array()) {
        None => vec![],
        Some(list) => list
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(p) if p.len() == 2 => {
                    Ok(format!("{} {}", p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or("")))
                }
                _ => Err(Error::config(&file, "model.merges", "an entry is neither `a b` nor [a, b]")),
            })
            .collect::<Result<_>>()?,
    };
    let tc_file = dir.join("tokenizer_config.json");
    let tc: Json = if tc_file.is_file() { crate::error::read_json(&tc_file)? } else { Json::Null };
    let id_of = |key: &str| token_str(tc.get(key)).and_then(|s| tokens.iter().position(|t| t == s));
    let bos = id_of("bos_token").or(cfg.bos_token_id.map(|i| i as usize));
    let eos = id_of("eos_token").or(cfg.eos_token_ids.first().map(|&i| i as usize));
    let add_bos = tc.get("add_bos_token").and_then(|b| b.as_bool()).unwrap_or_else(|| {
        // A post-processor that adds a special token before the sequence adds BOS.
        tok["post_processor"]["single"]
            .as_array()
            .and_then(|s| s.first())
            .is_some_and(|f| f.get("SpecialToken").is_some())
    });
    let template = match tc.get("chat_template") {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template")?.as_str().map(String::from)),
        _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
    };
    let kind = if byte_fallback { "llama" } else { "gpt2" };
    let mut kv: Kv = vec![
        ("tokenizer.ggml.model".into(), Value::String(kind.into())),
        (
            "tokenizer.ggml.pre".into(),
            Value::String(if byte_fallback { "default" } else { pre_name(&tok["pre_tokenizer"]) }.into()),
        ),
        ("tokenizer.ggml.tokens".into(), str_array(tokens.clone())),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(ValueType::I32, types.into_iter().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), str_array(merges)),
    ];
    for (key, id) in [
        ("bos_token_id", bos),
        ("eos_token_id", eos),
        ("padding_token_id", id_of("pad_token")),
        ("unknown_token_id", id_of("unk_token")),
    ] {
        if let Some(id) = id.filter(|&i| i < n) {
            kv.push((format!("tokenizer.ggml.{key}"), u32v(id)));
        }
    }
    kv.push(("tokenizer.ggml.add_bos_token".into(), Value::Bool(add_bos)));
    kv.push(("tokenizer.ggml.add_eos_token".into(), Value::Bool(false)));
    if let Some(t) = template {
        kv.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    kv.push(("tokenizer.huggingface.json".into(), Value::String(text)));
    Ok(kv)
}
