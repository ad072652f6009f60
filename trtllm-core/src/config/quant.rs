//! `quantization_config` of an HF `config.json`, parsed into one typed [`QuantConfig`]: how the
//! linear layers' weights are stored ([`WeightQuant`]), which modules stay unquantized, and which
//! extra tensors (static activation / KV scales) a checkpoint may carry that the engine does not
//! use. Supported (anything else is an error naming the method or field and listing these):
//!
//! | `quant_method` | settings | weight tensors per linear |
//! |---|---|---|
//! | `compressed-tensors` | `format` `float-quantized` / `naive-quantized`, weights `type: float`, `num_bits: 8`, `strategy` `tensor` / `channel` / `block` | `weight` E4M3, `weight_scale` `[1]` / `[out, 1]` / `[out/b, in/b]` (+ `input_scale` when activations are static) |
//! | `fbgemm_fp8` | per channel | `weight` E4M3, `weight_scale` `[out, 1]` (+ `input_scale_ub`) |
//! | `fp8` | `weight_block_size` `[b0, b1]`, `activation_scheme: dynamic` | `weight` E4M3, `weight_scale_inv` `[ceil(out/b0), ceil(in/b1)]` |
//! | `awq` | `bits: 4`, `version: gemm`, `zero_point: true` | `qweight` i32 `[in, out/8]`, `qzeros` i32 `[in/g, out/8]`, `scales` f16 `[in/g, out]` |
//! | `gptq` | `bits: 4`, `desc_act: false` | `qweight` i32 `[in/8, out]`, `qzeros` i32 `[in/g, out/8]`, `scales` f16 `[in/g, out]`, `g_idx` i32 `[in]` |

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// How a quantized linear's weight `W[out, in]` is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WeightQuant {
    /// FP8 E4M3 `weight` times f32 scales.
    Fp8(Fp8Scales),
    /// AutoAWQ GEMM packing, groups of `group` input elements, zero points.
    Awq { group: usize },
    /// AutoGPTQ packing (`desc_act = false`); `v1_zero_offset`: zeros stored as `z - 1`
    /// (`checkpoint_format = "gptq"`), false for `gptq_v2`.
    Gptq { group: usize, v1_zero_offset: bool },
}

/// The scales of an FP8 weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Fp8Scales {
    /// One scale per tensor: `weight_scale` `[1]` (or `[]`).
    Tensor,
    /// One per output channel: `weight_scale` `[out, 1]`.
    Channel,
    /// One per `rows x cols` block: `[ceil(out / rows), ceil(in / cols)]`, named `weight_scale`
    /// (compressed-tensors) or `weight_scale_inv` (`fp8`, DeepSeek-V3 / Qwen3-FP8: despite the
    /// name, it multiplies).
    Block { rows: usize, cols: usize, inv_name: bool },
}

/// A module that stays unquantized.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ignore {
    /// compressed-tensors `ignore`: the module's name, or its last components (`lm_head`).
    Name(String),
    /// compressed-tensors `re:` pattern, matched from the start of the module name.
    Regex(String),
    /// HF `modules_to_not_convert`: a substring of the module name.
    Substring(String),
}

/// A parsed `quantization_config`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantConfig {
    /// `quant_method` as written.
    pub method: String,
    pub weight: WeightQuant,
    pub ignore: Vec<Ignore>,
    /// Tensor leaves a quantized checkpoint may carry that this engine does not read (static
    /// activation scales, KV-cache scales): `input_scale`, `k_scale`, ...
    pub unused_leaves: Vec<String>,
}

pub const SUPPORTED: &str =
    "compressed-tensors (float-quantized FP8: tensor, channel or block weight scales), \
fbgemm_fp8 (per-channel FP8), fp8 (block-scaled FP8, weight_block_size), awq (4-bit GEMM, zero points), \
gptq (4-bit, desc_act false)";

fn field(file: &Path, f: &str, msg: impl Into<String>) -> Error {
    Error::config(file, format!("quantization_config.{f}"), msg.into())
}

fn typed<T: serde::de::DeserializeOwned>(v: &Value, file: &Path, method: &str) -> Result<T> {
    serde_json::from_value(v.clone())
        .map_err(|e| field(file, "(schema)", format!("quant_method `{method}`: {e}")))
}

