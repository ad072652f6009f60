//! The knob table: every `TRTLLM_*` environment variable the engine reads, parsed once, here.
//! Everything else takes options (`LlmOptions`, CLI flags); the kernels crate reads no
//! environment and gets its switches from [`Knobs`] through `trtllm_kernels::set_options`.
//!
//! A value that does not parse is reported once on stderr and the default is used: a knob never
//! stops the engine. [`KNOBS`] is the documented list (README "Knobs" prints the same table; a
//! test checks that both agree).

use std::path::PathBuf;
use std::sync::OnceLock;

/// `(variable, what it does)`, in the order of [`Knobs`]'s fields.
pub const KNOBS: &[(&str, &str)] = &[
    (
        "TRTLLM_CPU_ISA",
        "`scalar`, `avx2` or `avx512`: cap the CPU kernel tier (default: the best the CPU has)",
    ),
    ("TRTLLM_NUM_THREADS", "threads of the CPU op pool (default: all cores)"),
    ("TRTLLM_PROFILE", "`1`: per-op wall-clock timers for CPU ops; `trtllm bench` prints them"),
    (
        "TRTLLM_POISON",
        "`1`: fill fresh GPU outputs with NaN so an element a kernel fails to write shows (tests)",
    ),
    ("TRTLLM_LOAD_TIMING", "`1`: print where a model load's time goes"),
    ("TRTLLM_LOAD_THREADS", "threads one rank's load builds its parts on (default: cores - 1, at most 8)"),
    ("TRTLLM_LOAD_CHUNK_MB", "pinned staging chunk of the GPU upload, MiB (default 16)"),
    (
        "TRTLLM_NO_FLASH",
        "`1`: prefill attention on the paged kernel instead of flash (the reference of the flash tests)",
    ),
    ("TRTLLM_NO_PDL", "`1`: no programmatic dependent launch on sm_90+ (to rule it out when debugging)"),
    (
        "TRTLLM_NO_GQA_DECODE",
        "`1`: paged attention one block per (token, query head) instead of per KV-head group (A/B)",
    ),
    (
        "TRTLLM_NO_GEMM_TUNE",
        "`1`: cuBLASLt's first heuristic for every GEMM instead of timing its candidates for m <= 512 (A/B)",
    ),
    (
        "TRTLLM_NO_FP8_OUTER_VEC",
        "`1`: per-token x per-channel FP8 GEMMs unit-scaled into f32 + a scaling kernel instead of cuBLASLt's outer-vector scales (A/B)",
    ),
    (
        "TRTLLM_MOE_PAIRS",
        "`0`: MoE routing read back to the host at every step (no CUDA graphs for MoE models; A/B); `1`: the on-device pair path on any device, the CPU included (tests)",
    ),
    ("TRTLLM_KERNEL_CACHE", "directory of the NVRTC output cache (default ~/.cache/trtllm/kernels)"),
    ("TRTLLM_RENDEZVOUS_TIMEOUT", "seconds multi-process ranks wait for each other (default 300)"),
    ("TRTLLM_NO_HUGEPAGES", "`1`: `trtllm bench` on the CPU does not ask for transparent huge pages"),
    (
        "TRTLLM_Q8_0_ACT",
        "`f32` (default): Q8_0 weights on the CPU meet f32 activations (the dequantized f32 result, bitwise); `int8`: activations quantized per 32 elements, integer dots (llama.cpp's way; A/B)",
    ),
];

/// The parsed knobs ([`knobs`]).
#[derive(Clone, Debug)]
pub struct Knobs {
    pub cpu_isa: Option<String>,
    pub num_threads: Option<usize>,
    pub profile: bool,
    pub poison: bool,
    pub load_timing: bool,
    pub load_threads: Option<usize>,
    pub load_chunk_mb: usize,
    pub flash: bool,
    pub pdl: bool,
    pub gqa_decode: bool,
    pub gemm_tune: bool,
    pub fp8_outer_vec: bool,
    /// `None`: MoE steps of at most `ops::MOE_PAIRS_MAX` pairs route on the device on the GPU.
    pub moe_pairs: Option<bool>,
    pub kernel_cache: Option<PathBuf>,
    pub rendezvous_timeout_s: u64,
    pub hugepages: bool,
    /// Q8_0 weights on the CPU against int8-quantized activations instead of f32 ones.
    pub q8_0_int8_act: bool,
}

fn raw(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn flag(name: &str) -> bool {
    raw(name).is_some_and(|v| v == "1")
}

fn number(name: &str) -> Option<usize> {
    let v = raw(name)?;
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            eprintln!("warning: {name}={v:?} is not a positive integer; using the default");
            None
        }
    }
}

impl Knobs {
    /// Parse the process environment.
    pub fn from_env() -> Knobs {
        let cpu_isa = raw("TRTLLM_CPU_ISA").filter(|v| {
            let ok = matches!(v.as_str(), "scalar" | "avx2" | "avx512");
            if !ok {
                eprintln!(
                    "warning: TRTLLM_CPU_ISA={v:?} is not scalar, avx2 or avx512; using the CPU's best"
                );
            }
            ok
        });
        Knobs {
            cpu_isa,
            num_threads: number("TRTLLM_NUM_THREADS").map(|n| n.min(256)),
            profile: flag("TRTLLM_PROFILE"),
            poison: flag("TRTLLM_POISON"),
            load_timing: flag("TRTLLM_LOAD_TIMING"),
            load_threads: number("TRTLLM_LOAD_THREADS"),
            load_chunk_mb: number("TRTLLM_LOAD_CHUNK_MB").unwrap_or(16).clamp(1, 1024),
            flash: !flag("TRTLLM_NO_FLASH"),
            pdl: !flag("TRTLLM_NO_PDL"),
            gqa_decode: !flag("TRTLLM_NO_GQA_DECODE"),
            gemm_tune: !flag("TRTLLM_NO_GEMM_TUNE"),
            fp8_outer_vec: !flag("TRTLLM_NO_FP8_OUTER_VEC"),
            moe_pairs: raw("TRTLLM_MOE_PAIRS").and_then(|v| match v.as_str() {
                "0" => Some(false),
                "1" => Some(true),
                _ => {
                    eprintln!("warning: TRTLLM_MOE_PAIRS={v:?} is not 0 or 1; using the default");
                    None
                }
            }),
            kernel_cache: raw("TRTLLM_KERNEL_CACHE").map(PathBuf::from),
            rendezvous_timeout_s: number("TRTLLM_RENDEZVOUS_TIMEOUT").unwrap_or(300) as u64,
            hugepages: !flag("TRTLLM_NO_HUGEPAGES"),
            q8_0_int8_act: raw("TRTLLM_Q8_0_ACT").is_some_and(|v| match v.as_str() {
                "int8" => true,
                "f32" => false,
                _ => {
                    eprintln!("warning: TRTLLM_Q8_0_ACT={v:?} is not f32 or int8; using f32");
                    false
                }
            }),
        }
    }
}

/// The knobs of this process, read on first use; the kernels' options are set from them then.
pub fn knobs() -> &'static Knobs {
    static K: OnceLock<Knobs> = OnceLock::new();
    K.get_or_init(|| {
        let k = Knobs::from_env();
        // A second set (a test that set options first) keeps the first: nothing to do.
        let _ = trtllm_kernels::set_options(trtllm_kernels::KernelOptions {
            pdl: k.pdl,
            gqa_decode: k.gqa_decode,
            gemm_tune: k.gemm_tune,
            fp8_outer_vec: k.fp8_outer_vec,
            cache_dir: k.kernel_cache.clone(),
        });
        k
    })
}
