//! From a model directory to a running engine: load the model (HF, checkpoint or engine
//! directory), size the KV cache, start the scheduler thread, load tokenizer and chat template.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use trtllm_core::batch::{kv_elem_bytes, KvCacheDtype};
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
    /// KV cache blocks; default on a GPU: what `gpu_memory_utilization` of the card leaves after
    /// the weights and the step's reserve; on the CPU `max_batch_size * ceil(max_seq_len / block_size)`.
    pub kv_blocks: Option<usize>,
    /// Share of the GPU's memory the engine may use (weights + KV cache + activations).
    pub gpu_memory_utilization: f64,
    pub prefix_caching: bool,
    /// Replay decode steps as CUDA graphs (GPU, one rank).
    pub cuda_graphs: bool,
    pub device: Device,
    /// Tensor-parallel ranks (threads in this process); default: the checkpoint's, or 1.
    pub tp_size: Option<usize>,
    /// Pipeline stages (threads in this process); 1: none.
    pub pp_size: usize,
    pub dtype: Option<DType>,
    /// How the KV cache stores keys and values (`--kv-cache-dtype`).
    pub kv_cache_dtype: KvCacheDtype,
    pub http_workers: usize,
    pub drain_timeout: Duration,
    /// Time for a complete request head, from a connection's start or its previous response
    /// (so also how long an idle connection stays open).
    pub header_timeout: Duration,
    /// Time for a whole request body.
    pub body_timeout: Duration,
    /// How long a response write may wait on a client that reads nothing.
    pub send_timeout: Duration,
    /// Connections open at once; more are answered 503.
    pub max_connections: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// `--chat-template FILE`: replaces the tokenizer's chat template (applied in `serve`).
    pub chat_template: Option<PathBuf>,
    /// Speculative decoding (prompt lookup or a draft model), for every request.
    pub speculative: Option<trtllm_core::load::SpecOptions>,
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
            gpu_memory_utilization: 0.9,
            prefix_caching: true,
            cuda_graphs: true,
            device: Device::Cpu,
            tp_size: None,
            pp_size: 1,
            dtype: None,
            kv_cache_dtype: KvCacheDtype::Auto,
            http_workers: 2,
            drain_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_body_bytes: 8 << 20,
            chat_template: None,
            speculative: None,
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

/// The load options of `cfg`; in a multi-process launch (WORLD_SIZE), rank 0 leads the others
/// (`LlmOptions::lead_workers`).
fn llm_options(cfg: &ServeConfig) -> Result<LlmOptions> {
    let mut opts = LlmOptions::for_dir(&cfg.model_dir)?;
    opts.load.dtype = cfg.dtype;
    opts.load.device = cfg.device;
    opts.kv_cache_dtype = cfg.kv_cache_dtype;
    opts.tokenizer_dir = cfg.tokenizer_dir.clone();
    opts.tp_size = cfg.tp_size;
    opts.pp_size = cfg.pp_size;
    opts.cuda_graphs = cfg.cuda_graphs;
    opts.speculative = cfg.speculative.clone();
    if let Some(bs) = cfg.kv_block_size {
        opts.kv_block_size = bs;
    }
    if trtllm_core::dist::DistEnv::from_env()?.is_some() {
        if cfg.speculative.is_some() {
            return Err(Error::Msg(
                "speculative decoding is not supported in a multi-process launch (WORLD_SIZE); use --tp-size / --pp-size in one process".into(),
            ));
        }
        opts.apply_dist_env()?;
        opts.lead_workers = true;
    }
    Ok(opts)
}

/// A worker rank of a multi-process `serve` (WORLD_SIZE with RANK != 0): no HTTP server; it
/// loads its shard and runs the steps rank 0 sends until rank 0 stops. `Ok(false)`: this
/// process is not a worker.
pub fn run_worker(cfg: &ServeConfig) -> Result<bool> {
    if trtllm_core::dist::DistEnv::from_env()?.is_none_or(|d| d.rank == 0) {
        return Ok(false);
    }
    let opts = llm_options(cfg)?;
    let model = load_model(&cfg.model_dir, &opts)?;
    let dtype = opts.load.weight_dtype(model.config());
    model.follow(&mut |blocks, bs| {
        ModelRunner::make_kv(&*model, cfg.device, dtype, cfg.kv_cache_dtype, bs, blocks)
    })?;
    Ok(true)
}

