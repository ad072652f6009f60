//! Plausibility limits of a [`ModelConfig`]: absolute caps on the sizes that drive allocation
//! (so one integer in a downloaded `config.json` cannot exhaust memory), values that make the
//! math meaningless (a RoPE base of 0, a window of 0), and the sizes checked against what the
//! weights file(s) can hold ([`ModelConfig::check_stored`]). All of it runs before anything is
//! planned or allocated, in time and memory of the order of the file headers, with checked
//! arithmetic; each error names the file, the field and the limit.

use std::path::Path;

use super::model::ModelConfig;
use super::rope::{RopeConfig, RopeScaling};
use crate::{Error, Result};

/// The most decoder layers a config may declare (the largest public models have a few hundred).
pub const MAX_LAYERS: usize = 1 << 14;
/// The longest context (`max_position_embeddings`, an engine's `max_seq_len`) we accept.
pub const MAX_CONTEXT: usize = 1 << 24;
/// The most experts per MoE layer.
pub const MAX_EXPERTS: usize = 1 << 14;
/// The largest single dimension (hidden, intermediate, vocabulary, head size, head count).
pub const MAX_DIM: usize = 1 << 26;

/// The most sequences one step may batch (`max_batch_size`, `--max-num-seqs`).
pub const MAX_BATCH_SIZE: usize = 1 << 16;
/// The largest KV-cache block (tokens a block).
pub const MAX_KV_BLOCK_SIZE: usize = 1 << 12;
/// The most tokens one step may pack (`max_num_tokens`).
pub const MAX_NUM_TOKENS: usize = 1 << 24;

/// `v` in `1..=max`, else an error naming `field` of `file` and the limit.
pub fn check_range(file: &Path, field: &str, v: usize, max: usize) -> Result<usize> {
    if v == 0 {
        return Err(Error::config(file, field, "must be positive"));
    }
    cap(file, field, v, max)?;
    Ok(v)
}

/// What the weights file(s) of a directory hold, from their headers.
#[derive(Clone, Copy, Debug)]
pub struct Stored<'a> {
    /// The file named in errors (the first of the shards).
    pub file: &'a Path,
    pub tensors: usize,
    /// Bytes of tensor data.
    pub bytes: u64,
    /// Ways the big matrices are split across files of which `tensors`/`bytes` count one
    /// (a converted checkpoint's rank file: its tp_size); 1 for a whole model.
    pub shards: usize,
}

pub(super) fn cap(file: &Path, field: &str, v: usize, max: usize) -> Result<()> {
    if v > max {
        return Err(Error::config(file, field, format!("{v} exceeds the limit of {max}")));
    }
    Ok(())
}

fn positive(file: &Path, field: &str, v: f64) -> Result<()> {
    if !(v.is_finite() && v > 0.0) {
        return Err(Error::config(file, field, format!("{v} must be a positive finite number")));
    }
    Ok(())
}

/// A product of config sizes, or an error naming `field` when it overflows.
fn product(file: &Path, field: &str, xs: &[usize]) -> Result<u128> {
    xs.iter().try_fold(1u128, |acc, &x| {
        acc.checked_mul(x as u128)
            .ok_or_else(|| Error::config(file, field, format!("the size {xs:?} overflows")))
    })
}

/// Each value in range, then the frequencies they give at the longest context: values that
/// pass one by one can still combine into infinite ones (a linear factor of 1e-320).
fn check_rope(file: &Path, r: &RopeConfig, theta_field: &str, max_pos: usize) -> Result<()> {
    check_rope_values(file, r, theta_field)?;
    let (inv, scale) = r.inv_freq(max_pos.clamp(1, MAX_CONTEXT));
    if !scale.is_finite() || inv.iter().any(|f| !f.is_finite() || *f < 0.0) {
        let field = if matches!(r.scaling, RopeScaling::Default) { theta_field } else { "rope_scaling" };
        return Err(Error::config(
            file,
            field,
            format!("gives non-finite RoPE frequencies (theta {}, {:?})", r.theta, r.scaling),
        ));
    }
    Ok(())
}

