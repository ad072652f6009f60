//! Element types. Names follow HF's `torch_dtype` spellings where they exist.

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    /// FP8 E4M3 (`torch.float8_e4m3fn`): quantized weights, stored as bytes, read through
    /// their scales (`weights/quant.rs`).
    #[serde(rename = "f8e4m3")]
    F8E4M3,
    /// ggml block-quantized weights kept in their GGUF blocks (Q8_0, Q4_1, Q4_K, ...); the block
    /// type is the tensor's (`Tensor::ggml`). Never an engine or activation dtype.
    #[serde(rename = "ggml")]
    Ggml,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            // Bytes per element vary by block type: `Tensor::size_in_bytes` counts the blocks.
            DType::F8E4M3 | DType::Ggml => 1,
        }
    }

    /// Parse the spellings users and HF configs use: `f32`, `float32`, `bf16`, `bfloat16`, ...
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "float" => Ok(DType::F32),
            "f16" | "float16" | "half" | "fp16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            "i32" | "int32" => Ok(DType::I32),
            "f8e4m3" | "float8_e4m3fn" => Ok(DType::F8E4M3),
            other => Err(Error::Msg(format!(
                "unknown dtype `{other}` (expected one of f32/float32, f16/float16, bf16/bfloat16)"
            ))),
        }
    }

    /// HF's `torch_dtype` spelling.
    pub fn hf_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I32 => "int32",
            DType::F8E4M3 => "float8_e4m3fn",
            DType::Ggml => "ggml",
        }
    }

    pub fn is_float(self) -> bool {
        !matches!(self, DType::I32)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.hf_name())
    }
}
