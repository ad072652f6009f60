//! GGUF -> Hugging Face directory: model.safetensors (dequantized, HF names, llama.cpp's
//! transforms undone), config.json, generation_config.json, tokenizer.json and
//! tokenizer_config.json. Tensors stream one at a time (quantized rows are dequantized in
//! chunks), and the directory is assembled in a temporary sibling and moved into place.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dequant::dequantize;
use super::hf_config::{config_json, generation_config_json};
use super::names::{group_qkv, map_tensor, unpermute_rope, Arch, Transform};
use super::reader::{GgufFile, TensorInfo};
use super::st_writer::{OutDType, SafetensorsWriter};
use super::tokenizer::build as build_tokenizer;
use super::tokenizer_files::{pretty, tokenizer_config, tokenizer_json, write_file};
use crate::{Error, Result};

/// Values dequantized per step when a tensor is streamed.
const CHUNK: usize = 1 << 22;

#[derive(Clone, Debug, Default)]
pub struct ConvertOptions {
    /// Dtype of model.safetensors (default f32: dequantized values are exact in f32).
    pub dtype: OutDType,
    /// Print per-tensor progress to stderr (`\r`-rewritten: for a terminal).
    pub progress: bool,
    /// Checks the config.json the import writes, before anything is written (the CLI passes
    /// the loader's own parse, so an import never writes a config the loader refuses).
    pub check_config: Option<fn(&serde_json::Value) -> Result<()>>,
}

/// What a conversion did.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub architecture: String,
    pub tensors: usize,
    pub out_dir: PathBuf,
}

struct Planned<'a> {
    hf_name: String,
    shape: Vec<usize>,
    info: &'a TensorInfo,
    transform: Transform,
}

fn plan<'a>(g: &'a GgufFile, arch: Arch) -> Result<Vec<Planned<'a>>> {
    let a = arch.gguf_name();
    let heads = g.req_usize(&format!("{a}.attention.head_count"))?;
    let kv_heads = g.opt_usize(&format!("{a}.attention.head_count_kv"))?.unwrap_or(heads);
    let mut out = Vec::with_capacity(g.tensors.len());
    for t in &g.tensors {
        let m = map_tensor(arch, &t.name, heads, kv_heads).map_err(|e| g.error(e))?;
        if !t.ty.can_dequantize() {
            return Err(g.error(format!("tensor `{}`: dequantizing type {} is not supported", t.name, t.ty)));
        }
        out.push(Planned { hf_name: m.hf_name, shape: t.shape(), info: t, transform: m.transform });
    }
    out.sort_by(|a, b| a.hf_name.cmp(&b.hf_name));
    if let Some(w) = out.windows(2).find(|w| w[0].hf_name == w[1].hf_name) {
        return Err(g.error(format!(
            "tensors `{}` and `{}` both map to `{}`",
            w[0].info.name, w[1].info.name, w[0].hf_name
        )));
    }
    Ok(out)
}

