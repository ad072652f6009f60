//! `convert --quantize`: a bf16 / f32 HF directory -> an HF directory in a published quantized
//! layout, which every loader of that layout reads (ours through `quantization_config`):
//!
//! - `fp8`: compressed-tensors float-quantized, E4M3 weights with per-output-channel max-abs
//!   scales (`weight_scale [out, 1]` f32), activations dynamic per token;
//! - `fp8-block`: `quant_method: fp8` with `weight_block_size [128, 128]` (`weight_scale_inv`);
//! - `int4-awq-rtn`: AWQ GEMM packing, round-to-nearest per group (asymmetric min/max, zero
//!   points). Calibrated AWQ (activation-aware scale search) is future work.
//!
//! The linears of the decoder layers are quantized (the same set the loader expects: the plan
//! of the model with the target `quantization_config`); embeddings, norms and `lm_head` are
//! copied as stored. Every other file of the directory (tokenizer, generation config) is copied.

use std::path::Path;

use serde_json::json;
use trtllm_kernels::quant_ref::{fp8_quantize_weight, ScaleLayout};

use super::output::StagedDir;
use crate::config::{QuantConfig, WeightQuant};
use crate::model::{plan_weights, HfCheckpoint};
use crate::weights::write_safetensors;
use crate::{DType, Error, Mapping, Result, Tensor};

/// What `--quantize` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantizeScheme {
    Fp8,
    Fp8Block,
    Int4AwqRtn { group: usize },
}

impl QuantizeScheme {
    pub fn parse(s: &str, group: usize) -> Result<Self> {
        match s {
            "fp8" => Ok(QuantizeScheme::Fp8),
            "fp8-block" => Ok(QuantizeScheme::Fp8Block),
            "int4-awq-rtn" => Ok(QuantizeScheme::Int4AwqRtn { group }),
            other => Err(Error::Msg(format!(
                "unknown --quantize `{other}` (expected fp8, fp8-block, int4-awq-rtn, q8_0 or q4_k)"
            ))),
        }
    }

    /// The `quantization_config` written to `config.json`; the linears whose module name contains
    /// one of `keep` stay in the source dtype (compressed-tensors `ignore` as `re:` patterns, HF
    /// `modules_to_not_convert` for the others).
    pub fn hf_config(self, keep: &[String]) -> serde_json::Value {
        let mut q = self.hf_config_all();
        if !keep.is_empty() {
            let (key, items): (&str, Vec<String>) = match self {
                QuantizeScheme::Fp8 => {
                    let res = keep.iter().map(|k| format!("re:.*{}.*", crate::text::regex_escape(k)));
                    ("ignore", std::iter::once("lm_head".to_string()).chain(res).collect())
                }
                _ => ("modules_to_not_convert", keep.to_vec()),
            };
            q[key] = json!(items);
        }
        q
    }

    fn hf_config_all(self) -> serde_json::Value {
        match self {
            QuantizeScheme::Fp8 => {
                let args = |strategy: &str, dynamic: bool| {
                    json!({"num_bits": 8, "type": "float", "symmetric": true, "strategy": strategy,
                        "dynamic": dynamic, "group_size": null, "block_structure": null, "actorder": null})
                };
                json!({
                    "quant_method": "compressed-tensors", "format": "float-quantized",
                    "quantization_status": "compressed", "kv_cache_scheme": null,
                    "config_groups": {"group_0": {"targets": ["Linear"], "weights": args("channel", false),
                        "input_activations": args("token", true), "output_activations": null}},
                    "ignore": ["lm_head"],
                })
            }
            QuantizeScheme::Fp8Block => json!({"quant_method": "fp8", "fmt": "e4m3",
                "activation_scheme": "dynamic", "weight_block_size": [128, 128]}),
            QuantizeScheme::Int4AwqRtn { group } => json!({"quant_method": "awq", "bits": 4,
                "group_size": group, "version": "gemm", "zero_point": true, "modules_to_not_convert": null}),
        }
    }
}

#[derive(Clone, Debug)]
pub struct QuantizeSummary {
    pub quantized_linears: usize,
    pub copied_tensors: usize,
    pub bytes: u64,
}

/// AutoAWQ's nibble order: column `8w + ORDER[i]` goes to nibble `i` of word `w`.
const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// `codes[r, n]` (0..=15) -> `[r, n / 8]` words in AWQ order.
fn pack_awq(codes: &[u8], r: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0u32; r * n / 8];
    for (i, o) in out.iter_mut().enumerate() {
        let (row, w) = (i / (n / 8), i % (n / 8));
        for (nib, &col) in AWQ_ORDER.iter().enumerate() {
            *o |= (codes[row * n + 8 * w + col] as u32) << (4 * nib);
        }
    }
    out.into_iter().map(|x| x as i32).collect()
}

/// `W[out, in]` -> AWQ `qweight [in, out/8]`, `qzeros [in/g, out/8]`, `scales f16 [in/g, out]`:
/// per (row, group) `s = (max - min) / 15`, `z = round(-min / s)`, `q = clamp(round(w / s) + z)`.
fn awq_rtn(w: &[f32], out: usize, inp: usize, g: usize) -> Result<Vec<(&'static str, Tensor)>> {
    let ng = inp / g;
    let mut q = vec![0u8; inp * out]; // [in, out]
    let mut z = vec![0u8; ng * out]; // [in/g, out]
    let mut s = vec![half::f16::ZERO; ng * out];
    for r in 0..out {
        for gi in 0..ng {
            let vals = &w[r * inp + gi * g..r * inp + (gi + 1) * g];
            let (mn, mx) = vals.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let sc = half::f16::from_f32(((mx - mn) / 15.0).max(1e-5));
            let sf = sc.to_f32();
            let zp = (-mn / sf).round().clamp(0.0, 15.0);
            s[gi * out + r] = sc;
            z[gi * out + r] = zp as u8;
            for (c, &v) in vals.iter().enumerate() {
                q[(gi * g + c) * out + r] = ((v / sf).round() + zp).clamp(0.0, 15.0) as u8;
            }
        }
    }
    Ok(vec![
        ("qweight", Tensor::from_i32(pack_awq(&q, inp, out), &[inp, out / 8])?),
        ("qzeros", Tensor::from_i32(pack_awq(&z, ng, out), &[ng, out / 8])?),
        ("scales", Tensor::from_f16(s, &[ng, out])?),
    ])
}

