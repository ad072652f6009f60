//! `trtllm bench`: latency / throughput of one engine on one device.
//!
//! ```text
//! trtllm bench --model DIR --device cpu --dtype f32 --input-text "Born in ..." --output-len 64 \
//!     --warmup 1 --runs 3
//! trtllm bench --model DIR --device cpu --input-len 512 --output-len 32 --json
//! ```
//!
//! Each run is one `Llm::generate_ids` call: `batch-size` copies of the prompt, greedy,
//! exactly `output-len` new tokens (EOS ignored). The prefill step (all prompts, one forward)
//! produces the first token; decode is the remaining `output-len - 1` steps. Reported (median
//! over the timed runs): TTFT (the prefill step), TPOT (decode time / decode steps), prefill
//! tok/s (prompt tokens / TTFT), decode tok/s (generated tokens after the first / decode time),
//! tokens/s (all generated tokens / whole run), the load time, the achieved bandwidth
//! (weight bytes one decode step reads / TPOT) and that as a share of a roofline: `--peak-gbps`,
//! or by default a bandwidth measured on the device (CPU: a multi-threaded memcpy, counting
//! bytes read + written; GPU: not measured, so without `--peak-gbps` the roofline is left out).
//! On the CPU it also reports the cores busy during the timed runs (process CPU time / wall
//! time) and the heap allocations per decode step (counted by the binary's
//! `#[global_allocator]`, `src/cli/alloc.rs`).
//!
//! The device is a parameter all the way down (`Device` in `LlmOptions::load`); a device
//! only has to say how to measure its peak bandwidth (`measure_peak`).
//!
//! This file: the flags and the timed runs; `bench_report.rs`: the medians, printed as JSON or a
//! table; `bench_bytes.rs`: the weight bytes a decode step reads; `bench_throughput.rs`:
//! `--mode throughput`.

use std::time::{Duration, Instant};

#[path = "bench_dataset.rs"]
mod dataset;
#[path = "bench_throughput.rs"]
mod throughput;

#[path = "bench_bytes.rs"]
mod bytes;
#[path = "bench_report.rs"]
mod report;

use trtllm::llm::Llm;
use trtllm::load::LlmOptions;
use trtllm::runner::SamplingParams;
use trtllm::Device;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    #[arg(long, default_value = "auto")]
    device: super::DeviceArg,
    /// Weight dtype: auto (the checkpoint's), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    /// Load a quantized checkpoint's linears (FP8, INT4, a GGUF's ggml blocks) dequantized to
    /// the weight dtype instead of running the quantized kernels on them (A/B).
    #[arg(long)]
    dequantize: bool,
    /// KV cache element type: auto (the model's dtype) or fp8 (E4M3, per-layer scales; bf16 on
    /// the GPU).
    #[arg(long, alias = "kv_cache_dtype", default_value = "auto")]
    kv_cache_dtype: trtllm::batch::KvCacheDtype,
    #[arg(long, alias = "batch_size", default_value_t = BATCH_SIZE)]
    batch_size: usize,
    /// Latency mode: longest sequence the KV cache holds (prompt + output); default the model's
    /// (capped at 4096). Lower it so a large `--batch-size` fits the card.
    #[arg(long, alias = "max_seq_len")]
    max_seq_len: Option<usize>,
    /// Tensor-parallel ranks (one thread per GPU, NCCL). Default: the checkpoint's, or 1.
    #[arg(long, alias = "tp_size")]
    tp_size: Option<usize>,
    /// Pipeline stages (layers split in contiguous stages, each of tp ranks; HF directories).
    #[arg(long, alias = "pp_size", default_value_t = 1)]
    pp_size: usize,
    /// Prompt length in tokens (a synthetic prompt; ignored with --input-text).
    #[arg(long, alias = "input_len", default_value_t = 128)]
    input_len: usize,
    /// New tokens per sequence (EOS ignored).
    #[arg(long, alias = "output_len", default_value_t = 64)]
    output_len: usize,
    /// Use this prompt (tokenized, no BOS added beyond the tokenizer's own) instead of a synthetic one.
    #[arg(long, alias = "input_text")]
    input_text: Option<String>,
    #[arg(long, default_value_t = WARMUP)]
    warmup: usize,
    #[arg(long, default_value_t = RUNS)]
    runs: usize,
    /// Roofline bandwidth in GB/s (default: measured on the device where we know how).
    #[arg(long, alias = "peak_gbps")]
    peak_gbps: Option<f64>,
    /// One JSON object on stdout instead of the table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    spec: super::spec_args::SpecArgs,
    /// `--mode throughput` and its flags (src/cli/bench_throughput.rs).
    #[command(flatten)]
    throughput: throughput::ThroughputArgs,
}

