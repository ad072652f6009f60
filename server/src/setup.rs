//! From a model directory to a running engine: load the model (HF, checkpoint or engine
//! directory), size the KV cache, start the scheduler thread, load tokenizer and chat template.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trtllm_core::load::{load_model, LlmOptions};

use trtllm_core::runner::ModelRunner;
use trtllm_core::serve::{Engine, Scheduler, SchedulerConfig};

use trtllm_core::text::{ChatTemplate, Tokenizer};
use trtllm_core::{DType, Device, Error, Result};

/// `trtllm serve` settings. `None` means the engine directory's build setting, else a default.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub model_dir: PathBuf,
    pub tokenizer_dir: Option<PathBuf>,
    pub served_model_name: Option<String>,
    pub host: String,
    pub port: u16,
    pub api_key: Option<String>,
    pub max_batch_size: Option<usize>,
    pub max_num_tokens: Option<usize>,
    pub max_seq_len: Option<usize>,
    pub max_queue: usize,
    pub kv_block_size: Option<usize>,
    /// KV cache blocks; default `max_batch_size * ceil(max_seq_len / block_size)`.
    pub kv_blocks: Option<usize>,
    pub prefix_caching: bool,
    /// Replay decode steps as CUDA graphs (GPU, one rank).
    pub cuda_graphs: bool,
    pub device: Device,
    /// Tensor-parallel ranks (threads in this process); default: the checkpoint's, or 1.
    pub tp_size: Option<usize>,
    pub dtype: Option<DType>,
    pub http_workers: usize,
    pub drain_timeout: Duration,
}

impl ServeConfig {
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        ServeConfig {
            model_dir: model_dir.into(),
            tokenizer_dir: None,
            served_model_name: None,
            host: "127.0.0.1".into(),
            port: 8000,
            api_key: None,
            max_batch_size: None,
            max_num_tokens: None,
            max_seq_len: None,
            max_queue: 256,
            kv_block_size: None,
            kv_blocks: None,
            prefix_caching: true,
            cuda_graphs: true,
            device: Device::Cpu,
            tp_size: None,
            dtype: None,
            http_workers: 2,
            drain_timeout: Duration::from_secs(60),
        }
    }
}

/// A started engine and what the HTTP layer needs about the model.
pub struct Served {
    pub engine: Engine,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub model_name: String,
    pub scheduler: SchedulerConfig,
    pub kv_blocks: usize,
}

pub fn build_engine(cfg: &ServeConfig) -> Result<Served> {
    let dir = &cfg.model_dir;
    let mut opts = LlmOptions::for_dir(dir)?;
    opts.load.dtype = cfg.dtype;
    opts.load.device = cfg.device;
    opts.tokenizer_dir = cfg.tokenizer_dir.clone();
    opts.tp_size = cfg.tp_size;
    if trtllm_core::dist::DistEnv::from_env()?.is_some() {
        return Err(Error::Msg(
            "serve runs tensor parallelism as threads of one process (--tp-size); unset WORLD_SIZE/RANK"
                .into(),
        ));
    }
    if let Some(bs) = cfg.kv_block_size {
        opts.kv_block_size = bs;
    }
    let tok_dir = cfg.tokenizer_dir.clone().unwrap_or_else(|| dir.clone());
    if !tok_dir.join("tokenizer.json").exists() {
        return Err(Error::Msg(format!(
            "{}: no tokenizer.json (serving needs one; pass --tokenizer-dir)",
            tok_dir.display()
        )));
    }
    let tokenizer = Tokenizer::from_dir(&tok_dir)?;
    let chat_template = ChatTemplate::for_tokenizer(&tokenizer, &tok_dir)?;
    let model = load_model(dir, &opts)?;
    let mcfg = model.config();
    let mut max_seq_len = cfg.max_seq_len.unwrap_or(opts.max_seq_len);
    if mcfg.max_position_embeddings > 0 {
        max_seq_len = max_seq_len.min(mcfg.max_position_embeddings);
    }
    let max_batch_size = cfg.max_batch_size.unwrap_or(opts.max_batch_size);
    let bs = opts.kv_block_size;
    let kv_blocks = cfg.kv_blocks.unwrap_or(max_batch_size * max_seq_len.div_ceil(bs));
    let sched_cfg = SchedulerConfig {
        max_batch_size,
        max_num_tokens: cfg.max_num_tokens.unwrap_or(2048),
        max_seq_len,
        prefix_caching: cfg.prefix_caching,
    };
    let mut eos = tokenizer.eos_token_ids.clone();
    if eos.is_empty() {
        eos = mcfg.eos_token_ids.clone();
    }
    let dtype = opts.load.weight_dtype(mcfg);
    let kv = ModelRunner::make_kv(model.as_ref(), cfg.device, dtype, bs, kv_blocks)?;
    let runner = ModelRunner::new(model, kv, max_batch_size, max_seq_len, cfg.cuda_graphs);
    let sched = Scheduler::new(runner, sched_cfg.clone(), eos)?;
    let tokenizer = Arc::new(tokenizer);
    let engine = Engine::start(sched, Some(tokenizer.clone()), cfg.max_queue)?;
    let model_name = cfg.served_model_name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "model".into())
    });
    Ok(Served { engine, tokenizer, chat_template, model_name, scheduler: sched_cfg, kv_blocks })
}
