//! `convert --quantize q8_0 | q4_k --output FILE.gguf`: an HF directory (llama or qwen2
//! architecture) -> one GGUF file that `run / serve / bench --model FILE.gguf` load directly
//! and llama.cpp reads. Tensors are read, quantized and written one at a time (the header with
//! every tensor's type and size goes first), into a temporary sibling renamed into place.
//!
//! Types: norms and biases F32. `q8_0`: every 2-D weight Q8_0. `q4_k`: linears Q4_K where a row
//! is whole 256-value super-blocks, else Q5_0 (llama.cpp's fallback for Q4_K), the embedding and
//! output head Q8_0. A row that is not whole 32-value blocks stays F32. q/k rows are permuted
//! as llama.cpp's converter does for the llama architecture.

use std::path::Path;

use rayon::prelude::*;

use super::gguf_meta::{model_kv, tokenizer_kv};
use crate::config::rope::RopeScaling;
use crate::config::{Activation, AttnKind, ModelConfig};
use crate::gguf::names::{gguf_name, permute_rope, Arch, Transform};
use crate::gguf::{quantize, GgmlType, GgufStreamWriter};
use crate::model::{plan_weights, HfCheckpoint};
use crate::{DType, Error, Mapping, Result};

/// The block format `--quantize` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufQuant {
    Q8_0,
    Q4K,
}

