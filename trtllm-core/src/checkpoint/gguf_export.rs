//! `convert --quantize q8_0 | q4_k | f32 --output FILE.gguf`: an HF directory (llama, qwen2,
//! GPT-NeoX, Starcoder2, Falcon, Cohere, OLMo 2 or Gemma 3: `gguf_arch`) -> one GGUF file that `run / serve / bench --model FILE.gguf` load directly
//! and llama.cpp reads. Tensors are read, quantized and written one at a time (the header with
//! every tensor's type and size goes first), into a temporary sibling renamed into place.
//!
//! Types: norms and biases F32. `q8_0`: every 2-D weight Q8_0. `q4_k`: linears Q4_K where a row
//! is whole 256-value super-blocks, else Q5_0 (llama.cpp's fallback for Q4_K), the embedding and
//! output head Q8_0. A row that is not whole 32-value blocks stays F32. q/k rows are permuted
//! as llama.cpp's converter does for the llama architecture; Gemma's norms are written as
//! `1 + w`, as llama.cpp's converter does.

use std::path::Path;

use rayon::prelude::*;

use super::gguf_arch::check_supported;
use super::gguf_meta::{model_kv, tokenizer_kv};
use crate::gguf::names::{gguf_name, permute_rope, ungroup_qkv, Transform};
use crate::gguf::{quantize, GgmlType, GgufStreamWriter};
use crate::model::{plan_weights, HfCheckpoint};
use crate::{DType, Error, Mapping, Result};

/// The block format `--quantize` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgufQuant {
    Q8_0,
    Q4K,
    /// Every tensor F32 (an exact copy of the weights in llama.cpp's layout).
    F32,
}

impl GgufQuant {
    /// `q8_0` / `q4_k` (`None`: not a GGUF scheme).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Some(GgufQuant::Q8_0),
            "q4_k" => Some(GgufQuant::Q4K),
            "f32" => Some(GgufQuant::F32),
            _ => None,
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            GgufQuant::Q8_0 => "q8_0",
            GgufQuant::Q4K => "q4_k",
            GgufQuant::F32 => "f32",
        }
    }

    /// `general.file_type`: llama.cpp's `LLAMA_FTYPE_MOSTLY_Q8_0` / `_Q4_K_S` / `ALL_F32`.
    fn file_type(self) -> u32 {
        match self {
            GgufQuant::F32 => 0,
            GgufQuant::Q8_0 => 7,
            GgufQuant::Q4K => 14,
        }
    }

    /// The type of a tensor of `shape` (`embed_or_head`: the token embedding or output head).
    pub fn pick(self, shape: &[usize], embed_or_head: bool) -> GgmlType {
        let k = shape.last().copied().unwrap_or(0);
        match (shape.len(), self) {
            (_, GgufQuant::F32) => GgmlType::F32,
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

/// One planned tensor: the stored HF name, its GGUF name, shape, type and q/k permutation.
struct Planned {
    stored: String,
    gguf: String,
    shape: Vec<usize>,
    ty: GgmlType,
    transform: Transform,
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
    let resolve = hf.resolver();
    let arch = check_supported(&hf.cfg, &cfg_file, &flag, |n| hf.files.contains(n))?;
    let specs = plan_weights(hf.entry, &hf.cfg, Mapping::default(), DType::F32)?;
    let report = hf.validate(&specs);
    if !report.is_ok() {
        return Err(Error::Validation { file: hf.files.first_file().to_path_buf(), report: report.render() });
    }
    let (heads, kv_heads) = (hf.cfg.num_attention_heads, hf.cfg.num_key_value_heads);
    let mut plan: Vec<Planned> = Vec::new();
    for src in specs.iter().flat_map(|s| &s.sources) {
        let stored = resolve(&src.name);
        if plan.iter().any(|p| p.stored == stored) {
            continue;
        }
        let (g, transform) = gguf_name(arch, &stored, heads, kv_heads)
            .ok_or_else(|| Error::tensor(&stored, format!("{flag}: no GGUF name for this tensor")))?;
        let embed_or_head = g.starts_with("token_embd.") || g.starts_with("output.");
        plan.push(Planned {
            stored,
            ty: q.pick(&src.shape, embed_or_head),
            gguf: g,
            shape: src.shape.clone(),
            transform,
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
        let (rows, err) = (p.shape[0], |e| Error::tensor(&p.stored, e));
        let cols = v.len() / rows.max(1);
        match p.transform {
            Transform::UnpermuteRope { heads } => v = permute_rope(&v, rows, cols, heads).map_err(err)?,
            Transform::GroupQkv { heads, kv_heads } => {
                v = ungroup_qkv(&v, rows, cols, heads, kv_heads).map_err(err)?
            }
            Transform::None => {}
            // Gemma norms: llama.cpp stores `1 + w`.
            Transform::SubtractOne => v.iter_mut().for_each(|x| *x += 1.0),
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