fn quantize_weight(scheme: QuantizeScheme, w: &Tensor) -> Result<Vec<(&'static str, Tensor)>> {
    let (out, inp) = w.dims2("quantize")?;
    let v = w.to_f32_vec()?;
    let fp8 = |layout, scale_name: &'static str, sshape: Vec<usize>| -> Result<Vec<(&'static str, Tensor)>> {
        let (codes, scales) = fp8_quantize_weight(&v, out, inp, layout);
        Ok(vec![
            ("weight", Tensor::from_f8(codes, &[out, inp])?),
            (scale_name, Tensor::from_f32(scales, &sshape)?),
        ])
    };
    match scheme {
        QuantizeScheme::Fp8 => fp8(ScaleLayout::Row, "weight_scale", vec![out, 1]),
        QuantizeScheme::Fp8Block => {
            fp8(ScaleLayout::Block128, "weight_scale_inv", vec![out.div_ceil(128), inp.div_ceil(128)])
        }
        QuantizeScheme::Int4AwqRtn { group } => awq_rtn(&v, out, inp, group),
    }
}

/// Quantize `hf_dir` into a new HF directory `out`; linears whose module name contains one of
/// `keep` (e.g. `layers.29.`) are copied in the source dtype.
pub fn quantize_hf(
    hf_dir: &Path,
    out: &Path,
    scheme: QuantizeScheme,
    keep: &[String],
    force: bool,
) -> Result<QuantizeSummary> {
    let hf = HfCheckpoint::open(hf_dir)?;
    let cfg_file = hf_dir.join("config.json");
    if let Some(q) = &hf.cfg.quant {
        return Err(Error::config(
            &cfg_file,
            "quantization_config",
            format!("already quantized ({})", q.method),
        ));
    }
    // The plan with the target config names exactly the linears the loader will expect quantized.
    let mut root = crate::error::read_json(&cfg_file)?;
    let qjson = scheme.hf_config(keep);
    let mut cfg = hf.cfg.clone();
    cfg.quant = QuantConfig::from_hf_value(&json!({ "quantization_config": qjson }), &cfg_file)?;
    let specs = plan_weights(hf.entry, &cfg, Mapping::default(), DType::F32)?;
    let report = hf.validate(&plan_weights(hf.entry, &hf.cfg, Mapping::default(), DType::F32)?);
    if !report.is_ok() {
        return Err(Error::Validation { file: hf.files.first_file().to_path_buf(), report: report.render() });
    }
    let resolve = hf.resolver();
    let mut modules = std::collections::BTreeMap::new(); // stored `{m}.weight` -> `{m}`
    for spec in specs.iter().filter(|s| s.quant.is_some()) {
        let q = spec.quant.unwrap_or(WeightQuant::Awq { group: 0 });
        for part in spec.sources.chunks(q.leaves().len()) {
            let m = part[0].name.rsplit_once('.').map_or(part[0].name.clone(), |(m, _)| m.to_string());
            let stored = resolve(&format!("{m}.weight"));
            let sm = stored.strip_suffix(".weight").unwrap_or(&stored).to_string();
            modules.insert(stored, sm);
        }
    }
    let staged = StagedDir::new(out, force)?;
    // Tensors quantize independently: one job each, on the load threads.
    let names: Vec<&String> = hf.files.names().collect();
    let done = crate::weights::map_jobs(crate::weights::load_threads(1), &names, |name| {
        let t = hf.files.read(name)?;
        Ok(match modules.get(*name) {
            Some(m) => {
                let parts =
                    quantize_weight(scheme, &t).map_err(|e| Error::tensor(name.as_str(), e.to_string()))?;
                (true, parts.into_iter().map(|(leaf, q)| (format!("{m}.{leaf}"), q)).collect::<Vec<_>>())
            }
            None => (false, vec![((*name).clone(), t)]),
        })
    })?;
    let quantized = done.iter().filter(|(q, _)| *q).count();
    let copied = done.len() - quantized;
    let tensors: Vec<(String, Tensor)> = done.into_iter().flat_map(|(_, ts)| ts).collect();
    let bytes = tensors.iter().map(|(_, t)| t.size_in_bytes() as u64).sum();
    write_safetensors(&staged.path().join("model.safetensors"), &tensors, None)?;
    if let Some(obj) = root.as_object_mut() {
        obj.insert("quantization_config".into(), qjson);
    }
    let text = serde_json::to_string_pretty(&root).map_err(|e| Error::Msg(e.to_string()))?;
    std::fs::write(staged.path().join("config.json"), text + "\n").map_err(|e| Error::io(out, e))?;
    let entries = std::fs::read_dir(hf_dir).map_err(|e| Error::io(hf_dir, e))?;
    for e in entries.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let skip =
            n == "config.json" || n.ends_with(".safetensors") || n.ends_with(".safetensors.index.json");
        if !skip && e.path().is_file() {
            std::fs::copy(e.path(), staged.path().join(&n)).map_err(|err| Error::io(e.path(), err))?;
        }
    }
    staged.commit()?;
    Ok(QuantizeSummary { quantized_linears: quantized, copied_tensors: copied, bytes })
}
