//! `trtllm convert --model-dir HF_DIR --output-dir CKPT_DIR`: HF directory -> our checkpoint
//! (fused, cast, tensor-parallel sharded, streamed tensor by tensor), or
//! `trtllm convert --gguf FILE --output-dir HF_DIR`: GGUF -> HF directory, or
//! `trtllm convert --model-dir HF_DIR --quantize q8_0 | q4_k --output FILE.gguf`: HF directory ->
//! a GGUF of ggml blocks.

use std::path::PathBuf;

use indicatif::{ProgressBar, ProgressStyle};
use trtllm::checkpoint::{convert, ConvertOptions};

#[derive(clap::Args)]
pub struct Args {
    /// HF model directory (config.json, safetensors, tokenizer files).
    #[arg(long, alias = "model_dir", required_unless_present = "gguf", conflicts_with = "gguf")]
    model_dir: Option<PathBuf>,
    /// A GGUF file to import into an HF directory instead.
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// The directory to write (must not exist, or be empty; see --force).
    #[arg(long, alias = "output_dir", required_unless_present = "output")]
    output_dir: Option<PathBuf>,
    /// The GGUF file to write (--quantize q8_0 | q4_k).
    #[arg(long, conflicts_with_all = ["output_dir", "gguf"])]
    output: Option<PathBuf>,
    /// Weight dtype: auto (the HF torch_dtype; f32 for --gguf), float32, float16, bfloat16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    #[arg(long, alias = "tp_size", default_value_t = 1, conflicts_with = "gguf")]
    tp_size: usize,
    #[arg(long, alias = "pp_size", default_value_t = 1, conflicts_with = "gguf")]
    pp_size: usize,
    /// Replace an existing checkpoint at --output-dir.
    #[arg(long)]
    force: bool,
    /// Write a quantized HF directory instead (fp8: compressed-tensors per-channel E4M3;
    /// fp8-block: 128x128 block scales; int4-awq-rtn: AWQ layout, round-to-nearest, no
    /// calibration). `run` / `serve` / `convert` load the result like any HF directory.
    /// q8_0 | q4_k: write one GGUF file (--output FILE.gguf) in ggml's blocks, which `run` /
    /// `serve` / `bench --model FILE.gguf` run directly (and llama.cpp reads).
    #[arg(long, conflicts_with = "gguf")]
    quantize: Option<String>,
    /// INT4 group size (--quantize int4-awq-rtn).
    #[arg(long, default_value_t = 128)]
    group_size: usize,
    /// With --quantize fp8 | fp8-block | int4-awq-rtn: keep the linears whose module name
    /// contains this in the source dtype (repeatable; e.g. `--keep layers.29.`).
    #[arg(long)]
    keep: Vec<String>,
}

fn gib(b: u64) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// `--quantize q8_0 | q4_k --output FILE.gguf`.
fn to_gguf(a: &Args, model_dir: &std::path::Path, q: trtllm::checkpoint::GgufQuant) -> anyhow::Result<()> {
    let flag = format!("--quantize {}", q.flag());
    let Some(out) = &a.output else {
        anyhow::bail!("{flag} writes one GGUF file: give --output FILE.gguf (not --output-dir)")
    };
    if a.tp_size != 1 || a.pp_size != 1 || a.dtype != "auto" || !a.keep.is_empty() {
        anyhow::bail!("{flag} writes a GGUF of ggml blocks: --tp-size/--pp-size/--dtype/--keep do not apply");
    }
    let t0 = std::time::Instant::now();
    let s = trtllm::checkpoint::quantize_to_gguf(model_dir, out, q, a.force)?;
    let types: Vec<String> = s.types.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "quantized {} -> {} ({}): {} tensors ({}), {}, {:.1}s",
        model_dir.display(),
        out.display(),
        q.flag(),
        s.tensors,
        types.join(", "),
        gib(s.bytes),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn main(a: Args) -> anyhow::Result<()> {
    if let Some(gguf) = &a.gguf {
        let Some(out) = &a.output_dir else {
            anyhow::bail!("--gguf writes an HF directory: give --output-dir")
        };
        return match a.dtype.as_str() {
            "auto" => super::convert_gguf::run(gguf, out),
            dtype => super::convert_gguf::run_with_dtype(gguf, out, Some(dtype)),
        };
    }
    let Some(model_dir) = &a.model_dir else { anyhow::bail!("--model-dir (or --gguf) is required") };
    if let Some(q) = a.quantize.as_deref().and_then(trtllm::checkpoint::GgufQuant::parse) {
        return to_gguf(&a, model_dir, q);
    }
    if a.output.is_some() {
        anyhow::bail!("--output names a GGUF file: it goes with --quantize q8_0 | q4_k (other conversions take --output-dir)");
    }
    let Some(output_dir) = &a.output_dir else { anyhow::bail!("--output-dir is required") };
    if let Some(q) = &a.quantize {
        if a.tp_size != 1 || a.pp_size != 1 || a.dtype != "auto" {
            anyhow::bail!("--quantize writes an HF directory: --tp-size/--pp-size/--dtype apply when it is loaded or converted");
        }
        let scheme = trtllm::checkpoint::QuantizeScheme::parse(q, a.group_size)?;
        let t0 = std::time::Instant::now();
        let s = trtllm::checkpoint::quantize_hf(model_dir, output_dir, scheme, &a.keep, a.force)?;
        println!(
            "quantized {} -> {} ({q}): {} linears quantized, {} tensors copied, {}, {:.1}s",
            model_dir.display(),
            output_dir.display(),
            s.quantized_linears,
            s.copied_tensors,
            gib(s.bytes),
            t0.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    if !a.keep.is_empty() {
        anyhow::bail!("--keep goes with --quantize fp8 | fp8-block | int4-awq-rtn");
    }
    let opts = ConvertOptions {
        dtype: super::parse_dtype(&a.dtype)?,
        tp_size: a.tp_size,
        pp_size: a.pp_size,
        force: a.force,
    };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} {msg}",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?,
    );
    let t0 = std::time::Instant::now();
    let summary = convert(model_dir, output_dir, &opts, &mut |p| {
        bar.set_length(p.total_bytes);
        bar.set_position(p.done_bytes);
        bar.set_message(p.tensor.to_string());
    })
    .inspect_err(|_| bar.abandon())?;
    bar.finish_and_clear();
    let total: u64 = summary.rank_bytes.iter().sum();
    println!(
        "converted {} ({}) -> {}: {} engine tensors, tp_size {} pp_size {}, {} in {} rank file(s), {:.1}s",
        summary.architecture,
        summary.dtype,
        output_dir.display(),
        summary.num_tensors,
        a.tp_size,
        a.pp_size,
        gib(total),
        summary.rank_bytes.len(),
        t0.elapsed().as_secs_f64()
    );
    println!("largest tensor: {} ({})", summary.largest_tensor.0, gib(summary.largest_tensor.1));
    if summary.tokenizer_files.is_empty() {
        println!("note: no tokenizer files in {}; pass --tokenizer-dir to `trtllm run`", model_dir.display());
    }
    Ok(())
}