fn check_rope_values(file: &Path, r: &RopeConfig, theta_field: &str) -> Result<()> {
    positive(file, theta_field, r.theta)?;
    match &r.scaling {
        RopeScaling::Default | RopeScaling::LongRope { .. } => Ok(()),
        RopeScaling::Linear { factor } | RopeScaling::Dynamic { factor, .. } => {
            positive(file, "rope_scaling.factor", *factor)
        }
        RopeScaling::Yarn { factor, original_max, .. } => {
            positive(file, "rope_scaling.factor", *factor)?;
            if *original_max == 0 {
                return Err(Error::config(
                    file,
                    "rope_scaling.original_max_position_embeddings",
                    "must be positive",
                ));
            }
            Ok(())
        }
        RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max } => {
            positive(file, "rope_scaling.factor", *factor)?;
            positive(file, "rope_scaling.low_freq_factor", *low_freq_factor)?;
            positive(file, "rope_scaling.high_freq_factor", *high_freq_factor)?;
            if low_freq_factor == high_freq_factor {
                return Err(Error::config(
                    file,
                    "rope_scaling.low_freq_factor",
                    format!("equals high_freq_factor ({high_freq_factor}): the smoothing divides by their difference"),
                ));
            }
            if *original_max == 0 {
                return Err(Error::config(
                    file,
                    "rope_scaling.original_max_position_embeddings",
                    "must be positive",
                ));
            }
            Ok(())
        }
    }
}

impl ModelConfig {
    /// The absolute caps and the values that make the math meaningless (RoPE base and factors,
    /// window, context). `file` names the config in errors. Runs on every parse of an HF config
    /// and on every converted checkpoint's `model_config`.
    pub fn check_limits(&self, file: &Path) -> Result<()> {
        cap(file, "num_hidden_layers", self.num_hidden_layers, MAX_LAYERS)?;
        if self.num_hidden_layers == 0 {
            return Err(Error::config(file, "num_hidden_layers", "must be positive"));
        }
        cap(file, "num_local_experts", self.num_experts, MAX_EXPERTS)?;
        cap(file, "max_position_embeddings", self.max_position_embeddings, MAX_CONTEXT)?;
        if self.max_position_embeddings == 0 {
            return Err(Error::config(file, "max_position_embeddings", "must be positive"));
        }
        for (field, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
            ("head_dim", self.head_dim),
            ("num_attention_heads", self.num_attention_heads),
            ("moe_intermediate_size", self.moe_intermediate_size.unwrap_or(0)),
        ] {
            cap(file, field, v, MAX_DIM)?;
        }
        if self.num_experts > 0 && self.num_experts_per_tok > self.num_experts {
            return Err(Error::config(
                file,
                "num_experts_per_tok",
                format!("{} exceeds the {} experts", self.num_experts_per_tok, self.num_experts),
            ));
        }
        if self.layer_types.len() != self.num_hidden_layers {
            return Err(Error::config(file, "layer_types", "length differs from num_hidden_layers"));
        }
        if self.sliding_window == Some(0) {
            return Err(Error::config(
                file,
                "sliding_window",
                "0 (a window of no tokens); use null for none",
            ));
        }
        check_rope(file, &self.rope, "rope_theta", self.max_position_embeddings)?;
        if let Some(local) = &self.rope_local {
            check_rope(file, local, "rope_local_base_freq", self.max_position_embeddings)?;
        }
        Ok(())
    }

