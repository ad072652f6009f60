//! `ModelConfig`: the one normalized view of an HF `config.json`. Parsing is code, not trust:
//! renamed keys are aliases, enumerated values (`hidden_act`, `rope_type`, `layer_types`) are
//! explicit enums, and an unknown value is an error naming the file and the field. The parse is
//! `parse.rs`; the aliases and every default, `keys.rs`.

use super::extra::ConfigJson;
use super::rope::{RopeConfig, RopeScaling};
use crate::DType;

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
#[serde(default)]
pub struct ArchOptions {
    pub qkv_bias: bool,
    pub o_bias: bool,
    pub mlp_bias: bool,
    /// Norms of q and k before RoPE (Qwen3, Gemma 3: per head; OLMo 2: over all heads, by the
    /// attention's norm type `Attention<AllHeadsRmsNorm>`).
    pub qk_norm: bool,
    /// Embeddings are multiplied by this (Gemma: sqrt(hidden)).
    pub embedding_multiplier: Option<f64>,
    /// No rotary embedding (learned absolute positions instead).
    pub no_rope: bool,
    /// The attention's softmax scale, instead of `1 / sqrt(head_dim)` (Granite's
    /// `attention_multiplier`).
    pub attention_multiplier: Option<f64>,
    /// Attention and MLP outputs are multiplied by this before the residual add (Granite).
    pub residual_multiplier: Option<f64>,
    /// Logits are multiplied by this (Cohere's `logit_scale`; Granite: `1 / logits_scaling`).
    pub logit_scale: Option<f64>,
    /// RoPE rotates interleaved pairs `(2i, 2i + 1)` (GPT-J, Cohere), applied by reordering the
    /// q/k projection rows at load (`Transform::rope_interleaved`).
    pub rope_interleaved: bool,
    /// How a mixture-of-experts block routes and computes (`SparseMoe`, `MoeOrDense`).
    pub moe: MoeOptions,
    /// A learned per-head logit joins each softmax (GPT-OSS attention sinks: `Attention` reads
    /// `sinks` of the attention block).
    pub attn_sinks: bool,
    /// Multi-head latent attention (`MlaAttention`): its dims; each token caches one row of
    /// `kv_lora_rank + qk_rope_head_dim` shared by every head and rank, and no values.
    pub mla: Option<super::MlaDims>,
}

/// How expert scores come from the router logits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum MoeScoring {
    /// Softmax over all experts, then the top k (Mixtral, Qwen-MoE, DeepSeek-V2).
    #[default]
    Softmax,
    /// Sigmoid of each logit, then the top k (DeepSeek-V3).
    Sigmoid,
    /// Top k of the raw logits, softmax over those k (GPT-OSS).
    TopKSoftmax,
}

/// Mixture-of-experts knobs HF keeps in modeling code.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MoeOptions {
    pub scoring: MoeScoring,
    /// `(n_group, topk_group)`: experts form `n_group` equal groups and only the best
    /// `topk_group` groups compete (DeepSeek's group-limited routing).
    pub groups: Option<(usize, usize)>,
    /// A group's score is the sum of its two best expert scores (V3), not its best (V2).
    pub group_top2: bool,
    /// A learned per-expert bias added to the scores for the choice only
    /// (`gate.e_score_correction_bias`, DeepSeek-V3).
    pub score_correction: bool,
    /// The routed experts' weights are multiplied by this (`routed_scaling_factor`).
    pub routed_scaling: Option<f64>,
    /// The router and the experts have biases (GPT-OSS).
    pub router_bias: bool,
    pub expert_bias: bool,
    /// `(alpha, limit)`: experts use GPT-OSS's clamped SwiGLU on interleaved gate/up columns,
    /// `(clamp(up, -l, l) + 1) * g * sigmoid(alpha * g)` with `g = min(gate, l)`.
    pub clamped_swiglu: Option<(f64, f64)>,
    /// Intermediate size of the always-on shared expert (Qwen2-MoE, DeepSeek), when there is one.
    pub shared_intermediate: Option<usize>,
    /// Layers whose MLP is a dense `GatedMlp` of `intermediate_size` (`MoeOrDense`).
    pub dense_layers: Vec<usize>,
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
    /// The keys of `config.json` as read, for [`ModelConfig::extra`] (`extra.rs`). Not stored in
    /// a converted checkpoint's config.
    #[serde(skip)]
    pub(super) config_json: ConfigJson,
}

impl ModelConfig {
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
