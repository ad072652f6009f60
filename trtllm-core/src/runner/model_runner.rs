//! [`ModelRunner`]: a model, its KV cache and its CUDA graphs. [`Executor::execute`] runs one
//! scheduled step: a packed forward over every scheduled sequence's new tokens, then one token
//! for each row that samples — greedy on the device (only ids reach the host) when every such
//! row is plain greedy, else from host rows with penalties and logprobs (`logits.rs`).

use super::graphs::{forward_step, DecodeGraphs};
use super::logits::{sample_row, TokenLogprob};
use super::{Sampler, SamplingParams};
use crate::batch::{ForwardBatch, KvCache, SeqStep};
use crate::dist::Communicator;
use crate::model::CausalLM;
use crate::{DType, Device, Error, Result, Tensor};

/// How a row samples its next token.
pub struct SampleInput<'a> {
    pub params: &'a SamplingParams,
    /// The sequence's prompt and the tokens it generated so far (penalties read them).
    pub prompt: &'a [u32],
    pub output: &'a [u32],
    pub sampler: &'a mut Sampler,
}

/// One sequence's share of a step.
pub struct ScheduledSeq<'a> {
    /// The tokens whose K/V this step computes, at positions `start_pos..`.
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub block_table: &'a [u32],
    /// `Some` when the step's last token samples the next one (the end of a prefill, a decode).
    pub sample: Option<SampleInput<'a>>,
}

/// What the scheduler asks for in one step.
#[derive(Default)]
pub struct SchedulerOutput<'a> {
    pub seqs: Vec<ScheduledSeq<'a>>,
}

/// A sampled token, with its logprobs when asked for.
#[derive(Clone, Debug)]
pub struct Sampled {
    pub token: u32,
    pub logprob: Option<TokenLogprob>,
}

/// What a step produced: one entry per scheduled sequence (`None` where it did not sample).
#[derive(Clone, Debug, Default)]
pub struct RunnerOutput {
    pub sampled: Vec<Option<Sampled>>,
}

/// What runs the scheduler's steps: [`ModelRunner`], or a fake in the scheduler's tests.
pub trait Executor: Send + 'static {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput>;
    /// KV blocks in the cache, and tokens per block.
    fn kv_blocks(&self) -> (usize, usize);
    fn vocab_size(&self) -> usize;
}

pub struct ModelRunner {
    model: Box<dyn CausalLM>,
    kv: KvCache,
    /// Captured decode steps (GPU, one rank); built from `model` and `kv`, which never change.
    graphs: Option<DecodeGraphs>,
}

impl ModelRunner {
    /// A runner over `model` and `kv`. `cuda_graphs`: replay pure decode steps of up to
    /// `max_batch` sequences of `max_seq_len` as CUDA graphs where they apply (GPU, one rank).
    pub fn new(model: Box<dyn CausalLM>, kv: KvCache, max_batch: usize, max_seq_len: usize, cuda_graphs: bool) -> Self {
        let graphs = DecodeGraphs::new(&*model, &kv, max_batch, max_seq_len, cuda_graphs);
        ModelRunner { model, kv, graphs }
    }

    /// A KV cache for `model` on `device` (`dtype` on the GPU; the host cache is f32).
    pub fn make_kv(
        model: &dyn CausalLM,
        device: Device,
        dtype: DType,
        block_size: usize,
        num_blocks: usize,
    ) -> Result<KvCache> {
        match device {
            Device::Cuda(n) => {
                KvCache::new_cuda(&crate::device::gpu(n)?, dtype, model.kv_layout(), block_size, num_blocks)
            }
            _ => KvCache::new(model.kv_layout(), block_size, num_blocks),
        }
    }

    pub fn model(&self) -> &dyn CausalLM {
        self.model.as_ref()
    }

    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// The CUDA-graph decode state (`None`: every step runs eagerly).
    pub fn cuda_graphs(&self) -> Option<&DecodeGraphs> {
        self.graphs.as_ref()
    }

    /// Logits at every position of one prefill of `tokens` into `blocks` (and optionally every
    /// hidden state): the verification path, never graphed.
    pub fn logits_all(
        &mut self,
        tokens: &[u32],
        blocks: &[u32],
        hidden: Option<&mut Vec<Tensor>>,
        comm: &dyn Communicator,
    ) -> Result<Tensor> {
        let step = [SeqStep { tokens, start_pos: 0, block_table: blocks }];
        let batch = ForwardBatch::new(&step, self.kv.block_size, true)?;
        self.model.forward(&batch, &mut self.kv, comm, hidden)
    }
}

impl Executor for ModelRunner {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput> {
        if step.seqs.is_empty() {
            return Ok(RunnerOutput::default());
        }
        let steps: Vec<SeqStep<'_>> = step
            .seqs
            .iter()
            .map(|s| SeqStep { tokens: s.tokens, start_pos: s.start_pos, block_table: s.block_table })
            .collect();
        let batch = ForwardBatch::new(&steps, self.kv.block_size, false)?;
        let logits = forward_step(self.graphs.as_mut(), &*self.model, &batch, &mut self.kv)?;
        let host = step.seqs.iter().any(|s| s.sample.as_ref().is_some_and(|x| x.params.needs_host_logits()));
        let (greedy, host_rows) = if host {
            (None, Some(logits.to_cpu()?.to_dtype(DType::F32)?))
        } else {
            (Some(crate::ops::argmax_rows(&logits)?), None)
        };
        let vocab = logits.dim(1);
        let mut out = RunnerOutput { sampled: Vec::with_capacity(step.seqs.len()) };
        for (row, s) in step.seqs.into_iter().enumerate() {
            let Some(x) = s.sample else {
                out.sampled.push(None);
                continue;
            };
            let (token, logprob) = match (&greedy, &host_rows) {
                (Some(ids), _) => (ids[row], None),
                (None, Some(h)) => {
                    let r = &h.f32s()?[row * vocab..(row + 1) * vocab];
                    sample_row(r, x.prompt, x.output, x.params, x.sampler)
                }
                (None, None) => return Err(Error::Msg("no logits sampled".into())),
            };
            out.sampled.push(Some(Sampled { token, logprob }));
        }
        Ok(out)
    }

    fn kv_blocks(&self) -> (usize, usize) {
        (self.kv.num_blocks, self.kv.block_size)
    }

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }
}
