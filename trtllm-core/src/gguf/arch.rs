//! The GGUF architectures this importer handles (`general.architecture`) and, per architecture,
//! the Hugging Face spelling of each llama.cpp tensor name (`gguf-py/gguf/constants.py`'s
//! `MODEL_TENSORS` for the architecture, `tensor_mapping.py`'s HF names).

use super::reader::GgufFile;
use crate::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Gemma3,
    /// `gptneox`: GPTNeoXForCausalLM (fused qkv, biases, partial rotary, parallel residual).
    GptNeoX,
    Starcoder2,
    /// `falcon` with two norms per block (`attn_norm_2`, HF `ln_attn` / `ln_mlp`: Falcon-40B's
    /// new decoder architecture).
    Falcon,
    /// `falcon` with one norm per block (HF `input_layernorm`: Falcon-7B's multi-query layout,
    /// or a new-decoder model with `num_ln_in_parallel_attn = 1`).
    FalconOneNorm,
    /// `command-r`: CohereForCausalLM.
    CommandR,
    Olmo2,
}

/// The names of every architecture, for error messages.
pub const SUPPORTED: &str = "llama, qwen2, gemma3, gptneox, starcoder2, falcon, command-r, olmo2";

/// Where an architecture keeps its non-layer tensors and its blocks, in HF names.
pub struct HfLayout {
    pub embed: &'static str,
    pub norm: &'static str,
    pub head: &'static str,
    /// Blocks are `{layers}.{i}.{part}`.
    pub layers: &'static str,
    /// (GGUF part, HF part) of a block's tensors, without `.weight` / `.bias`.
    pub parts: &'static [(&'static str, &'static str)],
}

const LLAMA_PARTS: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

const GEMMA3_PARTS: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "pre_feedforward_layernorm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

const NEOX_PARTS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_qkv", "attention.query_key_value"),
    ("attn_output", "attention.dense"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_up", "mlp.dense_h_to_4h"),
    ("ffn_down", "mlp.dense_4h_to_h"),
];

const STARCODER2_PARTS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_up", "mlp.c_fc"),
    ("ffn_down", "mlp.c_proj"),
];

const FALCON_PARTS: &[(&str, &str)] = &[
    ("attn_norm", "ln_attn"),
    ("attn_norm_2", "ln_mlp"),
    ("attn_qkv", "self_attention.query_key_value"),
    ("attn_output", "self_attention.dense"),
    ("ffn_up", "mlp.dense_h_to_4h"),
    ("ffn_down", "mlp.dense_4h_to_h"),
];

const FALCON_ONE_NORM_PARTS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_qkv", "self_attention.query_key_value"),
    ("attn_output", "self_attention.dense"),
    ("ffn_up", "mlp.dense_h_to_4h"),
    ("ffn_down", "mlp.dense_4h_to_h"),
];

const COHERE_PARTS: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
];

const OLMO2_PARTS: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("post_attention_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("post_ffw_norm", "post_feedforward_layernorm"),
];

const fn model(parts: &'static [(&'static str, &'static str)]) -> HfLayout {
    HfLayout {
        embed: "model.embed_tokens",
        norm: "model.norm",
        head: "lm_head",
        layers: "model.layers",
        parts,
    }
}

const FALCON_BASE: HfLayout = HfLayout {
    embed: "transformer.word_embeddings",
    norm: "transformer.ln_f",
    head: "lm_head",
    layers: "transformer.h",
    parts: FALCON_PARTS,
};

impl Arch {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            "gemma3" => Arch::Gemma3,
            "gptneox" => Arch::GptNeoX,
            "starcoder2" => Arch::Starcoder2,
            "falcon" => Arch::Falcon,
            "command-r" => Arch::CommandR,
            "olmo2" => Arch::Olmo2,
            _ => return None,
        })
    }

    /// The architecture of an open file: `general.architecture`, and for `falcon` whether the
    /// blocks have a second norm (`blk.0.attn_norm_2.weight`). An unknown one is an error
    /// naming the key.
    pub fn of_file(g: &GgufFile) -> Result<Self> {
        let name = g.architecture()?;
        let arch = Arch::parse(name).ok_or_else(|| {
            g.error(format!("metadata `general.architecture`: `{name}` is not supported ({SUPPORTED})"))
        })?;
        Ok(match arch {
            Arch::Falcon if g.tensor("blk.0.attn_norm_2.weight").is_none() => Arch::FalconOneNorm,
            a => a,
        })
    }

    /// `general.architecture` spelling, the prefix of its metadata keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Gemma3 => "gemma3",
            Arch::GptNeoX => "gptneox",
            Arch::Starcoder2 => "starcoder2",
            Arch::Falcon | Arch::FalconOneNorm => "falcon",
            Arch::CommandR => "command-r",
            Arch::Olmo2 => "olmo2",
        }
    }

    /// The HF names of this architecture's tensors.
    pub fn hf_layout(self) -> HfLayout {
        match self {
            Arch::Llama | Arch::Qwen2 => model(LLAMA_PARTS),
            Arch::Gemma3 => model(GEMMA3_PARTS),
            Arch::GptNeoX => HfLayout {
                embed: "gpt_neox.embed_in",
                norm: "gpt_neox.final_layer_norm",
                head: "embed_out",
                layers: "gpt_neox.layers",
                parts: NEOX_PARTS,
            },
            Arch::Starcoder2 => model(STARCODER2_PARTS),
            Arch::Falcon => FALCON_BASE,
            Arch::FalconOneNorm => HfLayout { parts: FALCON_ONE_NORM_PARTS, ..FALCON_BASE },
            Arch::CommandR => model(COHERE_PARTS),
            Arch::Olmo2 => model(OLMO2_PARTS),
        }
    }

    /// Whether the fused `attn_qkv` is stored as llama.cpp's converters write it (all q rows,
    /// then all k, then all v) where HF groups rows per KV group (GPT-NeoX: `[q, k, v]` per
    /// head; Falcon: `n_head / n_head_kv` q heads, then k, then v, per KV group).
    pub fn grouped_qkv(self) -> bool {
        matches!(self, Arch::GptNeoX | Arch::Falcon | Arch::FalconOneNorm)
    }
}
