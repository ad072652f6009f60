//! `config.json` → [`ModelConfig`], in named steps: the text model's keys (`text_config` merged
//! over the root), aliases and defaults (`keys.rs`), the typed parse, the required sizes, the
//! attention shape, the activation, RoPE, the layer types, the rest.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::extra::ConfigJson;
use super::keys::{apply_defaults, normalize_keys};
use super::model::{Activation, ArchOptions, AttnKind, ModelConfig};
use crate::{DType, Error, Result};

/// The raw keys we read, under their canonical names. Unknown keys are ignored (HF configs
/// carry many keys that do not change the math); unknown *values* are errors. A key with a
/// `DEFAULTS` entry is a plain value here: its default is filled in before this parse.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    /// Type-checked only (`text_keys` reads `architectures[0]`).
    #[allow(dead_code)]
    architectures: Vec<String>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: Option<usize>,
    max_position_embeddings: usize,
    original_max_position_embeddings: Option<usize>,
    rms_norm_eps: f64,
    /// Type-checked only: `rms_norm_eps` defaults to it.
    #[allow(dead_code)]
    layer_norm_eps: f64,
    hidden_act: String,
    tie_word_embeddings: bool,
    attention_bias: bool,
    mlp_bias: bool,
    sliding_window: Option<Value>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    sliding_window_pattern: Option<usize>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    partial_rotary_factor: f64,
    num_local_experts: usize,
    /// Type-checked only: `num_local_experts` defaults to it.
    #[allow(dead_code)]
    num_experts: usize,
    num_experts_per_tok: usize,
    norm_topk_prob: bool,
    moe_intermediate_size: Option<usize>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    torch_dtype: Option<String>,
}

/// The sizes of the attention and the MLP.
struct Shape {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    vocab_size: usize,
    num_key_value_heads: usize,
    head_dim: usize,
    intermediate_size: usize,
}

impl ModelConfig {
    /// Read and normalize `dir/config.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let file = dir.join("config.json");
        let value = crate::error::read_json(&file)?;
        Self::from_hf_value(&value, &file)
    }

    /// Normalize a parsed HF config. `file` only names the source in errors.
    pub fn from_hf_value(value: &Value, file: &Path) -> Result<Self> {
        let (architecture, text) = text_keys(value, file)?;
        let extra = ConfigJson::new(file, text.clone());
        let mut keys = text;
        normalize_keys(&mut keys);
        apply_defaults(&mut keys);
        let text = Value::Object(keys);
        let raw: RawConfig = serde_json::from_value(text.clone())
            .map_err(|e| Error::config(file, schema_field(&text), e.to_string()))?;
        let shape = shape(&raw, file)?;
        let hidden_act = Activation::parse(&raw.hidden_act).ok_or_else(|| {
            Error::config(file, "hidden_act", format!("unknown activation `{}`", raw.hidden_act))
        })?;
        let (rope, rope_local) = super::rope::parse_rope(
            &text,
            file,
            shape.head_dim,
            raw.partial_rotary_factor,
            raw.max_position_embeddings,
            raw.original_max_position_embeddings,
        )?;
        let sliding_window = sliding_window(&raw, file)?;
        let layer_types = layer_types(&raw, file, shape.num_hidden_layers, sliding_window)?;
        let torch_dtype = match raw.torch_dtype.as_deref() {
            None => None,
            Some(s) => Some(DType::parse(s).map_err(|e| Error::config(file, "torch_dtype", e.to_string()))?),
        };
        let cfg = ModelConfig {
            architecture,
            vocab_size: shape.vocab_size,
            hidden_size: shape.hidden_size,
            intermediate_size: shape.intermediate_size,
            num_hidden_layers: shape.num_hidden_layers,
            num_attention_heads: shape.num_attention_heads,
            num_key_value_heads: shape.num_key_value_heads,
            head_dim: shape.head_dim,
            max_position_embeddings: raw.max_position_embeddings,
            norm_eps: raw.rms_norm_eps,
            hidden_act,
            tie_word_embeddings: raw.tie_word_embeddings,
            rope,
            rope_local,
            sliding_window,
            layer_types,
            query_pre_attn_scalar: raw.query_pre_attn_scalar,
            attn_logit_softcapping: raw.attn_logit_softcapping,
            final_logit_softcapping: raw.final_logit_softcapping,
            num_experts: raw.num_local_experts,
            num_experts_per_tok: raw.num_experts_per_tok,
            norm_topk_prob: raw.norm_topk_prob,
            moe_intermediate_size: raw.moe_intermediate_size,
            bos_token_id: token_ids(file, "bos_token_id", &raw.bos_token_id)?.first().copied(),
            eos_token_ids: token_ids(file, "eos_token_id", &raw.eos_token_id)?,
            torch_dtype,
            arch: ArchOptions {
                qkv_bias: raw.attention_bias,
                o_bias: raw.attention_bias,
                mlp_bias: raw.mlp_bias,
                ..Default::default()
            },
            quant: super::quant::QuantConfig::from_hf_value(value, file)?,
            config_json: extra,
        };
        cfg.check_limits(file)?;
        Ok(cfg)
    }
}

