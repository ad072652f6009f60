//! GGUF import: a reader for GGUF v2/v3 files (llama.cpp's format), dequantization of the
//! common ggml types, and conversion of llama, qwen2, gemma3, gptneox, starcoder2, falcon, command-r and olmo2 GGUFs into a
//! Hugging Face model directory the engine (and transformers) loads.
//!
//! ```no_run
//! use trtllm_core::gguf::{convert_gguf, ConvertOptions};
//! convert_gguf("model.gguf".as_ref(), "hf_dir".as_ref(), &ConvertOptions::default())?;
//! # Ok::<(), trtllm_core::Error>(())
//! ```

mod arch;
mod convert;
pub mod dequant;
mod ggml_type;
mod hf_config;
mod hf_config_zoo;
mod kquants;
mod merges;
mod meta;
mod model_dir;
pub mod names;
mod quantize;
mod quantize_k;
mod reader;
mod rows;
mod st_writer;
mod tokenizer;
mod tokenizer_files;
mod value;
mod writer;

#[cfg(test)]
mod tests_convert;
#[cfg(test)]
mod tests_dequant;
#[cfg(test)]
mod tests_reader;

pub use convert::{convert_gguf, ConvertOptions, ConvertReport};
pub use dequant::dequantize;
pub use ggml_type::{GgmlType, QK_K};
pub(crate) use kquants::scale_min_k4;
pub use model_dir::{gguf_of_dir, is_gguf_file, model_dir, MARKER};
pub use quantize::quantize;
pub use reader::{GgufFile, TensorInfo, DEFAULT_ALIGNMENT};
pub use st_writer::OutDType;
pub use value::{Value, ValueType};
pub use writer::{tensor_bytes, GgufStreamWriter, GgufWriter};
