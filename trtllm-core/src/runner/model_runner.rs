//! [`ModelRunner`]: a model, its KV cache and its CUDA graphs. [`Executor::execute`] runs one
//! scheduled step: a packed forward over every scheduled sequence's new tokens, then one token
//! for each row that samples: on the GPU one sampling launch for all rows (greedy argmax when
//! every row is plain greedy), only ids and requested logprobs reaching the host; on the CPU the
//! same function on host rows (`sampling.rs`).

use super::graphs::{forward_step, DecodeGraphs};
use super::logits::TokenLogprob;
use super::sampling::{sample_host_row, DeviceSampler};
use super::spec::{verify, DraftChunk, DraftModel};
use super::{Pooling, Sampler, SamplingParams};
use crate::batch::{ForwardBatch, KvCache, KvCacheDtype, SeqStep};
use crate::dist::Communicator;
use crate::load::{LlmOptions, SpecMethod, SpecOptions};
use crate::model::CausalLM;
use crate::{DType, Device, Error, Result, Tensor};
use std::path::Path;

/// How a row samples its next token.
pub struct SampleInput<'a> {
    pub params: &'a SamplingParams,
    /// The sequence's prompt and the tokens it generated so far (penalties read them).
    pub prompt: &'a [u32],
    pub output: &'a [u32],
    pub sampler: &'a Sampler,
}

/// One sequence's share of a step.
pub struct ScheduledSeq<'a> {
    /// The sequence (the scheduler's id): the runner keeps per-sequence sampling state by it.
    pub id: u64,
    /// The tokens whose K/V this step computes, at positions `start_pos..`.
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub block_table: &'a [u32],
    /// `Some` when the step's last token samples the next one (the end of a prefill, a decode).
    pub sample: Option<SampleInput<'a>>,
    /// Speculative decoding: the last `draft` of `tokens` are draft tokens to verify (0: none).
    /// `sample` then describes the row of the first token after the sequence's output.
    pub draft: usize,
}

/// The structured-output masks of a step, computed while the forward runs: called once after
/// the forward, it gives one entry per scheduled sequence (`Some(packed mask)` where the row's
/// next token is constrained; see [`crate::text::TokenMatcher::mask`]).
pub type MaskJob<'a> = Box<dyn FnOnce() -> Result<Vec<Option<Vec<u32>>>> + 'a>;

/// What the scheduler asks for in one step.
#[derive(Default)]
pub struct SchedulerOutput<'a> {
    pub seqs: Vec<ScheduledSeq<'a>>,
    /// `Some` when a row samples under a grammar.
    pub masks: Option<MaskJob<'a>>,
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
    /// The token after the sequence's output (and its accepted drafts).
    pub sampled: Vec<Option<Sampled>>,
    /// Per scheduled sequence, the draft tokens accepted, in order, before `sampled` (empty, or
    /// no entry at all, when it had none).
    pub accepted: Vec<Vec<Sampled>>,
}

/// What runs the scheduler's steps: [`ModelRunner`], or a fake in the scheduler's tests.
pub trait Executor: Send + 'static {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput>;
    /// KV blocks in the cache, and tokens per block.
    fn kv_blocks(&self) -> (usize, usize);
    fn vocab_size(&self) -> usize;
    /// The sequence `id` ended (finished, aborted): drop any state kept for it.
    fn release(&mut self, _id: u64) {}
    /// Embeddings: one prefill of `tokens` into `blocks` (nothing sampled, no sequence kept),
    /// its final hidden state (after the final norm) pooled into `[hidden]` f32, unnormalized.
    fn embed(&mut self, _tokens: &[u32], _blocks: &[u32], _pooling: Pooling) -> Result<Vec<f32>> {
        Err(crate::Error::Request("this engine does not compute embeddings".into()))
    }
    /// Speculative decoding with a draft model: run the draft over `chunks` and propose up to
    /// `k` tokens for each ([`DraftModel::propose`]).
    fn draft(&mut self, _chunks: &[DraftChunk<'_>]) -> Result<Vec<Vec<u32>>> {
        Err(crate::Error::Msg("this engine has no draft model".into()))
    }
}

