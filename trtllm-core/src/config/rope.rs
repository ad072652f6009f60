//! RoPE configuration (`rope_theta` + `rope_scaling` / transformers-5 `rope_parameters`) and the
//! inverse frequencies of every scaling kind, computed as HF's `modeling_rope_utils` does.

use std::path::Path;

use serde_json::{Map, Value};

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum RopeScaling {
    Default,
    Linear {
        factor: f64,
    },
    /// NTK-aware scaling whose base grows with the sequence length.
    Dynamic {
        factor: f64,
        original_max: usize,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max: usize,
    },
    Yarn {
        factor: f64,
        original_max: usize,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        truncate: bool,
    },
    /// Phi-3's LongRoPE (`su` in older configs): per-frequency factors, short below `original_max`.
    LongRope {
        short_factor: Vec<f64>,
        long_factor: Vec<f64>,
        original_max: usize,
        attention_factor: f64,
    },
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RopeConfig {
    pub theta: f64,
    /// Number of rotated dims of each head (`head_dim * partial_rotary_factor`).
    pub rotary_dim: usize,
    pub scaling: RopeScaling,
}

fn f(file: &Path, m: &Map<String, Value>, key: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| Error::config(file, format!("rope_scaling.{key}"), "expected a number")),
    }
}

fn req(file: &Path, m: &Map<String, Value>, key: &str) -> Result<f64> {
    f(file, m, key)?.ok_or_else(|| Error::config(file, format!("rope_scaling.{key}"), "missing"))
}

fn list(file: &Path, m: &Map<String, Value>, key: &str, len: usize) -> Result<Vec<f64>> {
    let bad =
        || Error::config(file, format!("rope_scaling.{key}"), format!("expected a list of {len} numbers"));
    let v: Vec<f64> =
        m.get(key).and_then(|v| v.as_array()).ok_or_else(bad)?.iter().filter_map(|x| x.as_f64()).collect();
    if v.len() != len {
        return Err(bad());
    }
    Ok(v)
}

/// A top-level number of the config: `None` when absent or null, an error naming the key when
/// it is anything else (a string `rope_theta` must not silently become the default).
fn number(cfg: &Value, file: &Path, key: &str) -> Result<Option<f64>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| Error::config(file, key, format!("expected a number, found {v}"))),
    }
}

fn get_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

/// One RoPE from a scaling dict (`rope_scaling` or one `rope_parameters` entry).
fn parse_one(
    file: &Path,
    m: Option<&Map<String, Value>>,
    theta: f64,
    rotary_dim: usize,
    max_pos: usize,
    orig_max_cfg: Option<usize>,
) -> Result<RopeConfig> {
    let empty = Map::new();
    let m = m.unwrap_or(&empty);
    let theta = f(file, m, "rope_theta")?.unwrap_or(theta);
    let kind = m.get("rope_type").or_else(|| m.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
    let orig = |key_default: usize| -> Result<usize> {
        Ok(f(file, m, "original_max_position_embeddings")?
            .map(|x| x as usize)
            .or(orig_max_cfg)
            .unwrap_or(key_default))
    };
    let scaling = match kind {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear { factor: req(file, m, "factor")? },
        "dynamic" => RopeScaling::Dynamic { factor: req(file, m, "factor")?, original_max: max_pos },
        "llama3" => RopeScaling::Llama3 {
            factor: req(file, m, "factor")?,
            low_freq_factor: req(file, m, "low_freq_factor")?,
            high_freq_factor: req(file, m, "high_freq_factor")?,
            original_max: req(file, m, "original_max_position_embeddings")? as usize,
        },
        "yarn" => {
            let mut factor = req(file, m, "factor")?;
            // Checked here too: the file's factor is replaced below when the context is longer
            // than `original_max_position_embeddings`, and a negative one must not pass unseen.
            if !(factor.is_finite() && factor > 0.0) {
                return Err(Error::config(
                    file,
                    "rope_scaling.factor",
                    format!("{factor} must be a positive finite number"),
                ));
            }
            let original_max = orig(max_pos)?;
            if f(file, m, "original_max_position_embeddings")?.is_some() && max_pos > original_max {
                factor = max_pos as f64 / original_max as f64;
            }
            let attention_factor = match f(file, m, "attention_factor")? {
                Some(a) => a,
                None => match (f(file, m, "mscale")?, f(file, m, "mscale_all_dim")?) {
                    (Some(ms), Some(msa)) if ms != 0.0 && msa != 0.0 => {
                        get_mscale(factor, ms) / get_mscale(factor, msa)
                    }
                    _ => get_mscale(factor, 1.0),
                },
            };
            RopeScaling::Yarn {
                factor,
                original_max,
                beta_fast: f(file, m, "beta_fast")?.unwrap_or(32.0),
                beta_slow: f(file, m, "beta_slow")?.unwrap_or(1.0),
                attention_factor,
                truncate: m.get("truncate").and_then(|v| v.as_bool()).unwrap_or(true),
            }
        }
        "longrope" | "su" => {
            let original_max = orig(max_pos)?;
            let factor = match orig_max_cfg {
                Some(o) => max_pos as f64 / o as f64,
                None => f(file, m, "factor")?.unwrap_or(1.0),
            };
            let attention_factor = match f(file, m, "attention_factor")? {
                Some(a) => a,
                None if factor <= 1.0 => 1.0,
                None => (1.0 + factor.ln() / (original_max as f64).ln()).sqrt(),
            };
            RopeScaling::LongRope {
                short_factor: list(file, m, "short_factor", rotary_dim / 2)?,
                long_factor: list(file, m, "long_factor", rotary_dim / 2)?,
                original_max,
                attention_factor,
            }
        }
        other => {
            return Err(Error::config(
                file,
                "rope_scaling.rope_type",
                format!(
                    "unknown rope type `{other}` (known: default, linear, dynamic, llama3, yarn, longrope)"
                ),
            ))
        }
    };
    Ok(RopeConfig { theta, rotary_dim, scaling })
}

/// Parse the RoPE of full-attention layers and, when present, of sliding layers (Gemma 3).
pub(crate) fn parse_rope(
    cfg: &Value,
    file: &Path,
    head_dim: usize,
    partial_rotary_factor: f64,
    max_pos: usize,
    orig_max_cfg: Option<usize>,
) -> Result<(RopeConfig, Option<RopeConfig>)> {
    // transformers 5 moved `partial_rotary_factor` into `rope_parameters`.
    let partial_rotary_factor = cfg
        .get("rope_parameters")
        .and_then(|p| p.get("partial_rotary_factor"))
        .and_then(|v| v.as_f64())
        .unwrap_or(partial_rotary_factor);
    let rotary_dim = ((head_dim as f64) * partial_rotary_factor) as usize;
    if rotary_dim == 0 || !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
        return Err(Error::config(file, "partial_rotary_factor", format!("gives rotary dim {rotary_dim}")));
    }
    let theta = number(cfg, file, "rope_theta")?.unwrap_or(super::keys::ROPE_THETA);
    let obj = |key: &str| -> Result<Option<&Map<String, Value>>> {
        match cfg.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(Error::config(file, key, "expected an object or null")),
        }
    };
    let params = obj("rope_parameters")?;
    if let Some(p) = params {
        if let (Some(Value::Object(full)), Some(Value::Object(local))) =
            (p.get("full_attention"), p.get("sliding_attention"))
        {
            let global = parse_one(file, Some(full), theta, rotary_dim, max_pos, orig_max_cfg)?;
            let local = parse_one(file, Some(local), theta, rotary_dim, max_pos, orig_max_cfg)?;
            return Ok((global, Some(local)));
        }
    }
    let scaling = obj("rope_scaling")?.or(params);
    let global = parse_one(file, scaling, theta, rotary_dim, max_pos, orig_max_cfg)?;
    let local = number(cfg, file, "rope_local_base_freq")?.map(|t| RopeConfig {
        theta: t,
        rotary_dim,
        scaling: RopeScaling::Default,
    });
    Ok((global, local))
}

