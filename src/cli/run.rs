//! `trtllm run --model DIR --input-text TEXT` (or `--engine-dir DIR [--tokenizer-dir DIR]`):
//! generate and print the continuation. Any of the three directory kinds (HF, checkpoint,
//! engine) loads through either flag. Prompts: `--input-text` (repeatable), else the lines of
//! `--input-file FILE` (`-`: stdin), else the lines of stdin when it is not a terminal; one
//! prompt per non-empty line. `--stop TEXT` ends a continuation at that text (not printed).

use std::io::Write;

use trtllm::llm::Llm;

use trtllm::load::LlmOptions;

use trtllm::runner::SamplingParams;

use trtllm::text::{StopMatcher, StreamDecoder};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    /// Tensor-parallel ranks: one thread per rank (NCCL between GPUs cuda:N.., the in-process
    /// reference on the CPU). Default: the checkpoint's, or 1. Under WORLD_SIZE/RANK (one process
    /// per rank) it is WORLD_SIZE / --pp-size.
    #[arg(long, alias = "tp_size")]
    tp_size: Option<usize>,
    /// Pipeline stages (layers split in contiguous stages, each of tp ranks; HF directories).
    #[arg(long, alias = "pp_size", default_value_t = 1)]
    pp_size: usize,
    #[arg(long, alias = "input_text")]
    input_text: Vec<String>,
    /// One prompt per non-empty line (`-`: stdin).
    #[arg(long, alias = "input_file", conflicts_with = "input_text")]
    input_file: Option<std::path::PathBuf>,
    /// End a continuation at this text, which is not printed (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    #[arg(long, alias = "max_output_len", default_value_t = 64)]
    max_output_len: usize,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// KV cache element type: auto (the model's dtype) or fp8 (E4M3, per-layer scales).
    #[arg(long, alias = "kv_cache_dtype", default_value = "auto")]
    kv_cache_dtype: trtllm::batch::KvCacheDtype,
    #[arg(long, default_value = "auto")]
    device: super::DeviceArg,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    #[arg(long, alias = "top_k", default_value_t = 0)]
    top_k: usize,
    #[arg(long, alias = "top_p", default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, alias = "min_p", default_value_t = 0.0)]
    min_p: f32,
    #[arg(long, alias = "random_seed")]
    seed: Option<u64>,
    /// Print tokens as they are generated.
    #[arg(long)]
    streaming: bool,
    /// Keep going past EOS.
    #[arg(long, alias = "ignore_eos")]
    ignore_eos: bool,
    #[command(flatten)]
    spec: super::spec_args::SpecArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let device = super::resolve_device(&a.device)?;
    let inputs = inputs(&a)?;
    if inputs.is_empty() {
        anyhow::bail!("no prompt: give --input-text, --input-file FILE, or prompts on stdin");
    }
    if a.stop.iter().any(String::is_empty) {
        anyhow::bail!("--stop must not be empty");
    }
    let dir = &a.m.dir()?;
    let mut opts = LlmOptions::for_dir(dir)?;
    opts.kv_cache_dtype = a.kv_cache_dtype;
    opts.load.dtype = super::parse_dtype(&a.dtype)?;
    opts.load.device = device;
    opts.tp_size = a.tp_size;
    opts.pp_size = a.pp_size;
    opts.tokenizer_dir = a.m.tokenizer_dir.clone();
    opts.cuda_graphs = !a.m.no_cuda_graphs;
    opts.speculative = a.spec.options()?;
    opts.apply_dist_env()?;
    // In a multi-process launch every rank runs the same loop; rank 0 prints.
    let quiet = trtllm::dist::DistEnv::from_env()?.is_some_and(|d| d.rank != 0);
    let t0 = std::time::Instant::now();
    let mut llm = Llm::with_options(dir, opts)?;
    let load = t0.elapsed();
    let params = SamplingParams {
        max_new_tokens: a.max_output_len,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        min_p: a.min_p,
        seed: a.seed,
        ignore_eos: a.ignore_eos,
        ..Default::default()
    };
    let prompts = inputs.iter().map(|p| llm.tokenizer()?.encode(p)).collect::<trtllm::Result<Vec<_>>>()?;
    let single = prompts.len() == 1;
    let tok = llm.tokenizer.take();
    let mut dec = StreamDecoder::new();
    let mut stream_stop = StopMatcher::new(a.stop.clone());
    let mut stream_err = None;
    let gens = llm.generate_ids(prompts, &params, &mut |_, id| {
        if a.streaming && single && !quiet && !stream_stop.stopped() {
            if let Some(t) = &tok {
                match dec.push(t, id) {
                    Ok(Some(piece)) => {
                        print!("{}", stream_stop.push(&piece).0);
                        let _ = std::io::stdout().flush();
                    }
                    Ok(None) => {}
                    Err(e) => stream_err = Some(e),
                }
            }
        }
    });
    llm.tokenizer = tok;
    if let Some(e) = stream_err {
        return Err(e.into());
    }
    let gens = gens?;
    if quiet {
        return Ok(());
    }
    let t = llm.tokenizer()?;
    for (i, g) in gens.iter().enumerate() {
        let text = cut_at_stop(&t.decode(&g.token_ids, true)?, &a.stop);
        if a.streaming && single {
            if !stream_stop.stopped() {
                print!("{}", stream_stop.flush());
            }
            println!();
        } else if single {
            println!("{text}");
        } else {
            println!("[{i}] {text}");
        }
    }
    let g = &gens[0];
    let new = gens.iter().map(|g| g.token_ids.len()).sum::<usize>();
    eprintln!(
        "[load {:.2}s | prompt {} tokens, prefill {:.1} ms | {} new tokens, decode {:.1} tok/s]",
        load.as_secs_f64(),
        g.prompt_ids.len(),
        g.prefill_time.as_secs_f64() * 1e3,
        new,
        (new.saturating_sub(gens.len())) as f64 / g.decode_time.as_secs_f64().max(1e-9)
    );
    if a.spec.options()?.is_some() {
        eprintln!("[{}]", super::spec_args::describe(&llm.take_spec_stats()));
    }
    Ok(())
}

/// The prompts: `--input-text`, else the non-empty lines of `--input-file` (`-`: stdin), else
/// those of stdin when it is not a terminal.
fn inputs(a: &Args) -> anyhow::Result<Vec<String>> {
    use std::io::{IsTerminal, Read};
    if !a.input_text.is_empty() {
        return Ok(a.input_text.clone());
    }
    let mut text = String::new();
    match &a.input_file {
        Some(f) if f.as_os_str() == "-" => {
            std::io::stdin().read_to_string(&mut text)?;
        }
        Some(f) => {
            text = std::fs::read_to_string(f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        }
        None if !std::io::stdin().is_terminal() => {
            std::io::stdin().read_to_string(&mut text)?;
        }
        None => {}
    }
    Ok(text.lines().filter(|l| !l.trim().is_empty()).map(String::from).collect())
}

/// `text` up to the first of `stops` (as the serving stop rule: the stop text is not kept).
fn cut_at_stop(text: &str, stops: &[String]) -> String {
    let mut m = StopMatcher::new(stops.to_vec());
    let (mut out, stopped) = m.push(text);
    if !stopped {
        out.push_str(&m.flush());
    }
    out
}
