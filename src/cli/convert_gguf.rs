//! `trtllm convert --gguf FILE.gguf --output-dir HF_DIR`: import a llama-, qwen2- or
//! gemma3-architecture GGUF (llama.cpp's format) as a Hugging Face directory —
//! model.safetensors (dequantized), config.json, generation_config.json, tokenizer.json and
//! tokenizer_config.json (with the chat template) — that `trtllm run --model` and transformers
//! load. See `trtllm_core::gguf`.

use std::path::Path;

use trtllm::gguf::{convert_gguf, ConvertOptions, OutDType};

/// Import `gguf` into the HF directory `out` (weights in f32, exact for every quant type).
pub fn run(gguf: &Path, out: &Path) -> anyhow::Result<()> {
    run_with_dtype(gguf, out, None)
}

/// As [`run`], with the weight dtype of `--dtype` (`auto` and `float32`: f32; `float16`,
/// `bfloat16`: rounded to nearest even).
pub fn run_with_dtype(gguf: &Path, out: &Path, dtype: Option<&str>) -> anyhow::Result<()> {
    let dtype = match dtype {
        None | Some("auto") => OutDType::F32,
        Some(s) => OutDType::parse(s)
            .ok_or_else(|| anyhow::anyhow!("--dtype {s}: expected auto, float32, float16 or bfloat16"))?,
    };
    let t0 = std::time::Instant::now();
    // Per-tensor progress only on a terminal: piped or logged output gets the summary line alone.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = convert_gguf(gguf, out, &ConvertOptions { dtype, progress, check_config: Some(loads) })?;
    println!(
        "imported {} ({}, {} tensors, {}) into {} in {:.1}s",
        gguf.display(),
        report.architecture,
        report.tensors,
        dtype.torch_name(),
        report.out_dir.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The loader's parse of an imported config.json (limits, RoPE, shapes).
fn loads(config: &serde_json::Value) -> trtllm::Result<()> {
    trtllm::config::ModelConfig::from_hf_value(config, std::path::Path::new("config.json")).map(|_| ())
}
