//! `trtllm run --model DIR --input-text TEXT` (or `--engine-dir DIR [--tokenizer-dir DIR]`):
//! generate and print the continuation. Any of the three directory kinds (HF, checkpoint,
//! engine) loads through either flag.

use std::io::Write;

use trtllm::llm::Llm;

use trtllm::load::LlmOptions;

use trtllm::runner::SamplingParams;

use trtllm::text::StreamDecoder;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    /// Tensor-parallel ranks: one thread per rank (NCCL between GPUs cuda:N.., the in-process
    /// reference on the CPU). Default: the checkpoint's, or 1. Under WORLD_SIZE/RANK (one process
    /// per rank) it is WORLD_SIZE.
    #[arg(long, alias = "tp_size")]
    tp_size: Option<usize>,
    #[arg(long, alias = "input_text")]
    input_text: Vec<String>,
    #[arg(long, alias = "max_output_len", default_value_t = 64)]
    max_output_len: usize,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
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
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let device = super::resolve_device(&a.device)?;
    if a.input_text.is_empty() {
        anyhow::bail!("--input-text is required");
    }
    let dir = &a.m.dir()?;
    let mut opts = LlmOptions::for_dir(dir)?;
    opts.load.dtype = super::parse_dtype(&a.dtype)?;
    opts.load.device = device;
    opts.tp_size = a.tp_size;
    opts.tokenizer_dir = a.m.tokenizer_dir.clone();
    opts.cuda_graphs = !a.m.no_cuda_graphs;
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
    let prompts =
        a.input_text.iter().map(|p| llm.tokenizer()?.encode(p)).collect::<trtllm::Result<Vec<_>>>()?;
    let single = prompts.len() == 1;
    let tok = llm.tokenizer.take();
    let mut dec = StreamDecoder::new();
    let mut stream_err = None;
    let gens = llm.generate_ids(prompts, &params, &mut |_, id| {
        if a.streaming && single && !quiet {
            if let Some(t) = &tok {
                match dec.push(t, id) {
                    Ok(Some(piece)) => {
                        print!("{piece}");
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
        let text = t.decode(&g.token_ids, true)?;
        if a.streaming && single {
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
    Ok(())
}
