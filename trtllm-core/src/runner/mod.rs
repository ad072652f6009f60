//! The model runner: a model with its KV cache, CUDA graphs and sampling. The serving
//! scheduler (a layer above) decides what runs; [`ModelRunner::execute`] runs it: one forward over the
//! scheduled sequences, then a token for each row that samples.

mod embed;
mod graphs;
mod logits;
mod sampler;

pub use embed::{l2_normalize, pool, Pooling};
pub use graphs::DecodeGraphs;
pub use logits::{apply_penalties, token_logprob, TokenLogprob};
pub use sampler::{Sampler, SamplingParams, MAX_LOGPROBS, MAX_N};
mod model_runner;
mod sampling;
pub mod spec;
mod token_mask;

pub use model_runner::{
    Executor, MaskJob, ModelRunner, RunnerOutput, SampleInput, Sampled, ScheduledSeq, SchedulerOutput,
};
