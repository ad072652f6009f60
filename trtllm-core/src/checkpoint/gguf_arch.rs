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
        "Gemma3ForCausalLM" => Arch::Gemma3,
        other => {
            return Err(bad(format!(
                "{other} (GGUF export writes LlamaForCausalLM, Qwen2ForCausalLM, GPTNeoXForCausalLM, Starcoder2ForCausalLM, FalconForCausalLM, CohereForCausalLM, Olmo2ForCausalLM and Gemma3ForCausalLM)"
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
        Arch::Gemma3 => (!b && !qkv_b && !o.o_bias, true, false, Activation::GeluTanh),
    };
    // Gemma scales the embeddings by sqrt(hidden) (llama.cpp's gemma3 graph does too).
    let embed_scale = match arch {
        Arch::Gemma3 => o.embedding_multiplier.map(|m| m / (cfg.hidden_size as f64).sqrt()),
        _ => o.embedding_multiplier,
    };
    let plain = biases
        && o.qk_norm == qk_norm
        && o.rope_interleaved == interleaved
        && !o.no_rope
        && embed_scale.is_none_or(|r| (r - 1.0).abs() < 1e-6)
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
    if arch == Arch::Gemma3 {
        check_gemma3(cfg).map_err(bad)?;
    }
    // Starcoder2 keeps one window for every layer (`starcoder2.attention.sliding_window`);
    // Gemma 3 its pattern (`check_gemma3`).
    let sliding = cfg.layer_types.iter().filter(|k| **k == AttnKind::Sliding).count();
    let one_window = arch == Arch::Starcoder2 && sliding == cfg.layer_types.len();
    if sliding > 0 && !one_window && arch != Arch::Gemma3 {
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

/// What llama.cpp's `gemma3` keeps in code rather than metadata, against `cfg`: every 6th layer
/// global and the others sliding (`gemma3.attention.sliding_window`), RoPE base 10000 without
/// scaling on the sliding layers, queries scaled by `1 / sqrt(head_dim)`, no soft-capping.
fn check_gemma3(cfg: &ModelConfig) -> std::result::Result<(), String> {
    let pattern =
        cfg.layer_types.iter().enumerate().all(|(i, k)| (*k == AttnKind::Sliding) == ((i + 1) % 6 != 0));
    if !pattern || cfg.layer_types.len() != cfg.num_hidden_layers || cfg.sliding_window.is_none() {
        return Err(
            "Gemma 3 layers other than 5 sliding-window layers then 1 global (llama.cpp's fixed pattern)"
                .into(),
        );
    }
    let local_ok = cfg.rope_local.as_ref().is_some_and(|r| {
        r.theta == 10000.0 && matches!(r.scaling, RopeScaling::Default) && r.rotary_dim == cfg.head_dim
    });
    if !local_ok {
        return Err(
            "a sliding-window RoPE other than base 10000 unscaled (llama.cpp's fixed local base)".into()
        );
    }
    if cfg.query_pre_attn_scalar.is_some_and(|q| q != cfg.head_dim as f64) {
        return Err("query_pre_attn_scalar other than head_dim".into());
    }
    if cfg.attn_logit_softcapping.is_some() || cfg.final_logit_softcapping.is_some() {
        return Err("logit soft-capping (llama.cpp's gemma3 graph has none)".into());
    }
    Ok(())
}