impl GgufQuant {
    /// `q8_0` / `q4_k` (`None`: not a GGUF scheme).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Some(GgufQuant::Q8_0),
            "q4_k" => Some(GgufQuant::Q4K),
            _ => None,
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            GgufQuant::Q8_0 => "q8_0",
            GgufQuant::Q4K => "q4_k",
        }
    }

    /// `general.file_type`: llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0` / `_Q4_K_S`.
    fn file_type(self) -> u32 {
        match self {
            GgufQuant::Q8_0 => 7,
            GgufQuant::Q4K => 14,
        }
    }

    /// The type of a tensor of `shape` (`embed_or_head`: the token embedding or output head).
    pub fn pick(self, shape: &[usize], embed_or_head: bool) -> GgmlType {
        let k = shape.last().copied().unwrap_or(0);
        match (shape.len(), self) {
            (2, GgufQuant::Q4K) if !embed_or_head && k.is_multiple_of(256) => GgmlType::Q4K,
            (2, GgufQuant::Q4K) if !embed_or_head && k.is_multiple_of(32) => GgmlType::Q5_0,
            (2, _) if k.is_multiple_of(32) => GgmlType::Q8_0,
            _ => GgmlType::F32,
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct GgufExportSummary {
    pub tensors: usize,
    /// Tensors per written type, e.g. `[(Q4_K, 30), (F32, 61)]`.
    pub types: Vec<(GgmlType, usize)>,
    pub bytes: u64,
}

/// The GGUF architecture of `cfg`, or an error naming `--quantize` and what it cannot write.
fn check_supported(cfg: &ModelConfig, file: &Path, q: GgufQuant) -> Result<Arch> {
    let flag = format!("--quantize {}", q.flag());
    let bad = |what: String| {
        Error::config(file, "architectures", format!("{flag} cannot write this model: {what}"))
    };
    let arch = match cfg.architecture.as_str() {
        "LlamaForCausalLM" => Arch::Llama,
        "Qwen2ForCausalLM" => Arch::Qwen2,
        other => {
            return Err(bad(format!("{other} (GGUF export writes LlamaForCausalLM and Qwen2ForCausalLM)")))
        }
    };
    let o = &cfg.arch;
    let plain = !o.mlp_bias
        && !o.qk_norm
        && !o.no_rope
        && !o.rope_interleaved
        && o.embedding_multiplier.is_none()
        && o.attention_multiplier.is_none()
        && o.residual_multiplier.is_none()
        && o.logit_scale.is_none()
        && (o.o_bias == (o.qkv_bias && arch == Arch::Llama));
    if !plain {
        return Err(bad("biases, norms or multipliers the GGUF architecture does not carry".into()));
    }
    if cfg.hidden_act != Activation::Silu || cfg.num_experts > 0 {
        return Err(bad("only SiLU MLPs without experts".into()));
    }
    if cfg.layer_types.iter().any(|k| *k == AttnKind::Sliding) {
        return Err(bad("sliding-window layers".into()));
    }
    if !matches!(cfg.rope.scaling, RopeScaling::Default | RopeScaling::Linear { .. })
        || cfg.rope.rotary_dim != cfg.head_dim
    {
        return Err(bad("RoPE other than full-width default or linear scaling".into()));
    }
    Ok(arch)
}

/// One planned tensor: the stored HF name, its GGUF name, shape, type and q/k permutation.
struct Planned {
    stored: String,
    gguf: String,
    shape: Vec<usize>,
    ty: GgmlType,
    permute: Option<usize>,
}

/// Quantize the HF directory `hf_dir` into the GGUF file `out` (`force`: replace a file there).
pub fn quantize_to_gguf(hf_dir: &Path, out: &Path, q: GgufQuant, force: bool) -> Result<GgufExportSummary> {
    let flag = format!("--quantize {}", q.flag());
    if out.exists() && !force {
        return Err(Error::checkpoint(out, format!("exists ({flag} --output): pass --force to replace it")));
    }
    if out.is_dir() {
        return Err(Error::checkpoint(
            out,
            format!("is a directory: {flag} writes one .gguf file (--output FILE.gguf)"),
        ));
    }
    let hf = HfCheckpoint::open(hf_dir)?;
    let cfg_file = hf_dir.join("config.json");
    if let Some(qc) = &hf.cfg.quant {
        return Err(Error::config(
            &cfg_file,
            "quantization_config",
            format!("already quantized ({}); {flag} needs bf16/f16/f32 weights", qc.method),
        ));
    }
    let arch = check_supported(&hf.cfg, &cfg_file, q)?;
    let specs = plan_weights(hf.entry, &hf.cfg, Mapping::default(), DType::F32)?;
    let report = hf.validate(&specs);
    if !report.is_ok() {
        return Err(Error::Validation { file: hf.files.first_file().to_path_buf(), report: report.render() });
    }
    let (heads, kv_heads) = (hf.cfg.num_attention_heads, hf.cfg.num_key_value_heads);
    let resolve = hf.resolver();
    let mut plan: Vec<Planned> = Vec::new();
    for src in specs.iter().flat_map(|s| &s.sources) {
        if plan.iter().any(|p| p.stored == resolve(&src.name)) {
            continue;
        }
        let (g, tr) = gguf_name(arch, &src.name, heads, kv_heads)
            .ok_or_else(|| Error::tensor(&src.name, format!("{flag}: no GGUF name for this tensor")))?;
        let permute = match tr {
            Transform::UnpermuteRope { heads } => Some(heads),
            _ => None,
        };
        let embed_or_head = g.starts_with("token_embd.") || g.starts_with("output.");
        plan.push(Planned {
            stored: resolve(&src.name),
            ty: q.pick(&src.shape, embed_or_head),
            gguf: g,
            shape: src.shape.clone(),
            permute,
        });
    }
    let vocab = hf.cfg.vocab_size;
    let name = hf_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut kv = model_kv(&hf.cfg, arch, &name, q.file_type());
    kv.extend(tokenizer_kv(hf_dir, &hf.cfg, vocab)?);
    let decl: Vec<(String, Vec<u64>, GgmlType)> = plan
        .iter()
        .map(|p| (p.gguf.clone(), p.shape.iter().rev().map(|&d| d as u64).collect(), p.ty))
        .collect();
    let mut w = GgufStreamWriter::create(out, &kv, &decl)?;
    let mut bytes = 0u64;
    for p in &plan {
        let t = hf.files.read(&p.stored)?;
        let mut v = t.to_f32_vec()?;
        drop(t);
        if let Some(h) = p.permute {
            let rows = p.shape[0];
            v = permute_rope(&v, rows, v.len() / rows.max(1), h).map_err(|e| Error::tensor(&p.stored, e))?;
        }
        let data = encode(p.ty, &v, *p.shape.last().unwrap_or(&1))
            .map_err(|e| Error::tensor(&p.stored, format!("{flag}: {e}")))?;
        bytes += data.len() as u64;
        w.write(&data)?;
    }
    w.finish()?;
    let mut types: Vec<(GgmlType, usize)> = vec![];
    for p in &plan {
        match types.iter_mut().find(|(t, _)| *t == p.ty) {
            Some((_, n)) => *n += 1,
            None => types.push((p.ty, 1)),
        }
    }
    Ok(GgufExportSummary { tensors: plan.len(), types, bytes })
}

/// `v` (rows of `row` values) in `ty`'s bytes; block types quantize rows in parallel.
fn encode(ty: GgmlType, v: &[f32], row: usize) -> std::result::Result<Vec<u8>, String> {
    if ty == GgmlType::F32 {
        return Ok(v.iter().flat_map(|x| x.to_le_bytes()).collect());
    }
    let rows_per = (1 << 16) / row.max(1) + 1;
    let parts: Vec<Vec<u8>> = v
        .par_chunks(rows_per * row.max(1))
        .map(|c| quantize(ty, c))
        .collect::<std::result::Result<_, _>>()?;
    Ok(parts.concat())
}