pub fn build_engine(cfg: &ServeConfig) -> Result<Served> {
    let dir = &cfg.model_dir;
    if let Some(d) = trtllm_core::dist::DistEnv::from_env()?.filter(|d| d.rank != 0) {
        return Err(Error::Msg(format!(
            "RANK={} of a multi-process launch is a worker: it runs under `trtllm serve` (rank 0 serves)",
            d.rank
        )));
    }
    let opts = llm_options(cfg)?;
    check_flags(cfg)?;
    opts.check()?;
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
    // The draft model (speculative decoding) loads before the KV cache is sized: its weights and
    // its own cache (same blocks) share the memory.
    let draft = match &cfg.speculative {
        Some(s) if s.method == trtllm_core::load::SpecMethod::Draft => {
            Some(trtllm_core::runner::spec::draft::load(s, dir, &opts)?)
        }
        _ => None,
    };
    let mcfg = model.config();
    let on_gpu = matches!(cfg.device, Device::Cuda(_));
    // GPU defaults as vLLM's: 256 sequences, the model's own context. The CPU keeps the engine
    // defaults (its KV cache is host memory sized for every sequence at full length).
    let default_seqs = if on_gpu { 256 } else { opts.max_batch_size };
    let default_len = if on_gpu && mcfg.max_position_embeddings > 0 {
        mcfg.max_position_embeddings
    } else {
        opts.max_seq_len
    };
    let mut max_seq_len = cfg.max_seq_len.unwrap_or(default_len);
    if mcfg.max_position_embeddings > 0 {
        max_seq_len = max_seq_len.min(mcfg.max_position_embeddings);
    }
    let max_batch_size = cfg.max_batch_size.unwrap_or(default_seqs);
    let max_num_tokens = cfg.max_num_tokens.unwrap_or(2048);
    let bs = opts.kv_block_size;
    let dtype = opts.load.weight_dtype(mcfg);
    let kv_blocks = match (cfg.kv_blocks, cfg.device) {
        (Some(n), _) => n,
        (None, Device::Cuda(n)) => {
            let gpu = trtllm_core::device::gpu(n)?;
            let (free, total) = gpu.mem_info().map_err(|e| Error::Device(e.to_string()))?;
            let elem = kv_elem_bytes(dtype, cfg.kv_cache_dtype);
            let mut per_block = crate::sizing::bytes_per_block(&model.kv_layout(), bs, elem);
            if let Some(d) = &draft {
                let m = d.as_deref().unwrap_or(model.as_ref());
                let elem = kv_elem_bytes(opts.load.weight_dtype(m.config()), cfg.kv_cache_dtype);
                per_block += crate::sizing::bytes_per_block(&m.kv_layout(), bs, elem);
            }
            let reserve = crate::sizing::reserve_bytes(
                mcfg.hidden_size,
                mcfg.intermediate_size,
                mcfg.vocab_size,
                max_num_tokens,
                max_batch_size,
            );
            let b = crate::sizing::kv_budget(
                free,
                total,
                cfg.gpu_memory_utilization,
                reserve,
                per_block,
                bs,
                max_seq_len,
            )?;
            b.blocks
        }
        (None, _) => max_batch_size.checked_mul(max_seq_len.div_ceil(bs)).ok_or_else(|| {
            Error::Msg(format!("--max-num-seqs {max_batch_size} x --max-model-len {max_seq_len}: the KV block count overflows"))
        })?,
    };
    let sched_cfg = SchedulerConfig {
        max_batch_size,
        max_num_tokens,
        max_seq_len,
        prefix_caching: cfg.prefix_caching,
        speculative: cfg.speculative.clone(),
    };
    let mut eos = tokenizer.eos_token_ids.clone();
    if eos.is_empty() {
        eos = mcfg.eos_token_ids.clone();
    }
    let mut kv = ModelRunner::make_kv(model.as_ref(), cfg.device, dtype, cfg.kv_cache_dtype, bs, kv_blocks)?;
    if trtllm_core::load::apply_checkpoint_kv_scales(dir, &mut kv, opts.ranks())? {
        eprintln!("trtllm serve: FP8 KV scales from the checkpoint");
    }
    let kv_elem = kv.elem_bytes();
    let mut runner = ModelRunner::new(model, kv, max_batch_size, max_seq_len, cfg.cuda_graphs);
    if let Some(d) = draft {
        let o = LlmOptions { max_batch_size, max_seq_len, ..opts.clone() };
        runner.attach_draft(d, &o)?;
    }
    let t_graphs = std::time::Instant::now();
    let captured = runner.capture_graphs()?;
    if !captured.is_empty() {
        eprintln!(
            "trtllm serve: captured {} decode graphs in {:.2} s",
            captured.len(),
            t_graphs.elapsed().as_secs_f64()
        );
    }
    let graphs = runner.cuda_graphs().map(|g| {
        let b = g.buckets();
        format!(
            "{} buckets, {}..{}",
            b.len(),
            b.first().copied().unwrap_or(0),
            b.last().copied().unwrap_or(0)
        )
    });
    eprintln!(
        "trtllm serve: device {:?}, dtype {dtype:?}, KV {:?} {kv_blocks} blocks x {bs} tokens = {} tokens ({:.2} GiB), \
         max-num-seqs {max_batch_size}, max-model-len {max_seq_len}, max-num-tokens {max_num_tokens}, \
         prefix caching {}, CUDA graphs {}",
        cfg.device,
        cfg.kv_cache_dtype,
        kv_blocks * bs,
        (kv_blocks * crate::sizing::bytes_per_block(&runner.model().kv_layout(), bs, kv_elem)) as f64
            / crate::sizing::GIB,
        if cfg.prefix_caching { "on" } else { "off" },
        graphs.as_deref().unwrap_or("off"),
    );
    if let Some(s) = &cfg.speculative {
        let source = match &s.model {
            Some(d) => format!("draft model {}", d.display()),
            None => format!("prompt lookup, n = {}..{}", s.prompt_lookup_min, s.prompt_lookup_max),
        };
        eprintln!("trtllm serve: speculative decoding: {} draft tokens per step from {source}", s.num_tokens);
    }
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

/// The sizing flags in range (`trtllm_core::config::limits`) before the model loads: a 0 or
/// an absurd value is an error naming the flag and its limit, not a division by zero or an
/// allocation abort.
fn check_flags(cfg: &ServeConfig) -> Result<()> {
    use trtllm_core::config::{check_range, MAX_BATCH_SIZE, MAX_CONTEXT, MAX_KV_BLOCK_SIZE, MAX_NUM_TOKENS};
    let flag = std::path::Path::new("(serve options)");
    let checks = [
        ("--kv-block-size", cfg.kv_block_size, MAX_KV_BLOCK_SIZE),
        ("--max-num-seqs", cfg.max_batch_size, MAX_BATCH_SIZE),
        ("--max-num-tokens", cfg.max_num_tokens, MAX_NUM_TOKENS),
        ("--max-model-len", cfg.max_seq_len, MAX_CONTEXT),
        ("--kv-blocks", cfg.kv_blocks, usize::MAX),
        ("--max-connections", Some(cfg.max_connections), 1 << 20),
        ("--max-body-bytes", Some(cfg.max_body_bytes), 1 << 30),
    ];
    for (name, v, max) in checks {
        if let Some(v) = v {
            check_range(flag, name, v, max)?;
        }
    }
    let u = cfg.gpu_memory_utilization;
    if !(u > 0.0 && u <= 1.0) {
        return Err(Error::Msg(format!("--gpu-memory-utilization must be in (0, 1], got {u}")));
    }
    let timeouts = [
        ("--header-timeout", cfg.header_timeout),
        ("--body-timeout", cfg.body_timeout),
        ("--send-timeout", cfg.send_timeout),
    ];
    for (name, t) in timeouts {
        if t.is_zero() {
            return Err(Error::Msg(format!("{name} must be positive")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_or_absurd_sizes_are_errors_naming_the_flag() {
        type Case = (fn(&mut ServeConfig), &'static str, &'static str);
        let cases: [Case; 9] = [
            (|c| c.kv_block_size = Some(0), "--kv-block-size", "must be positive"),
            (|c| c.max_batch_size = Some(1_000_000_000), "--max-num-seqs", "limit of 65536"),
            (|c| c.max_num_tokens = Some(0), "--max-num-tokens", "must be positive"),
            (|c| c.max_seq_len = Some(1_000_000_000_000), "--max-model-len", "limit of 16777216"),
            (|c| c.kv_blocks = Some(0), "--kv-blocks", "must be positive"),
            (|c| c.max_connections = 0, "--max-connections", "must be positive"),
            (|c| c.max_body_bytes = 1 << 40, "--max-body-bytes", "limit of"),
            (|c| c.header_timeout = Duration::ZERO, "--header-timeout", "must be positive"),
            (|c| c.gpu_memory_utilization = f64::NAN, "--gpu-memory-utilization", "(0, 1]"),
        ];
        for (set, flag, msg) in cases {
            let mut c = ServeConfig::new("unused");
            set(&mut c);
            let e = check_flags(&c).expect_err(flag).to_string();
            assert!(e.contains(flag) && e.contains(msg), "{e}");
        }
        check_flags(&ServeConfig::new("unused")).expect("defaults are in range");
    }
}