impl QuantConfig {
    /// `config.json`'s `quantization_config` (or the older `compression_config`), if any.
    pub fn from_hf_value(root: &Value, file: &Path) -> Result<Option<Self>> {
        let Some(q) = root.get("quantization_config").or_else(|| root.get("compression_config")) else {
            return Ok(None);
        };
        if q.is_null() {
            return Ok(None);
        }
        let method = q.get("quant_method").and_then(Value::as_str).ok_or_else(|| {
            field(file, "quant_method", format!("missing or not a string; supported: {SUPPORTED}"))
        })?;
        let cfg = match method {
            "compressed-tensors" => compressed_tensors(q, file)?,
            "fbgemm_fp8" => {
                let raw: RawHf = typed(q, file, method)?;
                QuantConfig {
                    method: method.into(),
                    weight: WeightQuant::Fp8(Fp8Scales::Channel),
                    ignore: raw.not_convert(),
                    unused_leaves: vec!["input_scale_ub".into()],
                }
            }
            "fp8" => fp8_block(q, file)?,
            "awq" => awq(q, file)?,
            "gptq" => gptq(q, file)?,
            other => {
                return Err(field(
                    file,
                    "quant_method",
                    format!("unsupported quantization method `{other}`; supported: {SUPPORTED}"),
                ))
            }
        };
        Ok(Some(cfg))
    }

    /// Whether the linear module `module` (its HF path, e.g. `model.layers.0.mlp.down_proj`)
    /// is stored quantized. `lm_head` and embeddings are not linears of the layers and never
    /// are, whatever the lists say.
    pub fn quantizes(&self, module: &str) -> bool {
        !self.ignore.iter().any(|i| match i {
            Ignore::Name(n) => module == n || module.ends_with(&format!(".{n}")),
            Ignore::Regex(r) => regex_match(r, module),
            Ignore::Substring(s) => module.contains(s.as_str()),
        })
    }

    /// The tensor leaves a quantized linear stores, in the order the loader reads them.
    pub fn leaves(&self) -> &'static [&'static str] {
        self.weight.leaves()
    }
}

impl WeightQuant {
    /// The tensor leaves one quantized linear stores, in the order the loader reads them.
    pub fn leaves(&self) -> &'static [&'static str] {
        match self {
            WeightQuant::Fp8(Fp8Scales::Block { inv_name: true, .. }) => &["weight", "weight_scale_inv"],
            WeightQuant::Fp8(_) => &["weight", "weight_scale"],
            WeightQuant::Awq { .. } => &["qweight", "qzeros", "scales"],
            WeightQuant::Gptq { .. } => &["qweight", "qzeros", "scales", "g_idx"],
        }
    }

    /// The stored shape of each leaf for a weight `W[out, in]`.
    pub fn shapes(&self, out: usize, inp: usize) -> Vec<Vec<usize>> {
        match *self {
            WeightQuant::Fp8(Fp8Scales::Tensor) => vec![vec![out, inp], vec![1]],
            WeightQuant::Fp8(Fp8Scales::Channel) => vec![vec![out, inp], vec![out, 1]],
            WeightQuant::Fp8(Fp8Scales::Block { rows, cols, .. }) => {
                vec![vec![out, inp], vec![out.div_ceil(rows), inp.div_ceil(cols)]]
            }
            WeightQuant::Awq { group } => {
                vec![vec![inp, out / 8], vec![inp / group, out / 8], vec![inp / group, out]]
            }
            WeightQuant::Gptq { group, .. } => {
                vec![vec![inp / 8, out], vec![inp / group, out / 8], vec![inp / group, out], vec![inp]]
            }
        }
    }

    /// Whether a `[out, in]` weight can be stored this way (packing and groups fit).
    pub fn fits(&self, out: usize, inp: usize) -> std::result::Result<(), String> {
        match *self {
            WeightQuant::Fp8(_) => Ok(()),
            WeightQuant::Awq { group } | WeightQuant::Gptq { group, .. } => {
                if !out.is_multiple_of(8) || !inp.is_multiple_of(8) || !inp.is_multiple_of(group) {
                    return Err(format!(
                        "a [{out}, {inp}] weight cannot be 4-bit packed with group {group}: out and in must be multiples of 8 and in of the group size"
                    ));
                }
                Ok(())
            }
        }
    }
}

/// The keys HF's own quantizers (fbgemm_fp8, fp8, awq, gptq) share.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHf {
    modules_to_not_convert: Option<Vec<String>>,
}

