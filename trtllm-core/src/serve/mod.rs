//! Continuous-batching serving: the scheduling policy ([`Scheduler`]: admission, chunked
//! prefill, preemption, prefix reuse), the prefix cache, sequences, the engine thread with its
//! request handles and events, and metrics.

mod engine;
mod engine_loop;
mod metrics;
mod output;
mod prefix_cache;
mod scheduler;
mod sequence;
mod spec;
mod step_output;

pub use engine::{
    Delta, EmbedReply, Engine, EngineHandle, Event, EventSink, Limits, RequestHandle, SubmitError, Usage,
};
pub use metrics::{with_label, EngineMetrics, Histogram};
pub use prefix_cache::{block_hashes, BlockManager};
pub use scheduler::{Scheduler, SchedulerConfig};
pub use sequence::{FinishReason, SeqRequest};
pub use spec::SpecStats;
pub use step_output::{StepOutput, TokenOut};

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod scheduler_tests;
#[cfg(test)]
mod spec_tests;
