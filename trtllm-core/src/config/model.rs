//! `ModelConfig`: the one normalized view of an HF `config.json`. Parsing is code, not trust:
//! renamed keys are aliases, enumerated values (`hidden_act`, `rope_type`, `layer_types`) are
//! explicit enums, and an unknown value is an error naming the file and the field.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::rope::{RopeConfig, RopeScaling};
use crate::{DType, Error, Result};

/// Activation of the MLP (`hidden_act` / `hidden_activation` / `activation_function`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    Silu,
    /// Exact (erf) GELU.
    Gelu,
    /// tanh-approximated GELU (`gelu_pytorch_tanh`, `gelu_new`).
    GeluTanh,
    Relu,
}

impl Activation {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "silu" | "swish" => Activation::Silu,
            "gelu" => Activation::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" | "gelu_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            _ => return None,
        })
    }
}

/// Whether a layer attends to the whole context or to a sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AttnKind {
    Full,
    Sliding,
}

/// Architecture knobs that HF expresses in modeling code rather than in config.json. They
/// start from the config (`attention_bias`, `mlp_bias`) and a model's `config = fn` adapter
/// (given to `#[register_model]`) sets the rest.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArchOptions {
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// RMSNorm of q and k over head_dim, before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    /// Norms store `1 + w` (Gemma); applies to q/k norms built inside attention.
    pub norm_add_one: bool,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    pub embedding_multiplier: Option<f64>,
    /// The checkpoint stores q/k/v fused as `qkv_proj` (Phi-3).
    pub fused_qkv: bool,
    /// The checkpoint stores gate/up fused as `gate_up_proj` (Phi-3).
    pub fused_gate_up: bool,
    /// Linear weights are GPT-2 `Conv1D` (`[in, out]`), attention is `c_attn` / `c_proj`.
    pub conv1d: bool,
    /// No rotary embedding (learned absolute positions instead).
    pub no_rope: bool,
    /// Checkpoint names of MoE experts.
    pub moe_style: MoeStyle,
}

/// How a sparse-MoE checkpoint names its router and experts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MoeStyle {
    /// `gate` router; experts `w1` (gate), `w3` (up), `w2` (down); always renormalized top-k.
    #[default]
    Mixtral,
    /// `gate` router; experts `gate_proj`, `up_proj`, `down_proj`; renormalized iff `norm_topk_prob`.
    Qwen,
}

/// The raw keys we read, with their historical spellings as aliases. Unknown keys are ignored
/// (HF configs carry many keys that do not change the math); unknown *values* are errors.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    architectures: Vec<String>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    original_max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    sliding_window: Option<Value>,
    use_sliding_window: Option<bool>,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
    sliding_window_pattern: Option<usize>,
    query_pre_attn_scalar: Option<f64>,
    attn_logit_softcapping: Option<f64>,
    final_logit_softcapping: Option<f64>,
    partial_rotary_factor: Option<f64>,
    num_local_experts: Option<usize>,
    num_experts: Option<usize>,
    num_experts_per_tok: Option<usize>,
    norm_topk_prob: Option<bool>,
    moe_intermediate_size: Option<usize>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    torch_dtype: Option<String>,
}

/// The normalized model configuration every layer builds from.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ModelConfig {
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub hidden_act: Activation,
    pub tie_word_embeddings: bool,
    /// RoPE of full-attention layers.
    pub rope: RopeConfig,
    /// RoPE of sliding-window layers when it differs (Gemma 3's local base).
    pub rope_local: Option<RopeConfig>,
    pub sliding_window: Option<usize>,
    /// One entry per decoder layer.
    pub layer_types: Vec<AttnKind>,
    pub query_pre_attn_scalar: Option<f64>,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    pub num_experts: usize,
    pub num_experts_per_tok: usize,
    pub norm_topk_prob: bool,
    pub moe_intermediate_size: Option<usize>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub torch_dtype: Option<DType>,
    pub arch: ArchOptions,
    /// `quantization_config`: how the linear layers' weights are stored (`config/quant.rs`).
    #[serde(default)]
    pub quant: Option<super::quant::QuantConfig>,
}