impl RopeConfig {
    fn base_inv_freq(&self, base: f64) -> Vec<f64> {
        let d = self.rotary_dim;
        (0..d / 2).map(|i| 1.0 / base.powf((2 * i) as f64 / d as f64)).collect()
    }

    /// Inverse frequencies (f32, as HF keeps them) and the cos/sin multiplier, for a forward
    /// whose longest sequence is `seq_len` tokens (only `dynamic` and `longrope` depend on it).
    pub fn inv_freq(&self, seq_len: usize) -> (Vec<f32>, f32) {
        let d = self.rotary_dim as f64;
        let (inv, scale) = match &self.scaling {
            RopeScaling::Default => (self.base_inv_freq(self.theta), 1.0),
            RopeScaling::Linear { factor } => {
                (self.base_inv_freq(self.theta).iter().map(|x| x / factor).collect(), 1.0)
            }
            RopeScaling::Dynamic { factor, original_max } => {
                let base = if seq_len > *original_max {
                    let s = factor * seq_len as f64 / *original_max as f64 - (factor - 1.0);
                    self.theta * s.powf(d / (d - 2.0))
                } else {
                    self.theta
                };
                (self.base_inv_freq(base), 1.0)
            }
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max } => {
                let old = *original_max as f64;
                let low_wl = old / low_freq_factor;
                let high_wl = old / high_freq_factor;
                let inv = self
                    .base_inv_freq(self.theta)
                    .into_iter()
                    .map(|f| {
                        let wl = 2.0 * std::f64::consts::PI / f;
                        if wl < high_wl {
                            f
                        } else if wl > low_wl {
                            f / factor
                        } else {
                            let s = (old / wl - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - s) * f / factor + s * f
                        }
                    })
                    .collect();
                (inv, 1.0)
            }
            RopeScaling::Yarn { factor, original_max, beta_fast, beta_slow, attention_factor, truncate } => {
                let corr = |rot: f64| {
                    d * ((*original_max as f64) / (rot * 2.0 * std::f64::consts::PI)).ln()
                        / (2.0 * self.theta.ln())
                };
                let (mut lo, mut hi) = (corr(*beta_fast), corr(*beta_slow));
                if *truncate {
                    lo = lo.floor();
                    hi = hi.ceil();
                }
                let lo = lo.max(0.0);
                let hi = hi.min(d - 1.0);
                let hi = if lo == hi { hi + 0.001 } else { hi };
                let inv = (0..self.rotary_dim / 2)
                    .map(|i| {
                        let pos_freq = self.theta.powf((2 * i) as f64 / d);
                        let extra = 1.0 / pos_freq;
                        let inter = 1.0 / (factor * pos_freq);
                        let ramp = ((i as f64 - lo) / (hi - lo)).clamp(0.0, 1.0);
                        let ext_factor = 1.0 - ramp;
                        inter * (1.0 - ext_factor) + extra * ext_factor
                    })
                    .collect();
                (inv, *attention_factor)
            }
            RopeScaling::LongRope { short_factor, long_factor, original_max, attention_factor } => {
                let factors = if seq_len > *original_max { long_factor } else { short_factor };
                let inv = (0..self.rotary_dim / 2)
                    .map(|i| 1.0 / (factors[i] * self.theta.powf((2 * i) as f64 / d)))
                    .collect();
                (inv, *attention_factor)
            }
        };
        (inv.into_iter().map(|x: f64| x as f32).collect(), scale as f32)
    }
}