/// Dequantize rows `[r0, r1)` of `t` (each `row` values) into `out`.
fn dequant_rows(
    g: &GgufFile,
    t: &TensorInfo,
    data: &[u8],
    row: usize,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<()> {
    if out.is_empty() || row == 0 {
        return Ok(());
    }
    let row_bytes = data.len() / t.dims.iter().skip(1).product::<u64>().max(1) as usize;
    let bytes = &data[rows.start * row_bytes..rows.end * row_bytes];
    let per = (CHUNK / 16 / row).max(1);
    out.par_chunks_mut(row * per)
        .zip(bytes.par_chunks(row_bytes * per))
        .try_for_each(|(o, b)| dequantize(t.ty, b, o))
        .map_err(|e| g.error(format!("tensor `{}`: {e}", t.name)))
}

fn write_tensor(g: &GgufFile, p: &Planned, w: &mut SafetensorsWriter) -> Result<()> {
    let t = p.info;
    let data = g.tensor_data(t)?;
    let row = t.dims.first().copied().unwrap_or(1) as usize;
    let n_rows = (t.n_elements as usize).checked_div(row).unwrap_or(0);
    match p.transform {
        Transform::None => {
            let step = (CHUNK / row.max(1)).max(1);
            let mut buf = vec![0f32; step.min(n_rows) * row];
            let mut r = 0;
            while r < n_rows {
                let r1 = (r + step).min(n_rows);
                let out = &mut buf[..(r1 - r) * row];
                dequant_rows(g, t, data, row, r..r1, out)?;
                w.write(out)?;
                r = r1;
            }
        }
        Transform::SubtractOne | Transform::UnpermuteRope { .. } | Transform::GroupQkv { .. } => {
            let mut vals = vec![0f32; t.n_elements as usize];
            dequant_rows(g, t, data, row, 0..n_rows, &mut vals)?;
            let (rows, cols) = (p.shape[0], p.shape[1..].iter().product());
            let err = |e: String| g.error(format!("tensor `{}`: {e}", t.name));
            match p.transform {
                Transform::UnpermuteRope { heads } => {
                    vals = unpermute_rope(&vals, rows, cols, heads).map_err(err)?
                }
                Transform::GroupQkv { heads, kv_heads } => {
                    vals = group_qkv(&vals, rows, cols, heads, kv_heads).map_err(err)?
                }
                _ => vals.iter_mut().for_each(|v| *v -= 1.0),
            }
            w.write(&vals)?;
        }
    }
    Ok(())
}

/// Write config.json, generation_config.json, tokenizer.json and tokenizer_config.json of the
/// GGUF's metadata into `dir`.
/// `check_config`: the loader's parse, run on config.json before anything is written.
pub(crate) fn write_meta(
    g: &GgufFile,
    arch: Arch,
    dir: &Path,
    dtype: OutDType,
    check_config: Option<fn(&serde_json::Value) -> Result<()>>,
) -> Result<()> {
    let embd =
        g.tensor("token_embd.weight").ok_or_else(|| g.error("tensor `token_embd.weight` is missing"))?;
    let vocab_size =
        *embd.shape().first().ok_or_else(|| g.error("tensor `token_embd.weight` has no dims"))?;
    let config = config_json(g, arch, vocab_size, dtype)?;
    if let Some(check) = check_config {
        check(&config)
            .map_err(|e| g.error(format!("the config.json this file gives would not load: {e}")))?;
    }
    let tok = build_tokenizer(g, arch)?;
    let max_len = config.get("max_position_embeddings").and_then(|v| v.as_u64()).map(|v| v as usize);
    let tok_config = tokenizer_config(g, &tok, max_len)?;
    write_file(&dir.join("config.json"), pretty(&config).as_bytes())?;
    write_file(&dir.join("generation_config.json"), pretty(&generation_config_json(&config)).as_bytes())?;
    // A file that carries Hugging Face's own tokenizer.json (`tokenizer.huggingface.json`, as
    // `convert --quantize q8_0 | q4_k` writes) gets it back verbatim.
    let tok_json = match g.opt_str("tokenizer.huggingface.json")? {
        Some(text) => text.to_string(),
        None => tokenizer_json(&tok),
    };
    crate::text::check_tokenizer_json(&tok_json)
        .map_err(|e| g.error(format!("the tokenizer.json this file gives would not load: {e}")))?;
    write_file(&dir.join("tokenizer.json"), tok_json.as_bytes())?;
    write_file(&dir.join("tokenizer_config.json"), pretty(&tok_config).as_bytes())
}

/// Write the HF directory's files into `dir`.
fn write_all(g: &GgufFile, arch: Arch, plan: &[Planned], dir: &Path, opts: &ConvertOptions) -> Result<()> {
    write_meta(g, arch, dir, opts.dtype, opts.check_config)?;

    let decl: Vec<(String, Vec<usize>)> = plan.iter().map(|p| (p.hf_name.clone(), p.shape.clone())).collect();
    let mut w = SafetensorsWriter::create(&dir.join("model.safetensors"), opts.dtype, &decl)?;
    for (i, p) in plan.iter().enumerate() {
        if opts.progress {
            eprint!("\r[{}/{}] {:<60}", i + 1, plan.len(), p.hf_name);
        }
        write_tensor(g, p, &mut w)?;
    }
    if opts.progress {
        eprintln!();
    }
    w.finish()
}

/// Convert the GGUF file `gguf` into an HF model directory `out`: created if absent; if it
/// exists, the files of the same names are replaced.
pub fn convert_gguf(gguf: &Path, out: &Path, opts: &ConvertOptions) -> Result<ConvertReport> {
    let g = GgufFile::open(gguf)?;
    let arch_name = g.architecture()?.to_string();
    let arch = Arch::of_file(&g)?;
    let plan = plan(&g, arch)?;
    if out.exists() && !out.is_dir() {
        return Err(Error::checkpoint(out, "exists and is not a directory"));
    }
    // A shard index left there would take precedence over the new model.safetensors.
    if out.join("model.safetensors.index.json").exists() {
        return Err(Error::checkpoint(
            out,
            "holds model.safetensors.index.json (a sharded checkpoint); use an empty directory",
        ));
    }

    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    crate::error::remove_stale_temps(parent, &format!(".{name}.tmp-"));
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = write_all(&g, arch, &plan, &tmp, opts).and_then(|()| move_into(&tmp, out));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result?;
    Ok(ConvertReport { architecture: arch_name, tensors: plan.len(), out_dir: out.to_path_buf() })
}

/// Move the finished temporary directory to `out`: a rename when `out` does not exist, else
/// file by file (replacing files of the same name).
fn move_into(tmp: &Path, out: &Path) -> Result<()> {
    if !out.exists() {
        return std::fs::rename(tmp, out).map_err(|e| Error::io(out, e));
    }
    for entry in std::fs::read_dir(tmp).map_err(|e| Error::io(tmp, e))? {
        let entry = entry.map_err(|e| Error::io(tmp, e))?;
        let dst = out.join(entry.file_name());
        std::fs::rename(entry.path(), &dst).map_err(|e| Error::io(&dst, e))?;
    }
    std::fs::remove_dir(tmp).map_err(|e| Error::io(tmp, e))
}
