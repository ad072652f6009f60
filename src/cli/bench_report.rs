//! `trtllm bench` (latency mode): the medians over the timed runs, printed as one JSON object
//! (`--json`) or as a table.

use std::path::Path;
use std::time::Duration;

use trtllm::{DType, Device};

use super::{Args, Run};

/// What the timed runs measured, and about what.
pub(super) struct Measured<'a> {
    pub dir: &'a Path,
    pub device: Device,
    pub device_name: String,
    pub dtype: DType,
    pub tp: usize,
    pub load: Duration,
    pub prompt: &'a [u32],
    pub runs: &'a [Run],
    /// Weight bytes one decode step reads.
    pub weight_bytes: u64,
    /// The roofline bandwidth in GB/s and where it comes from.
    pub peak: Option<(f64, String)>,
    /// Process CPU time / wall time over the timed runs.
    pub cores_busy: Option<f64>,
    /// The decode CUDA graphs: buckets captured, or why not.
    pub graphs: String,
    /// The first run's tokens, detokenized.
    pub text: Option<String>,
    /// `TRTLLM_PROFILE=1`: (op, calls, seconds).
    pub profile: Vec<(String, u64, f64)>,
    /// Speculative decoding: the options and what it did over the timed runs.
    pub spec: Option<(trtllm::load::SpecOptions, trtllm::serve::SpecStats)>,
}