pub struct ModelRunner {
    model: Box<dyn CausalLM>,
    kv: KvCache,
    /// Captured decode steps (GPU, one rank); built from `model` and `kv`, which never change.
    graphs: Option<DecodeGraphs>,
    /// Sampling on the GPU (`None` on the CPU).
    sampler: Option<DeviceSampler>,
    /// The draft model of speculative decoding (`SpecMethod::Draft`).
    draft: Option<DraftModel>,
    /// The step's batch, rebuilt in place each step (`ForwardBatch::refill`).
    batch: ForwardBatch,
}

impl ModelRunner {
    /// A runner over `model` and `kv`. `cuda_graphs`: replay pure decode steps of up to
    /// `max_batch` sequences of `max_seq_len` as CUDA graphs where they apply (GPU, one rank).
    pub fn new(
        model: Box<dyn CausalLM>,
        kv: KvCache,
        max_batch: usize,
        max_seq_len: usize,
        cuda_graphs: bool,
    ) -> Self {
        let graphs = DecodeGraphs::new(&*model, &kv, max_batch, max_seq_len, cuda_graphs);
        let vocab = model.config().vocab_size;
        let sampler = kv.gpu().map(|g| DeviceSampler::new(g, vocab, max_batch));
        ModelRunner { model, kv, graphs, sampler, draft: None, batch: ForwardBatch::default() }
    }

    /// Speculate with `draft` (its KV cache has this runner's block geometry).
    pub fn set_draft(&mut self, draft: DraftModel) -> Result<()> {
        let (d, t) = (draft.kv(), &self.kv);
        if (d.num_blocks, d.block_size) != (t.num_blocks, t.block_size) {
            return Err(Error::Msg(format!(
                "draft KV cache of {} blocks x {} tokens for a target cache of {} x {}",
                d.num_blocks, d.block_size, t.num_blocks, t.block_size
            )));
        }
        self.draft = Some(draft);
        Ok(())
    }

    /// Load and attach the draft model of `spec` when it names one (`SpecMethod::Draft`), with
    /// `opts`'s device, dtype and limits ([`super::spec::draft::load`], [`Self::attach_draft`]).
    pub fn load_draft(&mut self, spec: &SpecOptions, target_dir: &Path, opts: &LlmOptions) -> Result<()> {
        if spec.method != SpecMethod::Draft {
            return Ok(());
        }
        let model = super::spec::draft::load(spec, target_dir, opts)?;
        self.attach_draft(model, opts)
    }

    /// Speculate with `model` (`None`: the target drafts for itself) over a KV cache of this
    /// runner's geometry on `opts`'s device.
    pub fn attach_draft(&mut self, model: Option<Box<dyn CausalLM>>, opts: &LlmOptions) -> Result<()> {
        let m = model.as_deref().unwrap_or(&*self.model);
        let dtype = opts.load.weight_dtype(m.config());
        let kv = Self::make_kv(
            m,
            opts.load.device,
            dtype,
            self.kv.kv_dtype(),
            self.kv.block_size,
            self.kv.num_blocks,
        )?;
        let draft = DraftModel::new(
            model,
            &*self.model,
            kv,
            opts.max_batch_size,
            opts.max_seq_len,
            opts.cuda_graphs,
        )?;
        self.set_draft(draft)
    }

    pub fn draft_model(&self) -> Option<&DraftModel> {
        self.draft.as_ref()
    }

    /// A KV cache for `model` on `device` (`dtype` on the GPU, or FP8 by `kv_dtype`; the host
    /// cache is f32, FP8-rounded by `kv_dtype`).
    pub fn make_kv(
        model: &dyn CausalLM,
        device: Device,
        dtype: DType,
        kv_dtype: KvCacheDtype,
        block_size: usize,
        num_blocks: usize,
    ) -> Result<KvCache> {
        let layout = model.kv_layout();
        let elem = match device {
            Device::Cuda(_) => crate::batch::kv_elem_bytes(dtype, kv_dtype),
            _ => 4,
        };
        check_kv_size(layout, device, elem, block_size, num_blocks)?;
        // a pipeline stage's process holds its own layers only
        let layers = model.stage_layers();
        match device {
            Device::Cuda(n) => KvCache::new_cuda_stage(
                &crate::device::gpu(n)?,
                dtype,
                layout,
                block_size,
                num_blocks,
                layers,
                kv_dtype,
            ),
            _ => KvCache::new_stage(layout, block_size, num_blocks, layers, kv_dtype),
        }
    }

