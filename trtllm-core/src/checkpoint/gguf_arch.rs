//! Which HF models `convert --quantize q8_0 | q4_k | f32` writes as GGUF, and under which
//! llama.cpp architecture: what each GGUF architecture's metadata and tensors can carry
//! (biases, norms, activation, RoPE), so an export never drops something the model uses.

use std::path::Path;

use crate::config::rope::RopeScaling;
use crate::config::{Activation, AttnKind, ModelConfig};
use crate::gguf::names::Arch;
use crate::{Error, Result};

/// The GGUF architecture of `cfg`, or an error naming `flag` and what it cannot write.
/// `stored(name)`: whether the checkpoint holds the HF tensor `name` (Falcon's second norm).
pub(super) fn check_supported(
    cfg: &ModelConfig,
    file: &Path,
    flag: &str,
    stored: impl Fn(&str) -> bool,
) -> Result<Arch> {
    let bad = |what: String| {
        Error::config(file, "architectures", format!("{flag} cannot write this model: {what}"))
    };
    let arch = match cfg.architecture.as_str() {
        "LlamaForCausalLM" => Arch::Llama,
        "Qwen2ForCausalLM" => Arch::Qwen2,
        "GPTNeoXForCausalLM" => Arch::GptNeoX,
        "Starcoder2ForCausalLM" => Arch::Starcoder2,
        "FalconForCausalLM" if stored("transformer.h.0.ln_mlp.weight") => Arch::Falcon,
        "FalconForCausalLM" => Arch::FalconOneNorm,
        "CohereForCausalLM" => Arch::CommandR,
        "Olmo2ForCausalLM" => Arch::Olmo2,
        other => {
            return Err(bad(format!(
                "{other} (GGUF export writes LlamaForCausalLM, Qwen2ForCausalLM, GPTNeoXForCausalLM, Starcoder2ForCausalLM, FalconForCausalLM, CohereForCausalLM and Olmo2ForCausalLM)"
            )))
        }
    };
    let o = &cfg.arch;
    let (b, qkv_b) = (o.mlp_bias, o.qkv_bias);
    // Biases, q/k norms and interleaved RoPE each architecture's tensors and graph carry.
    let (biases, qk_norm, interleaved, act) = match arch {
        Arch::Llama => (!b && o.o_bias == qkv_b, false, false, Activation::Silu),
        Arch::Qwen2 => (!b && !o.o_bias, false, false, Activation::Silu),
        Arch::GptNeoX => (b && o.o_bias == qkv_b, false, false, Activation::Gelu),
        Arch::Starcoder2 => (b == qkv_b && b == o.o_bias, false, false, Activation::GeluTanh),
        Arch::Falcon | Arch::FalconOneNorm => (b == qkv_b && b == o.o_bias, false, false, Activation::Gelu),
        Arch::CommandR => (!b && !qkv_b && !o.o_bias, false, true, Activation::Silu),
        Arch::Olmo2 => (!b && !qkv_b && !o.o_bias, true, false, Activation::Silu),
        Arch::Gemma3 => return Err(bad("Gemma3ForCausalLM".into())),
    };
    let plain = biases
        && o.qk_norm == qk_norm
        && o.rope_interleaved == interleaved
        && !o.no_rope
        && o.embedding_multiplier.is_none()
        && o.attention_multiplier.is_none()
        && o.residual_multiplier.is_none()
        && (o.logit_scale.is_some() == (arch == Arch::CommandR));
    if !plain {
        return Err(bad("biases, norms or multipliers the GGUF architecture does not carry".into()));
    }
    if cfg.hidden_act != act || cfg.num_experts > 0 {
        return Err(bad(format!(
            "only {act:?} MLPs without experts for the GGUF `{}` architecture",
            arch.gguf_name()
        )));
    }
    // Starcoder2 keeps one window for every layer (`starcoder2.attention.sliding_window`).
    let sliding = cfg.layer_types.iter().filter(|k| **k == AttnKind::Sliding).count();
    let one_window = arch == Arch::Starcoder2 && sliding == cfg.layer_types.len();
    if sliding > 0 && !one_window {
        return Err(bad("sliding-window layers".into()));
    }
    let partial_ok = arch == Arch::GptNeoX && cfg.rope.rotary_dim <= cfg.head_dim;
    if !matches!(cfg.rope.scaling, RopeScaling::Default | RopeScaling::Linear { .. })
        || (cfg.rope.rotary_dim != cfg.head_dim && !partial_ok)
    {
        return Err(bad("RoPE other than full-width default or linear scaling".into()));
    }
    Ok(arch)
}