struct Run {
    prefill: Duration,
    decode: Duration,
    total: Duration,
    /// Allocations (count, bytes) between consecutive decode tokens, one entry per step.
    step_allocs: Vec<(u64, u64)>,
    tokens: Vec<u32>,
}

/// Process CPU time (user + system) in seconds, where the OS tells it.
fn cpu_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the `(comm)`: state is field 3; utime, stime are fields 14, 15.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (u, st): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((u + st) / 100.0) // USER_HZ is 100 on Linux
}

/// The device's bandwidth roofline in GB/s and how it was obtained.
fn measure_peak(device: Device) -> Option<(f64, String)> {
    match device {
        Device::Cpu => {
            let (copy, read) = cpu_bandwidth();
            Some((
                copy,
                format!(
                    "measured memcpy, read+write bytes, {} threads (read-only stream: {read:.1} GB/s)",
                    trtllm::ops::cpu::pool::num_threads()
                ),
            ))
        }
        // No bandwidth measurement on other devices: the roofline needs `--peak-gbps`.
        _ => None,
    }
}

/// (memcpy GB/s counting read + write, read-only GB/s) over 256 MiB buffers on all pool threads.
fn cpu_bandwidth() -> (f64, f64) {
    use trtllm::ops::cpu::pool::{self, split, SendPtr};
    const N: usize = 64 << 20; // f32s = 256 MiB
    let src: Vec<f32> = (0..N).map(|i| i as f32).collect();
    let mut dst = vec![0f32; N];
    let mut best_copy = f64::INFINITY;
    let mut best_read = f64::INFINITY;
    for _ in 0..4 {
        let d = SendPtr(dst.as_mut_ptr());
        let t = Instant::now();
        pool::run(&|tid, n| {
            let r = split(N, tid, n, 1024);
            // SAFETY: each thread copies its own disjoint range of two N-element buffers.
            unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr().add(r.start), d.get().add(r.start), r.len())
            };
        });
        best_copy = best_copy.min(t.elapsed().as_secs_f64());
        let sums = std::sync::Mutex::new(0f32);
        let t = Instant::now();
        pool::run(&|tid, n| {
            let r = split(N, tid, n, 1024);
            let mut acc = [0f32; 16];
            for c in src[r].chunks_exact(16) {
                for i in 0..16 {
                    acc[i] += c[i];
                }
            }
            if let Ok(mut s) = sums.lock() {
                *s += acc.iter().sum::<f32>();
            }
        });
        best_read = best_read.min(t.elapsed().as_secs_f64());
        std::hint::black_box(sums.into_inner().ok());
    }
    std::hint::black_box(&dst);
    let bytes = (N * 4) as f64;
    (2.0 * bytes / best_copy / 1e9, bytes / best_read / 1e9)
}

/// Defaults of the latency mode's flags (also how `check_mode_flags` tells them given).
const BATCH_SIZE: usize = 1;
const WARMUP: usize = 1;
const RUNS: usize = 3;