    pub fn model(&self) -> &dyn CausalLM {
        self.model.as_ref()
    }

    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// The cache, e.g. to give an FP8 cache its checkpoint scales before the first step (CUDA
    /// graphs capture the scales they launch with).
    pub fn kv_mut(&mut self) -> &mut KvCache {
        &mut self.kv
    }

    /// Capture the decode graphs of every batch bucket now (the draft model's too), before any
    /// sequence holds a KV block (the probe step writes slot 0 of block 0). The target's buckets
    /// captured (empty: no graphs).
    pub fn capture_graphs(&mut self) -> Result<Vec<usize>> {
        if let Some(d) = self.draft.as_mut() {
            d.capture_graphs(&*self.model)?;
        }
        match self.graphs.as_mut() {
            Some(g) => g.capture_all(&*self.model, &mut self.kv),
            None => Ok(vec![]),
        }
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

    /// One step in `batch` (this runner's buffers, refilled).
    fn execute_in(&mut self, batch: &mut ForwardBatch, step: SchedulerOutput<'_>) -> Result<RunnerOutput> {
        let steps: Vec<SeqStep<'_>> = step
            .seqs
            .iter()
            .map(|s| SeqStep { tokens: s.tokens, start_pos: s.start_pos, block_table: s.block_table })
            .collect();
        batch.refill(&steps, self.kv.block_size, false)?;
        let spec = step.seqs.iter().any(|s| s.draft > 0);
        if spec {
            batch.logits_per_seq = verify::rows_per_seq(&step.seqs);
        }
        let mut logits = forward_step(self.graphs.as_mut(), &*self.model, batch, &mut self.kv)?;
        let masks = match step.masks {
            Some(job) => Some(job()?),
            None => None,
        };
        if let Some(m) = &masks {
            if m.len() != step.seqs.len() {
                return Err(Error::Msg(format!(
                    "structured outputs: {} masks for {} sequences",
                    m.len(),
                    step.seqs.len()
                )));
            }
            // One mask per logit row: a sequence with drafts is never under a grammar.
            let per_row: Vec<Option<Vec<u32>>> = if spec {
                let mut v = vec![];
                for ((s, n), mask) in step.seqs.iter().zip(verify::rows_per_seq(&step.seqs)).zip(m) {
                    if s.draft > 0 && mask.is_some() {
                        return Err(Error::Msg(format!(
                            "sequence {}: grammar masks with draft tokens",
                            s.id
                        )));
                    }
                    v.push(mask.clone());
                    v.extend(std::iter::repeat_n(None, n - 1));
                }
                v
            } else {
                m.clone()
            };
            if logits.devbuf().is_some() {
                super::token_mask::apply_device(&logits, &per_row)?;
            } else {
                logits = super::token_mask::apply_host(&logits, &per_row)?;
            }
        }
        if spec {
            return verify::verify(self.sampler.as_mut(), &logits, &step.seqs);
        }
        let random = step.seqs.iter().any(|s| s.sample.as_ref().is_some_and(|x| x.params.needs_sampler()));
        let rows: Vec<(u64, Option<&SampleInput<'_>>)> =
            step.seqs.iter().map(|s| (s.id, s.sample.as_ref())).collect();
        if !random {
            let ids = crate::ops::argmax_rows(&logits)?;
            let sampled =
                rows.iter().zip(ids).map(|(r, token)| r.1.map(|_| Sampled { token, logprob: None }));
            return Ok(RunnerOutput { sampled: sampled.collect(), accepted: vec![] });
        }
        if let (Some(ds), true) = (self.sampler.as_mut(), logits.devbuf().is_some()) {
            return Ok(RunnerOutput { sampled: ds.sample(&logits, &rows)?, accepted: vec![] });
        }
        let host = logits.to_cpu()?.to_dtype(DType::F32)?;
        let (v, h) = (host.dim(1), host.f32s()?);
        let sampled =
            rows.iter().enumerate().map(|(r, (_, x))| x.map(|x| sample_host_row(&h[r * v..(r + 1) * v], x)));
        let out = RunnerOutput { sampled: sampled.collect(), accepted: vec![] };
        Ok(out)
    }
}

impl Executor for ModelRunner {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput> {
        if step.seqs.is_empty() {
            return Ok(RunnerOutput::default());
        }
        let mut batch = std::mem::take(&mut self.batch);
        let out = self.execute_in(&mut batch, step);
        self.batch = batch;
        out
    }

    fn kv_blocks(&self) -> (usize, usize) {
        (self.kv.num_blocks, self.kv.block_size)
    }

    fn vocab_size(&self) -> usize {
        self.model.config().vocab_size
    }

    fn embed(&mut self, tokens: &[u32], blocks: &[u32], pooling: Pooling) -> Result<Vec<f32>> {
        // The hidden-state hook of the forward; `Last` takes only the last row through the
        // final norm and the head, `Mean` every row (`logits_all`).
        let step = [SeqStep { tokens, start_pos: 0, block_table: blocks }];
        let batch = ForwardBatch::new(&step, self.kv.block_size, pooling == Pooling::Mean)?;
        let mut hidden = vec![];
        self.model.forward(&batch, &mut self.kv, &crate::dist::SingleRank, Some(&mut hidden))?;
        let last = hidden.pop().ok_or_else(|| crate::Error::Msg("the model gave no hidden state".into()))?;
        let host = last.to_cpu()?.to_dtype(DType::F32)?;
        let dim = host.dim(host.shape().len() - 1);
        super::embed::pool(host.f32s()?, dim, pooling)
    }

    fn release(&mut self, id: u64) {
        if let Some(s) = self.sampler.as_mut() {
            s.release(id);
        }
    }

    fn draft(&mut self, chunks: &[DraftChunk<'_>]) -> Result<Vec<Vec<u32>>> {
        match self.draft.as_mut() {
            Some(d) => d.propose(&*self.model, chunks),
            None => Err(Error::Msg("speculative decoding: this engine has no draft model".into())),
        }
    }
}

/// The KV cache's size, with checked arithmetic, against the memory of the device it goes to
/// (free GPU memory, or the host's available memory), before it is allocated: an impossible
/// `--kv-blocks` / `--max-num-seqs` / `--max-seq-len` is an error with the numbers, not an abort.
fn check_kv_size(
    layout: crate::batch::KvLayout,
    device: Device,
    elem: usize,
    block_size: usize,
    num_blocks: usize,
) -> Result<()> {
    use crate::config::{check_range, MAX_KV_BLOCK_SIZE};
    let flag = std::path::Path::new("(KV cache options)");
    check_range(flag, "kv_block_size", block_size, MAX_KV_BLOCK_SIZE)?;
    check_range(flag, "kv_blocks", num_blocks, usize::MAX)?;
    let dims =
        [layout.planes(), layout.num_layers, block_size, num_blocks, layout.kv_heads, layout.head_dim, elem];
    let bytes = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
    let avail = match device {
        Device::Cuda(n) => crate::device::gpu(n)?.mem_info().ok().map(|(free, _)| free as u64),
        _ => crate::device::host_memory_available(),
    };
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    match (bytes, avail) {
        (None, _) => Err(Error::Msg(format!(
            "KV cache of {num_blocks} blocks x {block_size} tokens: its size overflows; lower --kv-blocks, --max-num-seqs or --max-seq-len"
        ))),
        (Some(b), Some(a)) if b > a => Err(Error::Msg(format!(
            "KV cache of {num_blocks} blocks x {block_size} tokens x {} layers needs {:.2} GiB, but {:.2} GiB of {} memory is available; lower --kv-blocks, --max-num-seqs or --max-seq-len",
            layout.num_layers,
            gib(b),
            gib(a),
            if matches!(device, Device::Cuda(_)) { "GPU" } else { "host" },
        ))),
        _ => Ok(()),
    }
}
