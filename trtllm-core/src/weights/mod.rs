//! Weights: the generated weight map (`WeightSpec`), safetensors checkpoints, and the
//! `VarBuilder` through which layers declare and load their tensors.

mod builder;
mod gguf;
#[cfg(test)]
mod gguf_tests;
mod parallel;
pub mod quant;
mod raw;
mod safetensors;
mod spec;

pub use builder::{EngineSource, HfSource, Planner, VarBuilder, WeightSource};
pub use gguf::{GgufBlocks, GgufWeights};
pub use parallel::{load_threads, map_jobs};
pub use raw::RawShard;
pub use safetensors::{write_safetensors, SafetensorsFiles, TensorInfo};
pub use spec::{heads_per_rank, Combine, Source, TpSplit, Transform, WeightSpec};
