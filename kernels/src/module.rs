//! Kernel sources, compiled once per device by NVRTC and cached on disk under
//! [`crate::KernelOptions::cache_dir`] (default `~/.cache/trtllm/kernels`), keyed by source hash + SM +
//! NVRTC version, so a second process compiles nothing.

use std::path::PathBuf;

/// One kernel source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Elementwise,
    Norm,
    Embedding,
    Attention,
    /// GQA-grouped split-K decode attention and its split merge (attention_decode.cu).
    AttentionDecode,
    Sampling,
    Gemv,
    /// Flash-attention prefill (bf16 tensor cores, `flash.rs`): flash_attention.cu followed by
    /// flash_attention_bq128.cu.
    Flash,
    /// W8A16 decode GEMV with FP8 E4M3 weights (gemv_fp8.cu).
    GemvFp8,
    /// W4A16 decode GEMV with group-quantized INT4 weights (gemv_int4.cu).
    GemvInt4,
    /// FP8 activation quantization, dequantization, FP8 GEMM epilogue (fp8_quant.cu).
    Fp8Quant,
    /// Multi-head latent attention: latent cache write, query absorption, output (mla.cu).
    Mla,
    /// Decode GEMV and bf16 dequantization for ggml block weights, Q8_0 / Q4_K (gemv_ggml.cu).
    GemvGgml,
    /// `Attention`, `AttentionDecode` and `Flash` compiled with `KV8`: the same kernels over an
    /// FP8 E4M3 KV cache (`--kv-cache-dtype fp8`; entry names end in `_kv8`).
    AttentionKv8,
    AttentionDecodeKv8,
    FlashKv8,
    /// MoE routing on the device, expert biases by pair, the weighted sum of expert outputs (moe.cu).
    Moe,
}

pub const KERNELS: [Kernel; 17] = [
    Kernel::Elementwise,
    Kernel::Norm,
    Kernel::Embedding,
    Kernel::Attention,
    Kernel::AttentionDecode,
    Kernel::Sampling,
    Kernel::Gemv,
    Kernel::Flash,
    Kernel::GemvFp8,
    Kernel::GemvInt4,
    Kernel::Fp8Quant,
    Kernel::Mla,
    Kernel::GemvGgml,
    Kernel::AttentionKv8,
    Kernel::AttentionDecodeKv8,
    Kernel::FlashKv8,
    Kernel::Moe,
];

const COMMON: &str = include_str!("../cuda/common.cuh");

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Elementwise => "elementwise",
            Kernel::Norm => "norm",
            Kernel::Embedding => "embedding",
            Kernel::Attention => "attention",
            Kernel::AttentionDecode => "attention_decode",
            Kernel::Sampling => "sampling",
            Kernel::Gemv => "gemv",
            Kernel::Flash => "flash_attention",
            Kernel::GemvFp8 => "gemv_fp8",
            Kernel::GemvInt4 => "gemv_int4",
            Kernel::Fp8Quant => "fp8_quant",
            Kernel::Mla => "mla",
            Kernel::GemvGgml => "gemv_ggml",
            Kernel::AttentionKv8 => "attention_kv8",
            Kernel::AttentionDecodeKv8 => "attention_decode_kv8",
            Kernel::FlashKv8 => "flash_attention_kv8",
            Kernel::Moe => "moe",
        }
    }
    fn body(self) -> &'static str {
        match self {
            Kernel::Elementwise => include_str!("../cuda/elementwise.cu"),
            Kernel::Norm => include_str!("../cuda/norm.cu"),
            Kernel::Embedding => include_str!("../cuda/embedding.cu"),
            Kernel::Attention => include_str!("../cuda/attention.cu"),
            Kernel::AttentionDecode => include_str!("../cuda/attention_decode.cu"),
            Kernel::AttentionKv8 => concat!("#define KV8 1\n", include_str!("../cuda/attention.cu")),
            Kernel::AttentionDecodeKv8 => {
                concat!("#define KV8 1\n", include_str!("../cuda/attention_decode.cu"))
            }
            // The greedy argmax and the batched sampler (launch/sampling.rs) share one module.
            Kernel::Sampling => {
                concat!(
                    include_str!("../cuda/sampling.cu"),
                    "\n",
                    include_str!("../cuda/sampling_batched.cu")
                )
            }
            Kernel::Gemv => include_str!("../cuda/gemv.cu"),
            Kernel::GemvFp8 => include_str!("../cuda/gemv_fp8.cu"),
            Kernel::GemvInt4 => include_str!("../cuda/gemv_int4.cu"),
            Kernel::Fp8Quant => include_str!("../cuda/fp8_quant.cu"),
            Kernel::Mla => include_str!("../cuda/mla.cu"),
            Kernel::GemvGgml => include_str!("../cuda/gemv_ggml.cu"),
            Kernel::Moe => include_str!("../cuda/moe.cu"),
            // One translation unit: the 128-query kernel uses the 64-query file's helpers.
            Kernel::Flash => concat!(
                include_str!("../cuda/flash_attention.cu"),
                "\n",
                include_str!("../cuda/flash_attention_bq128.cu")
            ),
            Kernel::FlashKv8 => concat!(
                "#define KV8 1\n",
                include_str!("../cuda/flash_attention.cu"),
                "\n",
                include_str!("../cuda/flash_attention_bq128.cu")
            ),
        }
    }
    /// The full translation unit NVRTC compiles.
    pub fn source(self) -> String {
        format!("{COMMON}\n{}", self.body())
    }
}

/// FNV-1a: a stable hash for cache keys.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

pub fn cache_dir() -> PathBuf {
    if let Some(d) = &crate::options().cache_dir {
        return d.clone();
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/trtllm/kernels")
}

/// File name of `kernel`'s PTX for `sm` inside an engine directory's `kernels/` (keyed by the
/// source hash, so a stale engine's kernels are never used).
pub fn prebuilt_name(kernel: Kernel, sm: u32) -> String {
    format!("{}-{:016x}-sm{sm}.ptx", kernel.name(), fnv1a(kernel.source().as_bytes()))
}

static PREBUILT: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Use the kernels precompiled into an engine directory (`trtllm build --target-sm`).
pub fn set_prebuilt_dir(dir: Option<PathBuf>) {
    *PREBUILT.lock().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// Precompiled PTX of `kernel` for `sm`, if an engine provided it.
pub fn prebuilt(kernel: Kernel, sm: u32) -> Option<String> {
    let dir = PREBUILT.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
    std::fs::read_to_string(dir.join(prebuilt_name(kernel, sm))).ok()
}

/// Cache file of `kernel` for `sm` (e.g. 90) and NVRTC version `(major, minor)`.
pub fn cache_path(dir: &std::path::Path, kernel: Kernel, sm: u32, nvrtc: (i32, i32)) -> PathBuf {
    let key = fnv1a(kernel.source().as_bytes());
    dir.join(format!("{}-{key:016x}-sm{sm}-nvrtc{}.{}.ptx", kernel.name(), nvrtc.0, nvrtc.1))
}
