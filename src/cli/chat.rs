//! `trtllm chat MODEL`: an interactive chat on the serving engine. Each line read from stdin is
//! a user message; the whole conversation is rendered with the model's chat template (or
//! `--chat-template FILE`) and the answer streams to stdout as the engine produces it, through
//! the same engine, detokenizer and stop handling as `trtllm serve` (so the same messages and
//! sampling settings give the same text). Commands: `/reset` (forget the conversation),
//! `/exit` or `/quit` (also end of input). Prompts and notices go to stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc;

use trtllm::runner::SamplingParams;
use trtllm::serve::Event;
use trtllm::text::{ChatMessage, ChatTemplate};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    #[arg(long, default_value = "auto")]
    device: super::DeviceArg,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// A Jinja chat template file that replaces the tokenizer's.
    #[arg(long, value_name = "FILE")]
    chat_template: Option<std::path::PathBuf>,
    /// A system message at the start of every conversation.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    #[arg(long)]
    seed: Option<u64>,
    /// End an answer at this text (repeatable; not printed).
    #[arg(long)]
    stop: Vec<String>,
    /// Longest conversation in tokens (prompt + answer).
    #[arg(long)]
    max_model_len: Option<usize>,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    if trtllm::dist::DistEnv::from_env()?.is_some() {
        anyhow::bail!("chat runs in one process; unset WORLD_SIZE (multi-process launches: `trtllm serve`, `run`, `bench`)");
    }
    let (dir, _) = a.m.resolve()?;
    let mut cfg = trtllm_server::ServeConfig::new(dir);
    cfg.device = super::resolve_device(&a.device)?;
    cfg.dtype = super::parse_dtype(&a.dtype)?;
    cfg.tokenizer_dir = a.m.tokenizer_dir.clone();
    cfg.cuda_graphs = !a.m.no_cuda_graphs;
    cfg.max_batch_size = Some(1);
    cfg.max_seq_len = a.max_model_len;
    let served = trtllm_server::build_engine(&cfg)?;
    let tmpl = match &a.chat_template {
        Some(f) => ChatTemplate::from_file(f, served.chat_template.as_ref())?,
        None => served.chat_template.clone().ok_or_else(|| {
            anyhow::anyhow!("this model has no chat template; give one with --chat-template FILE")
        })?,
    };
    let params = SamplingParams {
        max_new_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        stop: a.stop.clone(),
        ..Default::default()
    };
    params.validate()?;
    let engine = served.engine.handle();
    let limit = engine.limits().max_total_tokens;
    let tty = std::io::stdin().is_terminal();
    let fresh = || a.system.iter().map(|s| ChatMessage::new("system", s.clone())).collect::<Vec<_>>();
    let mut history = fresh();
    if tty {
        eprintln!("trtllm chat: /reset forgets the conversation, /exit ends it");
    }
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if tty {
            eprint!("> ");
            let _ = std::io::stderr().flush();
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                history = fresh();
                eprintln!("(conversation cleared)");
                continue;
            }
            c if c.starts_with('/') => {
                eprintln!("unknown command {c}: /reset, /exit");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::user(line));
        let text = tmpl.render(&history, true)?;
        let ids = served.tokenizer.encode_raw(&text)?;
        if ids.len() >= limit {
            history.pop();
            eprintln!(
                "the conversation is {} tokens, over the limit of {limit}: /reset to start over",
                ids.len()
            );
            continue;
        }
        let p =
            SamplingParams { max_new_tokens: params.max_new_tokens.min(limit - ids.len()), ..params.clone() };
        let (tx, rx) = mpsc::channel::<Event>();
        let _handle = engine.submit(ids, p, Box::new(tx)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut answer = String::new();
        let mut out = std::io::stdout().lock();
        for ev in rx {
            match ev {
                Event::Delta(d) => {
                    write!(out, "{}", d.text)?;
                    out.flush()?;
                    answer.push_str(&d.text);
                }
                Event::Done(_) => break,
                Event::Error(e) => anyhow::bail!("engine error: {e}"),
            }
        }
        writeln!(out)?;
        history.push(ChatMessage::new("assistant", answer));
    }
    served.engine.shutdown();
    Ok(())
}