/// The medians over the timed runs.
struct Stats {
    ttft: f64,
    decode_s: f64,
    tpot: f64,
    prefill_tps: f64,
    decode_tps: f64,
    tps: f64,
    allocs_step: f64,
    alloc_bytes_step: f64,
    gbps: f64,
    same_tokens: bool,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

impl Stats {
    fn new(a: &Args, m: &Measured) -> Self {
        let runs = m.runs;
        let (b, o, i) = (a.batch_size as f64, a.output_len as f64, m.prompt.len() as f64);
        let steps = (a.output_len - 1) as f64;
        let ttft = median(runs.iter().map(|r| r.prefill.as_secs_f64()).collect());
        let decode_s = median(runs.iter().map(|r| r.decode.as_secs_f64()).collect());
        let tpot = if steps > 0.0 {
            median(runs.iter().map(|r| r.decode.as_secs_f64() / steps).collect())
        } else {
            f64::NAN
        };
        let prefill_tps = median(runs.iter().map(|r| b * i / r.prefill.as_secs_f64()).collect());
        let decode_tps = if steps > 0.0 {
            median(runs.iter().map(|r| b * steps / r.decode.as_secs_f64()).collect())
        } else {
            f64::NAN
        };
        let tps = median(runs.iter().map(|r| b * o / r.total.as_secs_f64()).collect());
        let allocs: Vec<f64> = runs.iter().flat_map(|r| r.step_allocs.iter().map(|s| s.0 as f64)).collect();
        let alloc_bytes: Vec<f64> =
            runs.iter().flat_map(|r| r.step_allocs.iter().map(|s| s.1 as f64)).collect();
        let (allocs_step, alloc_bytes_step) = (median(allocs), median(alloc_bytes));
        let gbps = m.weight_bytes as f64 / tpot / 1e9;
        let same_tokens = runs.windows(2).all(|w| w[0].tokens == w[1].tokens);
        Stats {
            ttft,
            decode_s,
            tpot,
            prefill_tps,
            decode_tps,
            tps,
            allocs_step,
            alloc_bytes_step,
            gbps,
            same_tokens,
        }
    }
}

/// Print the report: one JSON object with `--json`, else the table.
pub(super) fn print(a: &Args, m: &Measured) {
    let s = Stats::new(a, m);
    if a.json {
        print_json(a, m, &s);
    } else {
        print_table(a, m, &s);
    }
}

fn print_json(a: &Args, m: &Measured, s: &Stats) {
    let j = serde_json::json!({
        "model": m.dir.display().to_string(),
        "device": m.device_name,
        "dtype": m.dtype.to_string(),
        "batch_size": a.batch_size,
        "tp_size": m.tp,
        "input_len": m.prompt.len(),
        "output_len": a.output_len,
        "warmup": a.warmup,
        "runs": a.runs,
        "temperature": a.throughput.temperature,
        "top_p": a.throughput.top_p,
        "top_k": a.throughput.top_k,
        "min_p": a.throughput.min_p,
        "repetition_penalty": a.throughput.repetition_penalty,
        "load_s": m.load.as_secs_f64(),
        "ttft_ms": s.ttft * 1e3,
        "tpot_ms": s.tpot * 1e3,
        "decode_s": s.decode_s,
        "prefill_tok_s": s.prefill_tps,
        "decode_tok_s": s.decode_tps,
        "tokens_s": s.tps,
        "weight_bytes_per_step": m.weight_bytes,
        "achieved_gbps": s.gbps,
        "peak_gbps": m.peak.as_ref().map(|p| p.0),
        "peak_source": m.peak.as_ref().map(|p| p.1.clone()),
        "roofline_pct": m.peak.as_ref().map(|p| 100.0 * s.gbps / p.0),
        "cores_busy": m.cores_busy,
        "allocs_per_decode_step": s.allocs_step,
        "alloc_bytes_per_decode_step": s.alloc_bytes_step,
        "cuda_graphs": m.graphs,
        "tokens_identical_across_runs": s.same_tokens,
        "speculative": m.spec.as_ref().map(|(o, st)| spec_json(a, o, st, s)),
        "prompt_ids": m.prompt,
        "token_ids": m.runs[0].tokens,
        "text": m.text,
    });
    println!("{j}");
}

/// The speculative-decoding fields of the report: the options, acceptance, tokens per step, the
/// draft model's time per run and the decode rate without it (the verification-bound rate of a
/// self-draft).
fn spec_json(
    a: &Args,
    o: &trtllm::load::SpecOptions,
    st: &trtllm::serve::SpecStats,
    s: &Stats,
) -> serde_json::Value {
    let draft_s = st.draft_s / a.runs.max(1) as f64;
    let tokens = (a.output_len.saturating_sub(1) * a.batch_size) as f64;
    serde_json::json!({
        "method": format!("{:?}", o.method).to_lowercase(),
        "num_speculative_tokens": o.num_tokens,
        "prompt_lookup_min": o.prompt_lookup_min,
        "prompt_lookup_max": o.prompt_lookup_max,
        "model": o.model.as_ref().map(|d| d.display().to_string()),
        "draft_tokens": st.draft_tokens,
        "accepted_tokens": st.accepted_tokens,
        "acceptance_rate": st.acceptance_rate(),
        "tokens_per_step": st.tokens_per_step(),
        "draft_s_per_run": draft_s,
        "decode_tok_s_excl_draft": tokens / (s.decode_s - draft_s).max(1e-9),
    })
}

fn print_table(a: &Args, m: &Measured, s: &Stats) {
    let (dtype, gbps) = (m.dtype, s.gbps);
    println!("model        {}", m.dir.display());
    println!("device       {}", m.device_name);
    println!("dtype        {dtype}   batch {}   prompt {} tokens   output {} tokens   warmup {}   runs {} (median)", a.batch_size, m.prompt.len(), a.output_len, a.warmup, a.runs);
    let t = &a.throughput;
    if t.temperature > 0.0 {
        println!(
            "sampling     temperature {}   top-p {}   top-k {}   min-p {}   repetition penalty {}   seed {}",
            t.temperature, t.top_p, t.top_k, t.min_p, t.repetition_penalty, t.seed
        );
    }
    println!("load         {:.3} s", m.load.as_secs_f64());
    println!("TTFT         {:.2} ms   (prefill {:.1} tok/s)", s.ttft * 1e3, s.prefill_tps);
    println!("TPOT         {:.3} ms   (decode {:.2} tok/s)", s.tpot * 1e3, s.decode_tps);
    println!("tokens/s     {:.2}   (all generated tokens / whole run)", s.tps);
    print!(
        "bandwidth    {gbps:.1} GB/s achieved ({:.1} MB weights per decode step)",
        m.weight_bytes as f64 / 1e6
    );
    match &m.peak {
        Some((p, src)) => println!(" = {:.0}% of {p:.1} GB/s ({src})", 100.0 * gbps / p),
        None => println!(),
    }
    if let Some(c) = m.cores_busy {
        println!("cores busy   {c:.2} (process CPU time / wall time over the timed runs)");
    }
    println!("allocations  {:.0} per decode step ({:.1} KiB)", s.allocs_step, s.alloc_bytes_step / 1024.0);
    if matches!(m.device, Device::Cuda(_)) {
        println!("CUDA graphs  {}", m.graphs);
    }
    if let Some((o, st)) = &m.spec {
        let j = spec_json(a, o, st, s);
        println!(
            "speculative  {:?} K = {}: {:.1}% of {} drafts accepted, {:.2} tokens per step; draft model {:.1} ms per run, decode without it {:.2} tok/s",
            o.method,
            o.num_tokens,
            100.0 * st.acceptance_rate(),
            st.draft_tokens,
            st.tokens_per_step(),
            j["draft_s_per_run"].as_f64().unwrap_or(0.0) * 1e3,
            j["decode_tok_s_excl_draft"].as_f64().unwrap_or(0.0),
        );
    }
    if !s.same_tokens {
        println!("WARNING: the runs generated different tokens");
    }
    if let Some(t) = &m.text {
        println!("text         {t:?}");
    }
    if !m.profile.is_empty() {
        // TRTLLM_PROFILE=1: per-op wall time over warm-up + timed runs.
        let total: f64 = m.profile.iter().map(|p| p.2).sum();
        println!("profile      (TRTLLM_PROFILE=1; warm-up + timed runs; op wall time, {total:.3} s in ops)");
        for (label, calls, secs) in &m.profile {
            println!(
                "  {label:<28} {calls:>8} calls {:>9.3} ms {:>8.2} us/call {:>5.1}%",
                secs * 1e3,
                secs * 1e6 / *calls as f64,
                100.0 * secs / total
            );
        }
    }
}

/// On stderr: the GEMM shapes whose cuBLASLt algorithm was chosen by timing (`launch/lt.rs`),
/// the summed time of one call of each with the chosen vs the first-heuristic algorithm, and the
/// shapes where timing gained most.
pub(super) fn print_gemm_tuning() {
    let rows: Vec<_> = trtllm::device::open_gpus().iter().flat_map(|g| g.lt_algos.tuned()).collect();
    if rows.is_empty() {
        return;
    }
    let (best, first): (f32, f32) = rows.iter().fold((0.0, 0.0), |(b, f), r| (b + r.3, f + r.4));
    eprintln!(
        "GEMM algorithms timed: {} shapes (m <= {}); one call of each: chosen {:.1} us vs first heuristic {:.1} us ({:+.1}%)",
        rows.len(),
        trtllm::kernels::launch::TUNE_MAX_M,
        best,
        first,
        (best / first.max(1e-9) - 1.0) * 100.0
    );
    let mut gains = rows.clone();
    gains.sort_by(|x, y| (y.4 - y.3).total_cmp(&(x.4 - x.3)));
    for (m, n, k, b, f) in gains.iter().take(6).filter(|r| r.4 > r.3) {
        eprintln!("  m={m:<4} n={n:<6} k={k:<6} {b:8.1} us (first heuristic {f:.1} us)");
    }
}
