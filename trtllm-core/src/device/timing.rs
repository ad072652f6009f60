//! Where load-to-ready time goes. With `TRTLLM_LOAD_TIMING=1` each phase of a load prints one
//! line to stderr when it ends (`[load] weights ... 1.234 s  <detail>`); always, it is a
//! `tracing` debug event. A phase is timed on the host with `Instant`; phases that enqueue GPU
//! work end with a synchronization (the weights phase waits for its last transfer), so no
//! device time leaks into the next phase.
//!
//! Phases of `Llm::with_options` (one line each; a tensor-parallel load prints the per-rank
//! phases once per rank, side by side in time): `cuda init` (context, stream, cuBLAS and
//! cuBLASLt handles, on the first use of a GPU), `open + plan + validate` (config, safetensors
//! headers, weight plan), `weights` (read, convert where needed, upload, all transfers done),
//! `free staging` (the pinned buffers; the checkpoint is unmapped on a background thread),
//! `kv cache`, `cuda graphs setup` (capture itself is lazy, at the first decode step),
//! `tokenizer` (on its own thread, overlapping the model load), and `total`. Kernel modules load
//! lazily at their first launch: [`first_request`] reports them with the first request's time.

use std::time::Instant;

/// True when `TRTLLM_LOAD_TIMING=1`.
pub fn enabled() -> bool {
    crate::env::knobs().load_timing
}

/// A phase being timed.
#[must_use = "end the phase with `done`"]
pub struct Phase {
    what: String,
    t0: Instant,
}

/// Start timing `what`.
pub fn phase(what: impl Into<String>) -> Phase {
    Phase { what: what.into(), t0: Instant::now() }
}

impl Phase {
    /// Seconds so far.
    pub fn elapsed(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    /// End the phase; returns its seconds.
    pub fn done(self) -> f64 {
        self.done_with("")
    }

    /// End the phase with a detail (sizes, rates); returns its seconds.
    pub fn done_with(self, detail: &str) -> f64 {
        let s = self.t0.elapsed().as_secs_f64();
        report(&self.what, s, detail);
        s
    }
}

fn report(what: &str, secs: f64, detail: &str) {
    if enabled() {
        eprintln!("[load] {what:<28} {secs:8.3} s  {detail}");
    }
    tracing::debug!(phase = what, secs, detail, "load phase");
}

/// Rank tag for a phase name: empty for a single rank.
pub(crate) fn rank_tag(mapping: crate::Mapping) -> String {
    if mapping.tp_size > 1 {
        format!(" [rank {}]", mapping.rank)
    } else {
        String::new()
    }
}

/// Bytes as GiB with a rate over `secs`.
pub(crate) fn gib_rate(bytes: u64, secs: f64) -> String {
    let gib = bytes as f64 / (1u64 << 30) as f64;
    format!("{gib:.2} GiB, {:.1} GB/s", bytes as f64 / secs.max(1e-9) / 1e9)
}

/// Report the first request (which loads the kernel modules it launches and captures the first
/// CUDA graph): its wall time and the module loads of every open GPU so far.
pub fn first_request(secs: f64) {
    if !enabled() {
        return;
    }
    let gpus = crate::device::open_gpus();
    let (mut n, mut s) = (0, 0.0);
    for gpu in &gpus {
        let (gn, gs) = gpu.module_load_stats();
        n += gn;
        s += gs;
    }
    let detail = if gpus.is_empty() {
        String::new()
    } else {
        format!("of which kernel modules: {n} loaded in {s:.3} s (disk cache / prebuilt / NVRTC)")
    };
    report("first request (lazy setup)", secs, &detail);
}
