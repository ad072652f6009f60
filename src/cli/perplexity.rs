//! `trtllm perplexity --model DIR [--dataset data/summarize]`: teacher-forced perplexity of a
//! model over the documents of a set (each document one prefill of at most `--max-tokens`
//! tokens), e.g. a quantized checkpoint beside its source (`convert --quantize`).

use std::path::PathBuf;

use trtllm::eval::perplexity::{score_ids, Nll};
use trtllm::eval::summarize::load_dataset;
use trtllm::llm::Llm;
use trtllm::load::LlmOptions;
use trtllm::text::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    /// A JSONL file of {"id", "document", ...}, or a directory holding one.
    #[arg(long, default_value = "data/summarize")]
    dataset: PathBuf,
    /// Tokens of each document scored (its first ones).
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Score only the first N documents.
    #[arg(long)]
    max_docs: Option<usize>,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// KV cache element type: auto (the model's dtype) or fp8 (E4M3, per-layer scales).
    #[arg(long, alias = "kv_cache_dtype", default_value = "auto")]
    kv_cache_dtype: trtllm::batch::KvCacheDtype,
    #[arg(long, default_value = "auto")]
    device: super::DeviceArg,
    /// One JSON line instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    if a.max_tokens < 2 {
        anyhow::bail!("--max-tokens must be at least 2");
    }
    let device = super::resolve_device(&a.device)?;
    let dir = &a.m.dir()?;
    let mut docs = load_dataset(&a.dataset)?;
    docs.truncate(a.max_docs.unwrap_or(usize::MAX));
    let tok_dir = a.m.tokenizer_dir.as_deref().unwrap_or(dir);
    let tok = Tokenizer::from_dir(tok_dir)?;
    let ids: Vec<Vec<u32>> = docs
        .iter()
        .map(|d| {
            tok.encode(&d.document).map(|mut v| {
                v.truncate(a.max_tokens);
                v
            })
        })
        .collect::<trtllm::Result<_>>()?;
    let mut opts = LlmOptions::for_dir(dir)?;
    opts.load.dtype = super::parse_dtype(&a.dtype)?;
    opts.load.device = device;
    opts.kv_cache_dtype = a.kv_cache_dtype;
    opts.tokenizer_dir = a.m.tokenizer_dir.clone();
    opts.max_seq_len = ids.iter().map(Vec::len).max().unwrap_or(2).max(2);
    let mut llm = Llm::with_options(dir, opts)?;
    let mut total = Nll::default();
    for (d, ids) in docs.iter().zip(&ids) {
        let n = score_ids(&mut llm, ids).map_err(|e| anyhow::anyhow!("document {}: {e}", d.id))?;
        if !a.json {
            println!("{:<24} {:>5} tokens  ppl {:>9.3}", d.id, n.tokens, n.perplexity());
        }
        total.add(n);
    }
    if a.json {
        let j = serde_json::json!({"model": dir.display().to_string(), "documents": docs.len(),
            "tokens": total.tokens, "nll": total.nll, "perplexity": total.perplexity()});
        println!("{j}");
    } else {
        println!("{} documents, {} tokens: perplexity {:.4}", docs.len(), total.tokens, total.perplexity());
    }
    Ok(())
}
