//! `trtllm summarize --model DIR | --engine-dir DIR --dataset DIR`: TensorRT-LLM's summarize.py.
//! Summarizes every document greedily (the chat template around "Summarize the following text
//! in one sentence:" when the model has one, else "{doc}\n\nTL;DR:"), prints ROUGE-1/2/L against
//! the reference summaries and, with `--hf-outputs` (scripts/hf_summarize.py), against HF
//! transformers' summaries; exits non-zero when ROUGE-1 (vs HF if given, else vs references) is
//! below `--rouge-threshold`.

use std::path::PathBuf;

use trtllm::eval::summarize::{load_dataset, load_hf_outputs, prompt_ids, score, summarize_timed};
use trtllm::llm::Llm;
use trtllm::load::LlmOptions;
use trtllm::text::{ChatTemplate, Tokenizer};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    /// A JSONL file of {"id", "document", "summary"}, or a directory holding one.
    #[arg(long, default_value = "data/summarize")]
    dataset: PathBuf,
    /// Summarize only the first N documents.
    #[arg(long, alias = "max_docs")]
    max_docs: Option<usize>,
    #[arg(long, alias = "max_output_len", default_value_t = 64)]
    max_output_len: usize,
    /// Documents generated together.
    #[arg(long, alias = "batch_size", default_value_t = 4)]
    batch_size: usize,
    /// HF transformers' summaries for the same prompts (scripts/hf_summarize.py).
    #[arg(long, alias = "hf_outputs")]
    hf_outputs: Option<PathBuf>,
    /// Fail when ROUGE-1 (vs HF, else vs references; 0-100) is below this.
    #[arg(long, alias = "rouge_threshold")]
    rouge_threshold: Option<f64>,
    /// Write our summaries as a JSON list of {"id", "output"} (the --hf-outputs format).
    #[arg(long, alias = "output_file")]
    output_file: Option<PathBuf>,
    /// Print every summary.
    #[arg(long)]
    show_outputs: bool,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    #[arg(long, default_value = "auto")]
    device: super::DeviceArg,
    #[command(flatten)]
    spec: super::spec_args::SpecArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let device = super::resolve_device(&a.device)?;
    let dir = &a.m.dir()?;
    let mut docs = load_dataset(&a.dataset)?;
    docs.truncate(a.max_docs.unwrap_or(usize::MAX));
    if docs.is_empty() {
        anyhow::bail!("--max-docs 0: nothing to summarize");
    }
    let hf = a.hf_outputs.as_deref().map(load_hf_outputs).transpose()?;

    let tok_dir = a.m.tokenizer_dir.as_deref().unwrap_or(dir);
    if !tok_dir.join("tokenizer.json").exists() {
        anyhow::bail!("{}: no tokenizer.json (pass --tokenizer-dir)", tok_dir.display());
    }
    let tok = Tokenizer::from_dir(tok_dir)?;
    let chat = ChatTemplate::for_tokenizer(&tok, tok_dir)?;
    let prompts = docs
        .iter()
        .map(|d| prompt_ids(&tok, chat.as_ref(), &d.document))
        .collect::<trtllm::Result<Vec<_>>>()?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);

    let mut opts = LlmOptions::for_dir(dir)?;
    opts.load.dtype = super::parse_dtype(&a.dtype)?;
    opts.load.device = device;
    opts.tokenizer_dir = a.m.tokenizer_dir.clone();
    opts.max_batch_size = a.batch_size.max(1);
    opts.max_seq_len = longest + a.max_output_len;
    opts.speculative = a.spec.options()?;
    opts.cuda_graphs = !a.m.no_cuda_graphs;
    let t0 = std::time::Instant::now();
    let mut llm = Llm::with_options(dir, opts)?;
    let prompt_kind = match &chat {
        Some(t) => format!("chat template ({})", t.origin.display()),
        None => "\"{doc}\\n\\nTL;DR:\"".to_string(),
    };
    println!(
        "summarize: {} documents of {}, greedy, max {} new tokens, prompt: {prompt_kind} (longest {longest} tokens)",
        docs.len(),
        a.dataset.display(),
        a.max_output_len
    );
    let n = docs.len();
    let (ours, timing) = summarize_timed(&mut llm, &prompts, a.max_output_len, a.batch_size, &mut |done| {
        eprint!("\r[{done}/{n} documents, {:.0}s]", t0.elapsed().as_secs_f64());
    })?;
    eprintln!();
    println!(
        "generation: {} new tokens, prefill {:.2}s, decode {:.2}s ({} tokens, {:.1} tok/s)",
        timing.new_tokens,
        timing.prefill_s,
        timing.decode_s,
        timing.decode_tokens,
        timing.decode_tok_s()
    );
    if a.spec.options()?.is_some() {
        println!("{}", super::spec_args::describe(&llm.take_spec_stats()));
    }
    // TRTLLM_PROFILE=1: per-op wall time over the whole run (prefill included).
    for (label, calls, secs) in trtllm::ops::cpu::prof::report() {
        println!(
            "profile {label:<32} {calls:>8} calls {:>9.1} ms {:>8.1} us/call",
            secs * 1e3,
            secs * 1e6 / calls as f64
        );
    }

    if a.show_outputs {
        for (d, o) in docs.iter().zip(&ours) {
            println!("[{}] {o}", d.id);
            if let Some(h) = hf.as_ref().and_then(|h| h.get(&d.id)).filter(|h| h.trim() != o) {
                println!("[{}] HF: {}", d.id, h.trim());
            }
        }
    }
    if let Some(path) = &a.output_file {
        let list: Vec<_> =
            docs.iter().zip(&ours).map(|(d, o)| serde_json::json!({"id": d.id, "output": o})).collect();
        let text = serde_json::to_string_pretty(&list)?;
        std::fs::write(path, text + "\n").map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let hf_file = a.hf_outputs.clone().unwrap_or_default();
    let scores = score(&docs, &ours, hf.as_ref(), &hf_file)?;
    print!("{}", scores.render());
    if let Some(t) = a.rouge_threshold {
        let (r1, what) = scores.gate();
        if r1 < t {
            println!("FAIL: {what} {r1:.2} < {t}");
            anyhow::bail!("summarize failed: {what} {r1:.2} is below --rouge-threshold {t}");
        }
        println!("PASS: {what} {r1:.2} >= {t}");
    }
    Ok(())
}
