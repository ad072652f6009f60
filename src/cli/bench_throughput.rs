//! `trtllm bench --mode throughput --num-requests N --input-len I --output-len O`: offline
//! throughput through the serving scheduler (continuous batching, chunked prefill, paged KV):
//! all N requests (distinct seeded random prompts, EOS ignored) are queued at once and the
//! scheduler runs until every one has its O tokens. Reports requests/s, output tokens/s, total
//! tokens/s, TTFT and time per output token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use trtllm::load::{load_model, LlmOptions};

use trtllm::runner::SamplingParams;

use trtllm::runner::ModelRunner;
use trtllm::serve::{Scheduler, SchedulerConfig, SeqRequest};
use trtllm::text::Tokenizer;
use trtllm::{DType, Device};

use super::dataset::BenchRequest;

/// Defaults of the throughput mode's sizing flags (also how `bench` tells them given).
pub const NUM_REQUESTS: usize = 64;
pub const MAX_NUM_SEQS: usize = 64;
pub const MAX_NUM_TOKENS: usize = 2048;

/// The throughput mode's flags (flattened into `trtllm bench`).
#[derive(clap::Args, Clone, Debug)]
pub struct ThroughputArgs {
    /// `latency` (one batch through `Llm`, the default) or `throughput` (the serving scheduler).
    #[arg(long, default_value = "latency")]
    pub mode: String,
    /// Throughput mode: requests queued at once.
    #[arg(long, alias = "num_requests", default_value_t = NUM_REQUESTS)]
    pub num_requests: usize,
    /// Throughput mode: most sequences per step.
    #[arg(long, alias = "max_num_seqs", default_value_t = MAX_NUM_SEQS)]
    pub max_num_seqs: usize,
    /// Throughput mode: most tokens (prefill + decode) per step.
    #[arg(long, alias = "max_num_tokens", default_value_t = MAX_NUM_TOKENS)]
    pub max_num_tokens: usize,
    /// Throughput mode: KV blocks (default: max-num-seqs sequences of input + output).
    #[arg(long, alias = "kv_blocks")]
    pub kv_blocks: Option<usize>,
    /// Sampling (both modes): temperature (0 = greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Sampling (both modes): nucleus probability (1 = off).
    #[arg(long, alias = "top_p", default_value_t = 1.0)]
    pub top_p: f32,
    /// Sampling (both modes): top-k (0 = off).
    #[arg(long, alias = "top_k", default_value_t = 0)]
    pub top_k: usize,
    /// Sampling (both modes): min-p (0 = off).
    #[arg(long, alias = "min_p", default_value_t = 0.0)]
    pub min_p: f32,
    /// Sampling (both modes): HF repetition penalty (1 = off).
    #[arg(long, alias = "repetition_penalty", default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Sampling: throughput-mode request `i` (latency mode: batch row `i`) samples with seed `seed + i`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Throughput mode: write one JSON line per scheduler step (prefill tokens, decode rows,
    /// host and execute seconds) to this file.
    #[arg(long)]
    pub timeline: Option<std::path::PathBuf>,
    /// Throughput mode: requests from a JSON-lines file of prompts or a ShareGPT JSON file
    /// (src/cli/bench_dataset.rs) instead of random ids of `--input-len`; `--num-requests` caps
    /// how many are taken.
    #[arg(long)]
    pub dataset: Option<std::path::PathBuf>,
}

impl ThroughputArgs {
    /// The sampling flags as the parameters of a request of `n` new tokens (EOS ignored).
    pub fn sampling(&self, n: usize) -> SamplingParams {
        SamplingParams {
            ignore_eos: true,
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            ..SamplingParams::greedy(n)
        }
    }
}

/// `(mean, p50, p90, p99)` of `v` (sorted here); zeros when empty.
fn stats(v: &mut [f64]) -> [f64; 4] {
    if v.is_empty() {
        return [0.0; 4];
    }
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    [v.iter().sum::<f64>() / v.len() as f64, pct(0.5), pct(0.9), pct(0.99)]
}