impl RawHf {
    fn not_convert(&self) -> Vec<Ignore> {
        let mut v: Vec<Ignore> =
            self.modules_to_not_convert.iter().flatten().map(|s| Ignore::Substring(s.clone())).collect();
        v.push(Ignore::Name("lm_head".into()));
        v
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFp8 {
    modules_to_not_convert: Option<Vec<String>>,
    fmt: Option<String>,
    activation_scheme: Option<String>,
    weight_block_size: Option<Vec<usize>>,
}

fn fp8_block(q: &Value, file: &Path) -> Result<QuantConfig> {
    let raw: RawFp8 = typed(q, file, "fp8")?;
    if let Some(f) = raw.fmt.as_deref().filter(|f| *f != "e4m3") {
        return Err(field(file, "fmt", format!("`{f}` is not supported (only e4m3)")));
    }
    if let Some(a) = raw.activation_scheme.as_deref().filter(|a| *a != "dynamic") {
        return Err(field(file, "activation_scheme", format!("`{a}` is not supported (only dynamic)")));
    }
    let block = match raw.weight_block_size.as_deref() {
        Some(&[r, c]) if r > 0 && c > 0 => (r, c),
        Some(other) => {
            return Err(field(file, "weight_block_size", format!("{other:?}: expected two positive sizes")))
        }
        None => {
            return Err(field(
                file,
                "weight_block_size",
                "missing: quant_method `fp8` is supported with block scales (e.g. [128, 128])",
            ))
        }
    };
    let hf = RawHf { modules_to_not_convert: raw.modules_to_not_convert };
    Ok(QuantConfig {
        method: "fp8".into(),
        weight: WeightQuant::Fp8(Fp8Scales::Block { rows: block.0, cols: block.1, inv_name: true }),
        ignore: hf.not_convert(),
        unused_leaves: vec![],
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawInt4 {
    bits: Option<u32>,
    group_size: Option<i64>,
    version: Option<String>,
    zero_point: Option<bool>,
    desc_act: Option<bool>,
    checkpoint_format: Option<String>,
    lm_head: Option<bool>,
    dynamic: Option<Value>,
    modules_to_not_convert: Option<Vec<String>>,
}

impl RawInt4 {
    fn common(&self, file: &Path, method: &str) -> Result<usize> {
        if self.bits != Some(4) {
            return Err(field(file, "bits", format!("{:?}: only 4-bit {method} is supported", self.bits)));
        }
        match self.group_size {
            Some(g) if g > 0 && g % 8 == 0 => Ok(g as usize),
            g => Err(field(
                file,
                "group_size",
                format!("{g:?}: a positive multiple of 8 is required (per-channel -1 is not supported)"),
            )),
        }
    }
}

fn awq(q: &Value, file: &Path) -> Result<QuantConfig> {
    let raw: RawInt4 = typed(q, file, "awq")?;
    let group = raw.common(file, "awq")?;
    let version = raw.version.as_deref().unwrap_or("gemm").to_ascii_lowercase();
    if version != "gemm" {
        return Err(field(file, "version", format!("`{version}` is not supported (only gemm)")));
    }
    if raw.zero_point == Some(false) {
        return Err(field(file, "zero_point", "false is not supported (AWQ with zero points only)"));
    }
    let hf = RawHf { modules_to_not_convert: raw.modules_to_not_convert };
    Ok(QuantConfig {
        method: "awq".into(),
        weight: WeightQuant::Awq { group },
        ignore: hf.not_convert(),
        unused_leaves: vec![],
    })
}

fn gptq(q: &Value, file: &Path) -> Result<QuantConfig> {
    let raw: RawInt4 = typed(q, file, "gptq")?;
    let group = raw.common(file, "gptq")?;
    if raw.desc_act == Some(true) {
        return Err(field(file, "desc_act", "true (act-order) is not supported; only desc_act false"));
    }
    if raw.lm_head == Some(true) {
        return Err(field(file, "lm_head", "a quantized lm_head is not supported"));
    }
    if raw.dynamic.as_ref().is_some_and(|d| d.as_object().is_some_and(|o| !o.is_empty())) {
        return Err(field(file, "dynamic", "per-module overrides are not supported"));
    }
    let v1_zero_offset = match raw.checkpoint_format.as_deref().unwrap_or("gptq") {
        "gptq" => true,
        "gptq_v2" => false,
        other => {
            return Err(field(
                file,
                "checkpoint_format",
                format!("`{other}` is not supported (gptq, gptq_v2)"),
            ))
        }
    };
    let hf = RawHf { modules_to_not_convert: raw.modules_to_not_convert };
    Ok(QuantConfig {
        method: "gptq".into(),
        weight: WeightQuant::Gptq { group, v1_zero_offset },
        ignore: hf.not_convert(),
        unused_leaves: vec![],
    })
}

#[path = "quant_ct.rs"]
mod ct;
use ct::{compressed_tensors, regex_match};

#[cfg(test)]
#[path = "quant_tests.rs"]
mod tests;
