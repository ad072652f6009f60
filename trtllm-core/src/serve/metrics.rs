//! Serving metrics, shared between the engine thread (writer) and the server (reader), and
//! their Prometheus text rendering. Lock-free counters and gauges; histograms with fixed
//! buckets.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A Prometheus histogram over seconds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
    80.0,
];

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|&b| s <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_us.fetch_add(d.as_micros() as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
    pub fn mean(&self) -> Duration {
        Duration::from_micros(self.sum_us.load(Relaxed) / self.count().max(1))
    }
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            acc += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {acc}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {}", self.count());
    }
}

/// Everything `/metrics` shows.
pub struct EngineMetrics {
    /// Requests accepted and not yet started (the admission queue).
    pub queued_requests: AtomicU64,
    pub running_seqs: AtomicU64,
    pub waiting_seqs: AtomicU64,
    pub kv_blocks_total: AtomicU64,
    /// Free for new sequences (includes cached blocks no sequence uses).
    pub kv_blocks_free: AtomicU64,
    pub kv_blocks_cached: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub generation_tokens: AtomicU64,
    pub prefix_cache_queried_tokens: AtomicU64,
    pub prefix_cache_hit_tokens: AtomicU64,
    pub preemptions: AtomicU64,
    pub requests_ok: AtomicU64,
    pub requests_aborted: AtomicU64,
    pub requests_rejected: AtomicU64,
    pub steps: AtomicU64,
    /// Nanoseconds the engine thread spent on its steps outside the executor (scheduling,
    /// applying the sampled tokens, handing them out, publishing gauges).
    pub engine_host_ns: AtomicU64,
    /// Nanoseconds the output thread spent turning steps' tokens into request events
    /// (detokenization, stop strings, deltas, sends).
    pub output_ns: AtomicU64,
    /// Speculative decoding: sequence-steps that verified drafts, draft tokens proposed,
    /// accepted, and tokens those sequence-steps emitted.
    pub spec_verify_steps: AtomicU64,
    pub spec_draft_tokens: AtomicU64,
    pub spec_accepted_tokens: AtomicU64,
    pub spec_emitted_tokens: AtomicU64,
    pub ttft: Histogram,
    pub itl: Histogram,
    pub e2e: Histogram,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        let z = || AtomicU64::new(0);
        EngineMetrics {
            queued_requests: z(),
            running_seqs: z(),
            waiting_seqs: z(),
            kv_blocks_total: z(),
            kv_blocks_free: z(),
            kv_blocks_cached: z(),
            prompt_tokens: z(),
            generation_tokens: z(),
            prefix_cache_queried_tokens: z(),
            prefix_cache_hit_tokens: z(),
            preemptions: z(),
            requests_ok: z(),
            requests_aborted: z(),
            requests_rejected: z(),
            steps: z(),
            engine_host_ns: z(),
            output_ns: z(),
            spec_verify_steps: z(),
            spec_draft_tokens: z(),
            spec_accepted_tokens: z(),
            spec_emitted_tokens: z(),
            ttft: Histogram::new(LATENCY_BUCKETS),
            itl: Histogram::new(LATENCY_BUCKETS),
            e2e: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// `text` (Prometheus exposition) with the label `key="value"` on every sample (the value
/// escaped as the format requires).
pub fn with_label(text: &str, key: &str, value: &str) -> String {
    let v = value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            out.push_str(line);
        } else if let Some(i) = line.find('{') {
            out.push_str(&line[..=i]);
            out.push_str(&format!("{key}=\"{v}\","));
            out.push_str(&line[i + 1..]);
        } else if let Some((name, val)) = line.split_once(' ') {
            out.push_str(&format!("{name}{{{key}=\"{v}\"}} {val}"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

impl EngineMetrics {
    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self) -> String {
        let mut out = String::new();
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ =
                writeln!(out, "# HELP trtllm_{name} {help}\n# TYPE trtllm_{name} {kind}\ntrtllm_{name} {v}");
        };
        let g = |a: &AtomicU64| a.load(Relaxed);
        one("queue_length", "gauge", "Requests waiting to start.", g(&self.queued_requests));
        one("num_requests_running", "gauge", "Sequences in the running batch.", g(&self.running_seqs));
        one("num_requests_waiting", "gauge", "Sequences waiting (new or preempted).", g(&self.waiting_seqs));
        one("kv_blocks_total", "gauge", "KV cache blocks.", g(&self.kv_blocks_total));
        one(
            "kv_blocks_free",
            "gauge",
            "KV blocks available to new sequences (incl. evictable cached).",
            g(&self.kv_blocks_free),
        );
        one("kv_blocks_cached", "gauge", "KV blocks held by the prefix cache.", g(&self.kv_blocks_cached));
        let total = g(&self.kv_blocks_total).max(1) as f64;
        let used = g(&self.kv_blocks_total).saturating_sub(g(&self.kv_blocks_free)) as f64;
        let _ = writeln!(out, "# HELP trtllm_kv_cache_usage_ratio Fraction of KV blocks in use.\n# TYPE trtllm_kv_cache_usage_ratio gauge\ntrtllm_kv_cache_usage_ratio {}", used / total);
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ =
                writeln!(out, "# HELP trtllm_{name} {help}\n# TYPE trtllm_{name} {kind}\ntrtllm_{name} {v}");
        };
        one("prompt_tokens_total", "counter", "Prompt tokens of started requests.", g(&self.prompt_tokens));
        one("generation_tokens_total", "counter", "Generated tokens.", g(&self.generation_tokens));
        one(
            "prefix_cache_queries_total",
            "counter",
            "Prompt tokens looked up in the prefix cache.",
            g(&self.prefix_cache_queried_tokens),
        );
        one(
            "prefix_cache_hits_total",
            "counter",
            "Prompt tokens served from the prefix cache.",
            g(&self.prefix_cache_hit_tokens),
        );
        one(
            "preemptions_total",
            "counter",
            "Sequences preempted (recomputed) for lack of KV blocks.",
            g(&self.preemptions),
        );
        one("engine_steps_total", "counter", "Scheduler steps.", g(&self.steps));
        let secs = |a: &AtomicU64| g(a) as f64 / 1e9;
        let _ = writeln!(
            out,
            "# HELP trtllm_engine_host_seconds_total Engine-thread time of the steps outside the forward.\n# TYPE trtllm_engine_host_seconds_total counter\ntrtllm_engine_host_seconds_total {}\n# HELP trtllm_output_thread_seconds_total Output-thread time: detokenization, stop strings, events.\n# TYPE trtllm_output_thread_seconds_total counter\ntrtllm_output_thread_seconds_total {}",
            secs(&self.engine_host_ns),
            secs(&self.output_ns)
        );
        let mut one = |name: &str, kind: &str, help: &str, v: u64| {
            let _ =
                writeln!(out, "# HELP trtllm_{name} {help}\n# TYPE trtllm_{name} {kind}\ntrtllm_{name} {v}");
        };
        one(
            "spec_decode_num_drafts_total",
            "counter",
            "Speculative decoding: sequence-steps that verified draft tokens.",
            g(&self.spec_verify_steps),
        );
        one(
            "spec_decode_num_draft_tokens_total",
            "counter",
            "Speculative decoding: draft tokens proposed and verified.",
            g(&self.spec_draft_tokens),
        );
        one(
            "spec_decode_num_accepted_tokens_total",
            "counter",
            "Speculative decoding: draft tokens accepted.",
            g(&self.spec_accepted_tokens),
        );
        one(
            "spec_decode_num_emitted_tokens_total",
            "counter",
            "Speculative decoding: tokens emitted by the sequence-steps that verified drafts.",
            g(&self.spec_emitted_tokens),
        );
        let (drafted, accepted) = (g(&self.spec_draft_tokens), g(&self.spec_accepted_tokens));
        let (steps, emitted) = (g(&self.spec_verify_steps), g(&self.spec_emitted_tokens));
        let _ = writeln!(
            out,
            "# HELP trtllm_spec_decode_acceptance_rate Accepted / proposed draft tokens (0 before any).\n# TYPE trtllm_spec_decode_acceptance_rate gauge\ntrtllm_spec_decode_acceptance_rate {}",
            if drafted == 0 { 0.0 } else { accepted as f64 / drafted as f64 }
        );
        let _ = writeln!(
            out,
            "# HELP trtllm_spec_decode_tokens_per_step Tokens emitted per sequence-step that verified drafts (1 before any).\n# TYPE trtllm_spec_decode_tokens_per_step gauge\ntrtllm_spec_decode_tokens_per_step {}",
            if steps == 0 { 1.0 } else { emitted as f64 / steps as f64 }
        );
        let _ = writeln!(out, "# HELP trtllm_requests_total Finished requests by outcome.\n# TYPE trtllm_requests_total counter");
        for (k, v) in [
            ("ok", &self.requests_ok),
            ("aborted", &self.requests_aborted),
            ("rejected", &self.requests_rejected),
        ] {
            let _ = writeln!(out, "trtllm_requests_total{{outcome=\"{k}\"}} {}", g(v));
        }
        self.ttft.render(
            &mut out,
            "trtllm_time_to_first_token_seconds",
            "Time from arrival to the first token.",
        );
        self.itl.render(
            &mut out,
            "trtllm_inter_token_latency_seconds",
            "Time between consecutive tokens of a sequence.",
        );
        self.e2e.render(
            &mut out,
            "trtllm_e2e_request_latency_seconds",
            "Time from arrival to the last token.",
        );
        out
    }
}

#[cfg(test)]
mod label_tests {
    #[test]
    fn every_sample_gets_the_label() {
        let t = "# HELP a x\na 1\nb_bucket{le=\"0.1\"} 2\n";
        assert_eq!(
            super::with_label(t, "model_name", "m\"1"),
            "# HELP a x\na{model_name=\"m\\\"1\"} 1\nb_bucket{model_name=\"m\\\"1\",le=\"0.1\"} 2\n"
        );
    }
}