/// One scheduler step of the timed run.
#[derive(Clone, Copy, Debug)]
struct StepRecord {
    at_s: f64,
    prefill_tokens: usize,
    decode_tokens: usize,
    host_s: f64,
    execute_s: f64,
}

/// What the caller's flags say about the model and the request shape.
pub struct Common<'a> {
    pub dir: &'a Path,
    pub tokenizer_dir: Option<&'a Path>,
    pub device: Device,
    pub dtype: Option<DType>,
    pub tp_size: Option<usize>,
    pub pp_size: usize,
    /// Dequantize a quantized checkpoint at load (`--dequantize`).
    pub dequantize: bool,
    pub kv_cache_dtype: trtllm::batch::KvCacheDtype,
    pub cuda_graphs: bool,
    pub input_len: usize,
    pub output_len: usize,
    pub json: bool,
}

fn prompt(seed: u64, len: usize, vocab: u32) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            3 + (x % (vocab as u64 - 3)) as u32
        })
        .collect()
}

pub fn main(c: Common<'_>, a: &ThroughputArgs) -> anyhow::Result<()> {
    if a.num_requests == 0 || c.input_len == 0 || c.output_len == 0 {
        anyhow::bail!("--num-requests, --input-len and --output-len must be positive");
    }
    let mut opts = LlmOptions::for_dir(c.dir)?;
    opts.load.dtype = c.dtype;
    opts.load.device = c.device;
    opts.load.keep_quantized = c.dequantize.then_some(false);
    opts.tokenizer_dir = c.tokenizer_dir.map(Path::to_path_buf);
    opts.cuda_graphs = c.cuda_graphs;
    opts.tp_size = c.tp_size;
    opts.pp_size = c.pp_size;
    opts.apply_dist_env()?;
    opts.check()?;
    let flag = Path::new("(bench options)");
    trtllm::config::check_range(flag, "--max-num-seqs", a.max_num_seqs, trtllm::config::MAX_BATCH_SIZE)?;
    trtllm::config::check_range(flag, "--max-num-tokens", a.max_num_tokens, trtllm::config::MAX_NUM_TOKENS)?;
    let t0 = Instant::now();
    let model = load_model(c.dir, &opts)?;
    let load = t0.elapsed();
    let vocab = model.config().vocab_size.max(4) as u32;
    let eos = model.config().eos_token_ids.clone();
    let bs = opts.kv_block_size;
    let reqs: Vec<BenchRequest> = match &a.dataset {
        Some(path) => {
            let tok = Tokenizer::from_dir(c.tokenizer_dir.unwrap_or(c.dir))?;
            super::dataset::load(path, &tok, a.num_requests, c.output_len)?
        }
        None => (0..a.num_requests)
            .map(|i| BenchRequest {
                prompt: prompt(i as u64 + 1, c.input_len, vocab),
                output_len: c.output_len,
            })
            .collect(),
    };
    let (in_tokens, out_budget): (usize, usize) =
        (reqs.iter().map(|r| r.prompt.len()).sum(), reqs.iter().map(|r| r.output_len).sum());
    let seq_len = reqs.iter().map(|r| r.prompt.len() + r.output_len).max().unwrap_or(1);
    let blocks = match a.kv_blocks {
        Some(n) => n,
        None => a.max_num_seqs.checked_mul(seq_len.div_ceil(bs)).and_then(|n| n.checked_add(1)).ok_or_else(
            || {
                anyhow::anyhow!(
                    "--max-num-seqs {} x {seq_len} tokens: the KV block count overflows",
                    a.max_num_seqs
                )
            },
        )?,
    };
    let dtype = opts.load.weight_dtype(model.config());
    let mut kv = ModelRunner::make_kv(model.as_ref(), opts.load.device, dtype, c.kv_cache_dtype, bs, blocks)?;
    trtllm::load::apply_checkpoint_kv_scales(c.dir, &mut kv, opts.ranks())?;
    let cfg = SchedulerConfig {
        max_batch_size: a.max_num_seqs,
        max_num_tokens: a.max_num_tokens,
        max_seq_len: seq_len,
        prefix_caching: true,
        speculative: None,
    };
    let mut runner = ModelRunner::new(model, kv, a.max_num_seqs, seq_len, opts.cuda_graphs);
    let t_graphs = Instant::now();
    let captured = runner.capture_graphs()?;
    let graphs_s = t_graphs.elapsed().as_secs_f64();
    let mut s = Scheduler::new(runner, cfg, eos)?;
    let params_for = |n: usize| a.sampling(n);
    params_for(c.output_len).validate()?;

    // Warm-up (kernels, allocator): one short request, not counted.
    s.add(SeqRequest {
        id: u64::MAX,
        prompt: prompt(u64::MAX, c.input_len.min(16), vocab),
        params: Arc::new(SamplingParams::greedy(2)),
        seed: None,
    })?;
    while s.has_work() {
        s.step()?;
    }
    let start = Instant::now();
    let mut shared: HashMap<usize, Arc<SamplingParams>> = HashMap::new();
    for (i, r) in reqs.iter().enumerate() {
        let params = shared.entry(r.output_len).or_insert_with(|| Arc::new(params_for(r.output_len))).clone();
        s.add(SeqRequest {
            id: i as u64,
            prompt: r.prompt.clone(),
            params,
            seed: Some(a.seed.wrapping_add(i as u64)),
        })?;
    }
    let mut first: HashMap<u64, f64> = HashMap::new();
    let mut last: HashMap<u64, f64> = HashMap::new();
    let mut itl: Vec<f64> = Vec::with_capacity(out_budget);
    let mut timeline: Vec<StepRecord> = Vec::new();
    let (mut steps, mut preempted, mut out_tokens, mut peak) = (0usize, 0usize, 0usize, 0usize);
    while s.has_work() {
        let out = s.step()?;
        let now = start.elapsed().as_secs_f64();
        steps += 1;
        preempted += out.preempted.len();
        peak = peak.max(s.num_running() + out.tokens.iter().filter(|t| t.finish.is_some()).count());
        timeline.push(StepRecord {
            at_s: now,
            prefill_tokens: out.prefill_tokens,
            decode_tokens: out.decode_tokens,
            host_s: out.host_s,
            execute_s: out.execute_s,
        });
        for t in &out.tokens {
            out_tokens += 1;
            first.entry(t.seq).or_insert(now);
            if let Some(prev) = last.insert(t.seq, now) {
                itl.push(now - prev);
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let n = reqs.len() as f64;
    let mut ttft: Vec<f64> = first.values().copied().collect();
    let mut tpots: Vec<f64> =
        first.iter().map(|(k, f)| (last[k] - f) / (reqs[*k as usize].output_len.max(2) - 1) as f64).collect();
    let mut e2e: Vec<f64> = last.values().copied().collect();
    let (ttft_s, tpot_s, itl_s, e2e_s) =
        (stats(&mut ttft), stats(&mut tpots), stats(&mut itl), stats(&mut e2e));
    let tpot = tpot_s[0];
    let total_tokens = in_tokens + out_tokens;
    // The step timeline: pure decode steps vs steps that also prefill, and the host's share.
    let mut dec: Vec<f64> = timeline.iter().filter(|r| r.prefill_tokens == 0).map(|r| r.execute_s).collect();
    let mut mix: Vec<f64> = timeline.iter().filter(|r| r.prefill_tokens > 0).map(|r| r.execute_s).collect();
    let (n_dec, n_mix) = (dec.len(), mix.len());
    let rows_dec = timeline.iter().filter(|r| r.prefill_tokens == 0).map(|r| r.decode_tokens).sum::<usize>();
    let (dec_s, mix_s) = (stats(&mut dec), stats(&mut mix));
    let host_total: f64 = timeline.iter().map(|r| r.host_s).sum();
    let exec_total: f64 = timeline.iter().map(|r| r.execute_s).sum();
    if let Some(path) = &a.timeline {
        let text: String = timeline
            .iter()
            .map(|r| {
                let j = serde_json::json!({"at_s": r.at_s, "prefill_tokens": r.prefill_tokens,
                    "decode_tokens": r.decode_tokens, "host_s": r.host_s, "execute_s": r.execute_s});
                format!("{j}\n")
            })
            .collect();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| anyhow::anyhow!("writing the timeline {}: {e}", path.display()))?;
    }
    if c.json {
        let j = serde_json::json!({
            "mode": "throughput", "model": c.dir.display().to_string(), "device": format!("{:?}", c.device),
            "dtype": format!("{dtype:?}"), "num_requests": reqs.len(), "input_len": c.input_len, "output_len": c.output_len,
            "dataset": a.dataset.as_ref().map(|p| p.display().to_string()), "input_tokens": in_tokens,
            "max_num_seqs": a.max_num_seqs, "max_num_tokens": a.max_num_tokens, "kv_blocks": blocks,
            "wall_s": wall, "requests_per_s": n / wall, "output_tokens_per_s": out_tokens as f64 / wall,
            "total_tokens_per_s": total_tokens as f64 / wall, "ttft_mean_s": ttft_s[0],
            "ttft_p50_s": ttft_s[1], "ttft_p99_s": ttft_s[3], "tpot_mean_s": tpot, "steps": steps, "preemptions": preempted,
            "ttft_s": ttft_s, "tpot_s": tpot_s, "itl_s": itl_s, "e2e_s": e2e_s, "stats_order": "mean p50 p90 p99",
            "decode_steps": n_dec, "decode_step_s": dec_s, "decode_rows_mean": rows_dec as f64 / n_dec.max(1) as f64,
            "mixed_steps": n_mix, "mixed_step_s": mix_s, "host_share": host_total / wall, "execute_share": exec_total / wall,
            "peak_batch": peak, "load_s": load.as_secs_f64(),
            "graphs_captured": captured, "graphs_capture_s": graphs_s,
            "temperature": a.temperature, "top_p": a.top_p, "top_k": a.top_k, "min_p": a.min_p,
            "repetition_penalty": a.repetition_penalty,
        });
        println!("{j}");
        return Ok(());
    }
    println!("model             {}  ({:?}, {dtype:?})", c.dir.display(), c.device);
    println!("requests          {} ({in_tokens} prompt tokens, {out_budget} output tokens)  max-num-seqs {}  max-num-tokens {}  kv blocks {blocks} x {bs}", reqs.len(), a.max_num_seqs, a.max_num_tokens);
    println!("wall              {wall:.2} s  ({steps} steps, {preempted} preemptions, peak batch {peak}, load {:.2} s)", load.as_secs_f64());
    println!("CUDA graphs       {} buckets captured in {graphs_s:.2} s", captured.len());
    println!("requests/s        {:.2}", n / wall);
    println!("output tokens/s   {:.1}", out_tokens as f64 / wall);
    println!("total tokens/s    {:.1}", total_tokens as f64 / wall);
    println!(
        "TTFT              mean {:.1} ms  p50 {:.1} ms  p99 {:.1} ms",
        ttft_s[0] * 1e3,
        ttft_s[1] * 1e3,
        ttft_s[3] * 1e3
    );
    let ms = |v: [f64; 4]| {
        format!(
            "mean {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2} ms",
            v[0] * 1e3,
            v[1] * 1e3,
            v[2] * 1e3,
            v[3] * 1e3
        )
    };
    println!("TPOT              {}", ms(tpot_s));
    println!("ITL               {}", ms(itl_s));
    println!("E2E               {}", ms(e2e_s));
    println!(
        "decode steps      {n_dec} ({:.0} rows avg): {}",
        rows_dec as f64 / n_dec.max(1) as f64,
        ms(dec_s)
    );
    println!("mixed steps       {n_mix}: {}", ms(mix_s));
    println!(
        "host / execute    {:.1}% / {:.1}% of wall",
        100.0 * host_total / wall,
        100.0 * exec_total / wall
    );
    Ok(())
}
