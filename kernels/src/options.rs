//! The kernels' process-wide options. The crate reads no environment variable: the engine
//! (`trtllm_core::env`, the one knob table) sets these once at start, before the first launch.

use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Clone, Debug)]
pub struct KernelOptions {
    /// Programmatic dependent launch for the decode chain on sm_90+ (`launch/pdl.rs`).
    pub pdl: bool,
    /// Paged attention by KV-head group with split-K (`attention_decode.cu`) where it applies.
    pub gqa_decode: bool,
    /// Time cuBLASLt's candidate algorithms for GEMMs with m <= 512 and keep the fastest
    /// (`launch/lt.rs`); off: its first heuristic.
    pub gemm_tune: bool,
    /// Per-token x per-channel FP8 GEMMs with cuBLASLt's outer-vector scale mode where it has
    /// an algorithm (`launch/fp8_gemm.rs`); off: unit-scaled GEMM into f32 + a scaling kernel.
    pub fp8_outer_vec: bool,
    /// Where NVRTC output is cached; `None`: `~/.cache/trtllm/kernels`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for KernelOptions {
    fn default() -> Self {
        KernelOptions { pdl: true, gqa_decode: true, gemm_tune: true, fp8_outer_vec: true, cache_dir: None }
    }
}

static OPTIONS: OnceLock<KernelOptions> = OnceLock::new();

/// Set the options; the first call wins (they cannot change once a kernel has launched).
/// `Err` hands back `o` when they were already set (or read).
pub fn set_options(o: KernelOptions) -> Result<(), KernelOptions> {
    OPTIONS.set(o)
}

/// The options in force (the defaults when none were set).
pub fn options() -> &'static KernelOptions {
    OPTIONS.get_or_init(KernelOptions::default)
}
