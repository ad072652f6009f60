//! Our checkpoint and engine directories (TensorRT-LLM's convert -> build -> run chain).
//!
//! - `convert` turns an HF directory into a checkpoint: `config.json` (format, converter
//!   version, architecture, dtype, mapping, the normalized model config and the original HF
//!   config) and one `rank{r}.safetensors` per rank holding engine-named tensors, already fused,
//!   cast and sharded, streamed tensor by tensor.
//! - `build` turns a checkpoint into an engine directory: `build_config.json` + the checkpoint.
//! - `load_checkpoint` builds one rank of either; `model::build_model` dispatches to it.

mod convert;
mod engine;
mod format;
mod gguf_arch;
mod gguf_export;
mod gguf_meta;
mod load;
mod output;
mod quantize;
mod writer;

pub use convert::{convert, ConvertOptions, ConvertProgress, ConvertSummary};
pub use engine::{build_engine, BuildOptions};
pub use format::{
    rank_file, read_build_config, read_checkpoint_config, BuildConfig, CheckpointConfig, CheckpointMapping,
    ModelDir, BUILD_CONFIG, CHECKPOINT_FORMAT, CONVERTER_VERSION, ENGINE_FORMAT, TOKENIZER_FILES,
};
pub use gguf_export::{quantize_to_gguf, GgufExportSummary, GgufQuant};
pub use load::{load_checkpoint, open_rank, validate_rank};
pub use output::{copy_tokenizer_files, StagedDir};
pub use quantize::{quantize_hf, QuantizeScheme, QuantizeSummary};
pub use writer::{StreamingWriter, TensorEntry};
