//! Weights: the generated weight map (`WeightSpec`), safetensors checkpoints, and the
//! `VarBuilder` through which layers declare and load their tensors.

mod builder;
mod safetensors;
mod spec;

pub use builder::{EngineSource, HfSource, Planner, VarBuilder, WeightSource};
pub use safetensors::{write_safetensors, SafetensorsFiles, TensorInfo};
pub use spec::{heads_per_rank, Combine, Source, TpSplit, Transform, WeightSpec};