/// The flags of one mode given (away from their defaults) to the other: an error naming them.
fn check_mode_flags(a: &Args) -> anyhow::Result<()> {
    let t = &a.throughput;
    let (mode, wrong): (&str, Vec<&str>) = if t.mode == "latency" {
        let f = [
            (t.num_requests != throughput::NUM_REQUESTS, "--num-requests"),
            (t.max_num_seqs != throughput::MAX_NUM_SEQS, "--max-num-seqs"),
            (t.max_num_tokens != throughput::MAX_NUM_TOKENS, "--max-num-tokens"),
            (t.kv_blocks.is_some(), "--kv-blocks"),
            (t.timeline.is_some(), "--timeline"),
            (t.dataset.is_some(), "--dataset"),
        ];
        ("throughput", f.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect())
    } else {
        let f = [
            (a.batch_size != BATCH_SIZE, "--batch-size"),
            (a.max_seq_len.is_some(), "--max-seq-len"),
            (a.runs != RUNS, "--runs"),
            (a.warmup != WARMUP, "--warmup"),
        ];
        ("latency", f.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect())
    };
    if !wrong.is_empty() {
        anyhow::bail!("{} apply to --mode {mode} only (this run is --mode {})", wrong.join(", "), t.mode);
    }
    Ok(())
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let dir = &a.m.dir()?;
    if a.throughput.mode != "latency" && a.throughput.mode != "throughput" {
        anyhow::bail!("--mode {}: expected latency or throughput", a.throughput.mode);
    }
    check_mode_flags(&a)?;
    if a.throughput.mode == "throughput" && a.spec.options()?.is_some() {
        anyhow::bail!("speculative decoding is measured in latency mode (`--mode latency`) or under `serve`, not with --mode throughput");
    }
    if a.throughput.mode == "throughput" {
        let (device, dtype) = (super::resolve_device(&a.device)?, super::parse_dtype(&a.dtype)?);
        let c = throughput::Common {
            dir,
            tokenizer_dir: a.m.tokenizer_dir.as_deref(),
            cuda_graphs: !a.m.no_cuda_graphs,
            device,
            dtype,
            tp_size: a.tp_size,
            pp_size: a.pp_size,
            dequantize: a.dequantize,
            kv_cache_dtype: a.kv_cache_dtype,
            input_len: a.input_len,
            output_len: a.output_len,
            json: a.json,
        };
        let r = throughput::main(c, &a.throughput);
        report::print_gemm_tuning();
        return r;
    }
    if a.output_len == 0 || a.batch_size == 0 || a.runs == 0 {
        anyhow::bail!("--output-len, --batch-size and --runs must be positive");
    }
    let device: Device = super::resolve_device(&a.device)?;
    let mut opts = LlmOptions::for_dir(dir)?;
    opts.load.dtype = super::parse_dtype(&a.dtype)?;
    opts.load.device = device;
    opts.load.keep_quantized = a.dequantize.then_some(false);
    opts.kv_cache_dtype = a.kv_cache_dtype;
    opts.tokenizer_dir = a.m.tokenizer_dir.clone();
    opts.cuda_graphs = !a.m.no_cuda_graphs;
    opts.max_batch_size = opts.max_batch_size.max(a.batch_size);
    if let Some(n) = a.max_seq_len {
        opts.max_seq_len = n;
    }
    opts.tp_size = a.tp_size;
    opts.pp_size = a.pp_size;
    opts.speculative = a.spec.options()?;
    opts.apply_dist_env()?;
    let tp = opts.tp_size.unwrap_or(1);
    let t0 = Instant::now();
    let mut llm = Llm::with_options(dir, opts.clone())?;
    let load = t0.elapsed();
    let dtype = opts.load.weight_dtype(llm.model().config());

    let prompt: Vec<u32> = match &a.input_text {
        Some(t) => llm.tokenizer()?.encode(t)?,
        None => synthetic_prompt(&llm, a.input_len)?,
    };
    if prompt.is_empty() {
        anyhow::bail!("the prompt is empty");
    }
    // Greedy unless the sampling flags say otherwise; batch row `i` samples with seed `seed + i`.
    let params = SamplingParams { seed: Some(a.throughput.seed), ..a.throughput.sampling(a.output_len) };
    params.validate()?;

    let run_once = |llm: &mut Llm| -> anyhow::Result<Run> {
        let prompts = vec![prompt.clone(); a.batch_size];
        let mut marks: Vec<(u64, u64)> = Vec::with_capacity(a.output_len * a.batch_size + 1);
        let t = Instant::now();
        let gens = llm.generate_ids(prompts, &params, &mut |seq, _| {
            if seq == 0 {
                // The capacity reserved above keeps this push from allocating.
                marks.push(super::alloc::counts());
            }
        })?;
        let total = t.elapsed();
        let step_allocs = marks.windows(2).map(|w| (w[1].0 - w[0].0, w[1].1 - w[0].1)).collect();
        let g = &gens[0];
        Ok(Run {
            prefill: g.prefill_time,
            decode: g.decode_time,
            total,
            step_allocs,
            tokens: g.token_ids.clone(),
        })
    };
    // TRTLLM_LOAD_TIMING=1: the first request's lazy setup (kernel modules, graph capture).
    let mut first = true;
    let mut run_first = |llm: &mut Llm| -> anyhow::Result<Run> {
        let r = run_once(llm)?;
        if std::mem::take(&mut first) {
            trtllm::device::timing::first_request(r.total.as_secs_f64());
        }
        Ok(r)
    };
    for _ in 0..a.warmup {
        run_first(&mut llm)?;
    }
    llm.take_spec_stats();
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    let mut runs = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        runs.push(run_first(&mut llm)?);
    }
    let wall = wall0.elapsed().as_secs_f64();
    let spec = opts.speculative.clone().map(|o| (o, llm.take_spec_stats()));
    let profile = trtllm::ops::cpu::prof::report();
    let cores_busy = match (cpu0, cpu_time()) {
        (Some(c0), Some(c1)) if wall > 0.0 => Some((c1 - c0) / wall),
        _ => None,
    };

    let packed = device != Device::Cpu && dtype == trtllm::DType::BF16 && !a.dequantize;
    let weight_bytes = bytes::weight_bytes(&llm, dir, device, dtype, packed, tp, a.dequantize)?;
    let peak = match a.peak_gbps {
        Some(p) => Some((p, "--peak-gbps".to_string())),
        None => measure_peak(device).map(|(p, src)| {
            // Tensor parallelism: each of the tp GPUs streams 1/tp of the weights.
            if tp > 1 {
                (p * tp as f64, format!("{src} x {tp} GPUs"))
            } else {
                (p, src)
            }
        }),
    };
    // Decode steps replayed as CUDA graphs: the buckets captured, or why not.
    let graphs = match llm.cuda_graphs() {
        Some(g) if g.off_reason().is_none() => format!("buckets {:?}", g.captured()),
        Some(g) => format!("off: {}", g.off_reason().unwrap_or_default()),
        None => "off".to_string(),
    };
    let text = llm.tokenizer.as_ref().and_then(|t| t.decode(&runs[0].tokens, true).ok());
    let device_name = match device {
        Device::Cpu => format!(
            "cpu ({} threads, {} kernels)",
            trtllm::ops::cpu::pool::num_threads(),
            trtllm::ops::cpu::isa().name()
        ),
        Device::Cuda(n) => format!("cuda:{n}"),
        Device::Meta => "meta".into(),
    };
    report::print(
        &a,
        &report::Measured {
            dir,
            device,
            device_name,
            dtype,
            tp,
            load,
            prompt: &prompt,
            runs: &runs,
            weight_bytes,
            peak,
            cores_busy,
            graphs,
            text,
            profile,
            spec,
        },
    );
    report::print_gemm_tuning();
    Ok(())
}

/// `n` prompt tokens: a fixed English passage, tokenized and repeated (ids cycle through the
/// vocabulary when there is no tokenizer).
fn synthetic_prompt(llm: &Llm, n: usize) -> anyhow::Result<Vec<u32>> {
    const TEXT: &str = "The history of cartography traces the development of maps from the earliest \
        sketches on clay tablets to satellite surveys. Surveyors measured angles with chains and \
        theodolites, engravers cut copper plates, and printers coloured each sheet by hand. ";
    let ids = match &llm.tokenizer {
        Some(t) => t.encode(TEXT)?,
        None => vec![],
    };
    let vocab = llm.model().config().vocab_size.max(2) as u32;
    Ok((0..n)
        .map(|i| if ids.is_empty() { 1 + (i as u32 * 7919) % (vocab - 1) } else { ids[i % ids.len()] })
        .collect())
}