    /// The sizes against what the weights can hold, from the headers only: every layer stores
    /// at least two tensors (attention, MLP), and the embedding, the attention output and the MLP
    /// (every expert's, as if every layer were MoE) matrices need at least a quarter byte per
    /// element (2-bit storage: slack for 4-bit MoE checkpoints with some dense layers).
    pub fn check_stored(&self, config_file: &Path, s: Stored<'_>) -> Result<()> {
        let where_ = |what: String| {
            format!("{what}; {} holds {} tensors, {} bytes", s.file.display(), s.tensors, s.bytes)
        };
        let layers = self.num_hidden_layers;
        if layers.saturating_mul(2) > s.tensors {
            return Err(Error::config(
                config_file,
                "num_hidden_layers",
                where_(format!(
                    "{layers} layers need at least {} tensors (2 a layer)",
                    layers.saturating_mul(2)
                )),
            ));
        }
        let h = self.hidden_size;
        let q = self.num_attention_heads.saturating_mul(self.head_dim);
        let ffn = self.moe_intermediate_size.unwrap_or(self.intermediate_size);
        let experts = self.num_experts.max(1);
        let terms = [
            ("vocab_size", product(config_file, "vocab_size", &[self.vocab_size, h])?),
            ("num_hidden_layers", product(config_file, "num_hidden_layers", &[layers, h, q])?),
            ("num_local_experts", product(config_file, "num_local_experts", &[layers, experts, ffn, h])?),
        ];
        // A quarter byte per element, split over `shards` files.
        let avail = (s.bytes as u128).saturating_mul(4).saturating_mul(s.shards.max(1) as u128);
        let mut total = 0u128;
        for (field, elems) in terms {
            total = total.saturating_add(elems);
            if elems > avail || total > avail {
                return Err(Error::config(
                    config_file,
                    field,
                    where_(format!(
                        "the sizes need at least {} weight elements (> {avail}, 4 per byte stored)",
                        total.max(elems)
                    )),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(tweak: impl FnOnce(&mut serde_json::Value)) -> Result<ModelConfig> {
        let mut v = json!({
            "architectures": ["LlamaForCausalLM"], "hidden_size": 16, "intermediate_size": 32,
            "num_attention_heads": 2, "num_key_value_heads": 1, "num_hidden_layers": 2, "vocab_size": 32
        });
        tweak(&mut v);
        ModelConfig::from_hf_value(&v, Path::new("config.json"))
    }

    #[test]
    fn values_that_make_the_math_meaningless_name_their_field() {
        let llama3 = |lo: f64, hi: f64| {
            json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": lo, "high_freq_factor": hi,
                   "original_max_position_embeddings": 64})
        };
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (json!({"rope_theta": 0.0}), "rope_theta"),
            (json!({"rope_theta": -10000.0}), "rope_theta"),
            (json!({"rope_theta": "10000"}), "rope_theta"),
            (json!({"rope_scaling": {"rope_type": "linear", "factor": 0.0}}), "rope_scaling.factor"),
            (json!({"rope_scaling": {"rope_type": "yarn", "factor": -2.0}}), "rope_scaling.factor"),
            (json!({"rope_scaling": llama3(4.0, 4.0)}), "rope_scaling.low_freq_factor"),
            (json!({"rope_scaling": {"rope_type": "dynamic", "factor": 0.0}}), "rope_scaling.factor"),
            (json!({"sliding_window": 0}), "sliding_window"),
            (json!({"max_position_embeddings": 0}), "max_position_embeddings"),
            (json!({"num_hidden_layers": 1_000_000_000u64}), "num_hidden_layers"),
            (json!({"num_local_experts": 1_000_000u64}), "num_local_experts"),
            (json!({"max_position_embeddings": 1u64 << 40}), "max_position_embeddings"),
            (json!({"rope_local_base_freq": 0.0}), "rope_local_base_freq"),
        ];
        for (change, field) in cases {
            let e = cfg(|v| {
                for (k, x) in change.as_object().expect("object") {
                    v[k] = x.clone();
                }
            })
            .expect_err(&format!("{change} accepted"))
            .to_string();
            assert!(e.contains("config.json") && e.contains(field), "{change}: {e}");
        }
        // The sane neighbours still parse.
        cfg(|v| v["rope_scaling"] = llama3(1.0, 4.0)).expect("llama3");
        cfg(|v| v["sliding_window"] = json!(null)).expect("no window");
        cfg(|v| v["rope_theta"] = json!(null)).expect("theta null takes the default");
    }

    #[test]
    fn stored_sizes_bound_the_config() {
        let c = cfg(|_| {}).expect("valid");
        let s = |tensors, bytes| Stored { file: Path::new("model.safetensors"), tensors, bytes, shards: 1 };
        c.check_stored(Path::new("config.json"), s(20, 10_000)).expect("fits");
        let e = c.check_stored(Path::new("config.json"), s(3, 10_000)).unwrap_err().to_string();
        assert!(e.contains("num_hidden_layers") && e.contains("model.safetensors"), "{e}");
        let e = c.check_stored(Path::new("config.json"), s(20, 100)).unwrap_err().to_string();
        assert!(e.contains("vocab_size") || e.contains("num_hidden_layers"), "{e}");
    }
}