/// Historical spellings of the keys we read: `(canonical, [aliases])`. The first key present
/// wins; the others are dropped so a config that carries two spellings is not ambiguous.
const KEY_ALIASES: &[(&str, &[&str])] = &[
    ("hidden_size", &["n_embd", "d_model"]),
    ("intermediate_size", &["n_inner"]),
    ("num_hidden_layers", &["n_layer", "num_layers"]),
    ("num_attention_heads", &["n_head"]),
    ("num_key_value_heads", &["num_kv_heads", "n_head_kv"]),
    ("max_position_embeddings", &["n_positions"]),
    ("layer_norm_eps", &["layer_norm_epsilon"]),
    ("hidden_act", &["hidden_activation", "activation_function"]),
    ("torch_dtype", &["dtype"]),
];

fn normalize_keys(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else { return };
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

fn token_ids(file: &Path, field: &str, v: &Option<Value>) -> Result<Vec<u32>> {
    let bad = || Error::config(file, field, "expected a token id or a list of token ids");
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => Ok(vec![n.as_u64().ok_or_else(bad)? as u32]),
        Some(Value::Array(a)) => a.iter().map(|x| x.as_u64().map(|n| n as u32).ok_or_else(bad)).collect(),
        Some(_) => Err(bad()),
    }
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
        let file: PathBuf = file.into();
        let obj =
            value.as_object().ok_or_else(|| Error::config(&file, "(root)", "expected a JSON object"))?;
        // Multimodal wrappers (Gemma3ForConditionalGeneration) keep the text model in `text_config`.
        let architecture = obj
            .get("architectures")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .ok_or_else(|| Error::config(&file, "architectures", "missing or not a list of strings"))?
            .to_string();
        let mut text = value.clone();
        if let (Some(Value::Object(tc)), Some(root)) = (obj.get("text_config"), text.as_object_mut()) {
            for (k, v) in tc {
                root.insert(k.clone(), v.clone());
            }
        }
        normalize_keys(&mut text);
        let raw: RawConfig = serde_json::from_value(text.clone())
            .map_err(|e| Error::config(&file, schema_field(&text), e.to_string()))?;
        let need = |v: Option<usize>, field: &str| -> Result<usize> {
            match v {
                Some(0) => Err(Error::config(&file, field, "must be positive")),
                Some(x) => Ok(x),
                None => Err(Error::config(&file, field, "missing")),
            }
        };
        let hidden_size = need(raw.hidden_size, "hidden_size")?;
        let num_attention_heads = need(raw.num_attention_heads, "num_attention_heads")?;
        let num_hidden_layers = need(raw.num_hidden_layers, "num_hidden_layers")?;
        let vocab_size = need(raw.vocab_size, "vocab_size")?;
        let num_key_value_heads = raw.num_key_value_heads.unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(Error::config(
                &file,
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"),
            ));
        }
        let head_dim = match raw.head_dim {
            Some(h) => h,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => return Err(Error::config(&file, "head_dim", "missing and hidden_size % heads != 0")),
        };
        let intermediate_size = raw.intermediate_size.unwrap_or(4 * hidden_size);
        let hidden_act = match raw.hidden_act.as_deref() {
            None => Activation::Silu,
            Some(s) => Activation::parse(s)
                .ok_or_else(|| Error::config(&file, "hidden_act", format!("unknown activation `{s}`")))?,
        };
        let max_position_embeddings = raw.max_position_embeddings.unwrap_or(2048);
        let (rope, rope_local) = super::rope::parse_rope(
            &text,
            &file,
            head_dim,
            raw.partial_rotary_factor.unwrap_or(1.0),
            max_position_embeddings,
            raw.original_max_position_embeddings,
        )?;
        let sliding_window = match &raw.sliding_window {
            None | Some(Value::Null) | Some(Value::Bool(false)) => None,
            Some(Value::Number(n)) => n.as_u64().map(|w| w as usize),
            Some(_) => return Err(Error::config(&file, "sliding_window", "expected an integer or null")),
        };
        let sliding_window = if raw.use_sliding_window == Some(false) { None } else { sliding_window };
        let layer_types = match &raw.layer_types {
            Some(types) => {
                if types.len() != num_hidden_layers {
                    return Err(Error::config(&file, "layer_types", "length differs from num_hidden_layers"));
                }
                let mut out = Vec::with_capacity(types.len());
                for t in types {
                    out.push(match t.as_str() {
                        "full_attention" => AttnKind::Full,
                        "sliding_attention" if sliding_window.is_some() => AttnKind::Sliding,
                        "sliding_attention" => AttnKind::Full,
                        other => {
                            return Err(Error::config(
                                &file,
                                "layer_types",
                                format!("unknown layer type `{other}`"),
                            ))
                        }
                    });
                }
                out
            }
            None => {
                let first_sliding =
                    raw.max_window_layers.filter(|_| raw.use_sliding_window.is_some()).unwrap_or(0);
                let pattern = raw.sliding_window_pattern;
                (0..num_hidden_layers)
                    .map(|i| match (sliding_window, pattern) {
                        (None, _) => AttnKind::Full,
                        (Some(_), Some(p)) if p > 0 && (i + 1) % p == 0 => AttnKind::Full,
                        (Some(_), _) if i >= first_sliding => AttnKind::Sliding,
                        _ => AttnKind::Full,
                    })
                    .collect()
            }
        };
        let torch_dtype = match raw.torch_dtype.as_deref() {
            None => None,
            Some(s) => Some(DType::parse(s).map_err(|e| Error::config(&file, "torch_dtype", e.to_string()))?),
        };
        Ok(ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            max_position_embeddings,
            norm_eps: raw.rms_norm_eps.or(raw.layer_norm_eps).unwrap_or(1e-6),
            hidden_act,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            rope,
            rope_local,
            sliding_window,
            layer_types,
            query_pre_attn_scalar: raw.query_pre_attn_scalar,
            attn_logit_softcapping: raw.attn_logit_softcapping,
            final_logit_softcapping: raw.final_logit_softcapping,
            num_experts: raw.num_local_experts.or(raw.num_experts).unwrap_or(0),
            num_experts_per_tok: raw.num_experts_per_tok.unwrap_or(0),
            norm_topk_prob: raw.norm_topk_prob.unwrap_or(true),
            moe_intermediate_size: raw.moe_intermediate_size,
            bos_token_id: token_ids(&file, "bos_token_id", &raw.bos_token_id)?.first().copied(),
            eos_token_ids: token_ids(&file, "eos_token_id", &raw.eos_token_id)?,
            torch_dtype,
            arch: ArchOptions {
                qkv_bias: raw.attention_bias.unwrap_or(false),
                o_bias: raw.attention_bias.unwrap_or(false),
                mlp_bias: raw.mlp_bias.unwrap_or(false),
                ..Default::default()
            },
            quant: super::quant::QuantConfig::from_hf_value(value, &file)?,
        })
    }

    /// The RoPE a layer uses (Gemma 3: a different base on sliding layers).
    pub fn rope_for_layer(&self, layer: usize) -> &RopeConfig {
        match (self.layer_types.get(layer), &self.rope_local) {
            (Some(AttnKind::Sliding), Some(local)) => local,
            _ => &self.rope,
        }
    }

    /// The sliding window of layer `layer`, if it has one.
    pub fn window_for_layer(&self, layer: usize) -> Option<usize> {
        match self.layer_types.get(layer) {
            Some(AttnKind::Sliding) => self.sliding_window,
            _ => None,
        }
    }

    /// True when the scaling of any layer is of this kind (used by tests and `trtllm models`).
    pub fn uses_scaling(&self, f: impl Fn(&RopeScaling) -> bool) -> bool {
        f(&self.rope.scaling) || self.rope_local.as_ref().is_some_and(|r| f(&r.scaling))
    }
}
