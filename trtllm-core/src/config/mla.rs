//! `MlaDims`: the dims of multi-head latent attention (DeepSeek-V2/V3 and their descendants),
//! read from the keys every MLA config spells the same way.

use super::ModelConfig;
use crate::Result;

/// The dims of multi-head latent attention (DeepSeek-V2/V3).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MlaDims {
    /// `q_lora_rank`: the query is `q_b_proj(norm(q_a_proj(x)))`; `None`: `q_proj(x)`.
    pub q_lora: Option<usize>,
    /// `kv_lora_rank`.
    pub lora: usize,
    /// `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim`.
    pub nope: usize,
    pub rope: usize,
    pub v: usize,
    /// RoPE pairs are interleaved `(2i, 2i + 1)` in the checkpoint (reordered at load).
    pub interleaved: bool,
    /// The softmax scale: `(nope + rope)^-0.5`, times YaRN's `mscale(factor, mscale_all_dim)^2`.
    pub scale: f64,
}

impl MlaDims {
    /// `kv_lora_rank`, `q_lora_rank`, `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim` and the
    /// softmax scale (`mscale_all_dim` of a YaRN `rope_parameters` / `rope_scaling`, as HF's
    /// `yarn_apply_mscale`); the RoPE covers `qk_rope_head_dim` dims.
    pub fn from_config(cfg: &mut ModelConfig, interleaved: bool) -> Result<MlaDims> {
        let need =
            |k: &str| cfg.extra::<usize>(k)?.ok_or_else(|| cfg.config_error(k, "missing (an MLA dim)"));
        let (lora, nope, rope, v) = (
            need("kv_lora_rank")?,
            need("qk_nope_head_dim")?,
            need("qk_rope_head_dim")?,
            need("v_head_dim")?,
        );
        let mut scale = ((nope + rope) as f64).powf(-0.5);
        let params: Option<serde_json::Value> = cfg.extra("rope_parameters")?.or(cfg.extra("rope_scaling")?);
        let param = |k: &str| params.as_ref().and_then(|p| p.get(k)).and_then(|x| x.as_f64());
        let kind =
            params.as_ref().and_then(|p| p.get("rope_type").or(p.get("type"))).and_then(|x| x.as_str());
        if let (Some(msa), Some(factor)) = (param("mscale_all_dim"), param("factor")) {
            if kind.is_some_and(|k| k != "default") && msa != 0.0 && factor > 1.0 {
                let m = 0.1 * msa * factor.ln() + 1.0;
                scale *= m * m;
            }
        }
        if rope == 0 || rope % 2 != 0 {
            return Err(cfg.config_error("qk_rope_head_dim", format!("{rope}: must be even and positive")));
        }
        (cfg.head_dim, cfg.rope.rotary_dim) = (rope, rope);
        Ok(MlaDims { q_lora: cfg.extra("q_lora_rank")?, lora, nope, rope, v, interleaved, scale })
    }
}