/// `architectures[0]` and the text model's keys: the root's, with a multimodal wrapper's
/// `text_config` (Gemma3ForConditionalGeneration) merged over them.
fn text_keys(value: &Value, file: &Path) -> Result<(String, Map<String, Value>)> {
    let obj = value.as_object().ok_or_else(|| Error::config(file, "(root)", "expected a JSON object"))?;
    let architecture = obj
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(|a| a.as_str())
        .ok_or_else(|| Error::config(file, "architectures", "missing or not a list of strings"))?
        .to_string();
    let mut text = obj.clone();
    if let Some(Value::Object(tc)) = obj.get("text_config") {
        for (k, v) in tc {
            text.insert(k.clone(), v.clone());
        }
    }
    Ok((architecture, text))
}

/// The key whose value fails to deserialize (serde's message does not name it).
fn schema_field(v: &Value) -> String {
    if let Some(obj) = v.as_object() {
        for (k, val) in obj {
            let single = serde_json::json!({ k.clone(): val.clone() });
            if serde_json::from_value::<RawConfig>(single).is_err() {
                return k.clone();
            }
        }
    }
    "(schema)".to_string()
}

/// The required sizes (positive), then the ones derived from them, checked.
fn shape(raw: &RawConfig, file: &Path) -> Result<Shape> {
    let need = |v: Option<usize>, field: &str| -> Result<usize> {
        match v {
            Some(0) => Err(Error::config(file, field, "must be positive")),
            Some(x) => Ok(x),
            None => Err(Error::config(file, field, "missing")),
        }
    };
    let hidden_size = need(raw.hidden_size, "hidden_size")?;
    let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
    let num_hidden_layers = need(raw.num_hidden_layers, "num_hidden_layers")?;
    // Before anything is allocated per layer (`layer_types`).
    super::limits::cap(file, "num_hidden_layers", num_hidden_layers, super::limits::MAX_LAYERS)?;
    let vocab_size = need(raw.vocab_size, "vocab_size")?;
    let num_key_value_heads = match raw.num_key_value_heads {
        Some(kv) if kv > 0 && num_attention_heads % kv == 0 => kv,
        kv => {
            return Err(Error::config(
                file,
                "num_key_value_heads",
                format!("{} does not divide num_attention_heads {num_attention_heads}", kv.unwrap_or(0)),
            ))
        }
    };
    let head_dim = raw
        .head_dim
        .ok_or_else(|| Error::config(file, "head_dim", "missing and hidden_size % heads != 0"))?;
    super::limits::cap(file, "head_dim", head_dim, super::limits::MAX_DIM)?;
    let intermediate_size =
        raw.intermediate_size.ok_or_else(|| Error::config(file, "intermediate_size", "missing"))?;
    Ok(Shape {
        hidden_size,
        num_attention_heads,
        num_hidden_layers,
        vocab_size,
        num_key_value_heads,
        head_dim,
        intermediate_size,
    })
}

/// `sliding_window`: a size, or none (`null`, `false`, or `use_sliding_window: false`).
fn sliding_window(raw: &RawConfig, file: &Path) -> Result<Option<usize>> {
    let window = match &raw.sliding_window {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::Number(n)) => n.as_u64().map(|w| w as usize),
        Some(_) => return Err(Error::config(file, "sliding_window", "expected an integer or null")),
    };
    Ok(if raw.use_sliding_window == Some(false) { None } else { window })
}

/// Full or sliding attention per layer: from `layer_types`, else from `sliding_window_pattern`
/// (every p-th layer full) or `max_window_layers` (Qwen2: layers from there on slide). Without
/// a window every layer is full.
fn layer_types(
    raw: &RawConfig,
    file: &Path,
    num_hidden_layers: usize,
    sliding_window: Option<usize>,
) -> Result<Vec<AttnKind>> {
    if let Some(types) = &raw.layer_types {
        if types.len() != num_hidden_layers {
            return Err(Error::config(file, "layer_types", "length differs from num_hidden_layers"));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                "full_attention" => Ok(AttnKind::Full),
                "sliding_attention" if sliding_window.is_some() => Ok(AttnKind::Sliding),
                "sliding_attention" => Ok(AttnKind::Full),
                other => Err(Error::config(file, "layer_types", format!("unknown layer type `{other}`"))),
            })
            .collect();
    }
    let first_sliding = raw.max_window_layers.filter(|_| raw.use_sliding_window.is_some()).unwrap_or(0);
    let pattern = raw.sliding_window_pattern;
    Ok((0..num_hidden_layers)
        .map(|i| match (sliding_window, pattern) {
            (None, _) => AttnKind::Full,
            (Some(_), Some(p)) if p > 0 && (i + 1) % p == 0 => AttnKind::Full,
            (Some(_), _) if i >= first_sliding => AttnKind::Sliding,
            _ => AttnKind::Full,
        })
        .collect())
}

fn token_ids(file: &Path, field: &str, v: &Option<Value>) -> Result<Vec<u32>> {
    let bad = || Error::config(file, field, "expected a token id or a list of token ids");
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(bad)? as u32]),
        Some(Value::Array(a)) => a.iter().map(|x| x.as_u64().map(|n| n as u32).ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
    }
}
