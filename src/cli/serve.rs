//! `trtllm serve MODEL | --model MODEL | --engine-dir DIR`: the OpenAI-compatible server
//! (`trtllm-server`): `/v1/completions`, `/v1/chat/completions`, `/v1/embeddings`,
//! `/v1/models`, `/tokenize`, `/detokenize`, `/health`, `/metrics`. MODEL is a directory or an
//! HF id in the local HF cache. `--port 0` picks a free port; the address is printed on stdout.

use std::time::Duration;

use trtllm_server::ServeConfig;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    /// The model name clients use (default: the directory name).
    #[arg(long, alias = "served_model_name")]
    served_model_name: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on /v1/* (default: $TRTLLM_API_KEY, else none).
    #[arg(long, alias = "api_key")]
    api_key: Option<String>,
    /// Most sequences in one step (default: 256 on a GPU, the engine's on the CPU).
    #[arg(long, alias = "max_batch_size", alias = "max-batch-size", alias = "max_num_seqs")]
    max_num_seqs: Option<usize>,
    /// Most tokens (prefill chunks + decodes) in one step.
    #[arg(long, alias = "max_num_tokens")]
    max_num_tokens: Option<usize>,
    /// Longest prompt + completion (default on a GPU: the model's max_position_embeddings).
    #[arg(long, alias = "max_seq_len", alias = "max-seq-len", alias = "max_model_len")]
    max_model_len: Option<usize>,
    /// Share of the GPU's memory for weights + KV cache + activations; the KV cache gets the rest.
    #[arg(long, alias = "gpu_memory_utilization", default_value_t = 0.9)]
    gpu_memory_utilization: f64,
    /// Requests waiting to start before new ones get 429.
    #[arg(long, alias = "max_queue", default_value_t = 256)]
    max_queue: usize,
    /// KV cache block size in tokens.
    #[arg(long, alias = "kv_block_size")]
    kv_block_size: Option<usize>,
    /// KV cache blocks (overrides the memory sizing; CPU default: max-num-seqs full-length sequences).
    #[arg(long, alias = "kv_blocks")]
    kv_blocks: Option<usize>,
    #[arg(long)]
    no_prefix_caching: bool,
    #[arg(long, default_value = "auto")]
    device: super::DeviceArg,
    /// Tensor-parallel ranks, one thread per GPU (cuda:N..N+tp-1), NCCL between them.
    #[arg(long, alias = "tp_size")]
    tp_size: Option<usize>,
    /// Pipeline stages (layers split in contiguous stages, each of tp ranks; HF directories).
    #[arg(long, alias = "pp_size", default_value_t = 1)]
    pp_size: usize,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// KV cache element type: auto (the model's dtype) or fp8 (E4M3, per-layer scales; twice
    /// the blocks in the same memory).
    #[arg(long, alias = "kv_cache_dtype", default_value = "auto")]
    kv_cache_dtype: trtllm::batch::KvCacheDtype,
    /// A Jinja chat template file that replaces the tokenizer's (e.g. for a base model).
    #[arg(long, alias = "chat_template", value_name = "FILE")]
    chat_template: Option<std::path::PathBuf>,
    /// Seconds to wait for requests in flight after SIGINT / SIGTERM (then they end with an
    /// error and the exit code is 3; 0: at once; a second signal exits at once).
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Seconds a connection has to send a complete request head, from its start or its
    /// previous response (idle connections close after this).
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    /// Seconds a request body has to arrive whole (then 408).
    #[arg(long, default_value_t = 30)]
    body_timeout: u64,
    /// Seconds a response write may wait on a client that reads nothing (then the connection
    /// closes and its request is cancelled).
    #[arg(long, default_value_t = 60)]
    send_timeout: u64,
    /// Connections open at once; one more is answered 503 with Retry-After.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Largest request body in bytes (then 413).
    #[arg(long, default_value_t = 8 << 20)]
    max_body_bytes: usize,
    #[command(flatten)]
    spec: super::spec_args::SpecArgs,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let device = super::resolve_device(&a.device)?;
    let (dir, hf_id) = a.m.resolve()?;
    let mut cfg = ServeConfig::new(dir);
    cfg.tokenizer_dir = a.m.tokenizer_dir;
    cfg.cuda_graphs = !a.m.no_cuda_graphs;
    // A model given by HF id is served under that id (vLLM's default), not the snapshot hash.
    cfg.served_model_name = a.served_model_name.or(hf_id);
    cfg.host = a.host;
    cfg.port = a.port;
    // `--api-key ""` is an error (in `serve`); an empty $TRTLLM_API_KEY means none.
    cfg.api_key = a.api_key.or_else(|| std::env::var("TRTLLM_API_KEY").ok().filter(|k| !k.is_empty()));
    cfg.max_batch_size = a.max_num_seqs;
    cfg.gpu_memory_utilization = a.gpu_memory_utilization;
    cfg.max_num_tokens = a.max_num_tokens;
    cfg.max_seq_len = a.max_model_len;
    cfg.max_queue = a.max_queue;
    cfg.kv_block_size = a.kv_block_size;
    cfg.kv_blocks = a.kv_blocks;
    cfg.prefix_caching = !a.no_prefix_caching;
    cfg.device = device;
    cfg.tp_size = a.tp_size;
    cfg.pp_size = a.pp_size;
    cfg.dtype = super::parse_dtype(&a.dtype)?;
    cfg.kv_cache_dtype = a.kv_cache_dtype;
    cfg.drain_timeout = Duration::from_secs(a.drain_timeout);
    cfg.chat_template = a.chat_template;
    cfg.header_timeout = Duration::from_secs(a.header_timeout);
    cfg.body_timeout = Duration::from_secs(a.body_timeout);
    cfg.send_timeout = Duration::from_secs(a.send_timeout);
    cfg.max_connections = a.max_connections;
    cfg.max_body_bytes = a.max_body_bytes;
    cfg.speculative = a.spec.options()?;
    match trtllm_server::serve(cfg) {
        Err(e @ trtllm_server::ServeError::DrainTimedOut(_)) => {
            eprintln!("error: {e}");
            std::process::exit(3);
        }
        r => Ok(r?),
    }
}
