//! `Llm`: the high-level API, in the spirit of TensorRT-LLM's `LLM` — the serving scheduler
//! driven to completion on the caller's thread. All prompts of a call are queued together; each
//! step runs whatever the scheduler packs (their prefills share one forward, then one decode
//! token per unfinished sequence), so stop rules, penalties, logprobs and seeds behave exactly
//! as they do under `trtllm serve`.
//!
//! ```no_run
//! use trtllm_core::{runner::SamplingParams, Llm};
//! let mut llm = Llm::new("path/to/hf-model")?;
//! let out = llm.generate(&["Born in north-east France, Soyer trained as a"], &SamplingParams::greedy(30))?;
//! println!("{}", out[0].text);
//! # Ok::<(), trtllm_core::Error>(())
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::device::timing;
use crate::dist::Communicator;
use crate::load::LlmOptions;
use crate::model::CausalLM;
use crate::runner::{DecodeGraphs, ModelRunner, SamplingParams};
use crate::serve::{FinishReason, Scheduler, SchedulerConfig, SeqRequest, SpecStats};
use crate::text::Tokenizer;
use crate::{Error, Result, Tensor};

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Time of the steps up to the one that produced the call's first token, and of all
    /// later steps.
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

pub struct Llm {
    pub tokenizer: Option<Tokenizer>,
    sched: Scheduler<ModelRunner>,
    next_id: u64,
    /// Speculative decoding since the last [`Llm::take_spec_stats`].
    spec: SpecStats,
}

impl Llm {
    /// Load an HF, checkpoint or engine directory with default options (an engine's own limits).
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_options(&dir, LlmOptions::for_dir(dir.as_ref())?)
    }

    /// Load an HF directory, a `trtllm convert` checkpoint or a `trtllm build` engine.
    pub fn with_options(dir: impl AsRef<Path>, opts: LlmOptions) -> Result<Self> {
        let dir = dir.as_ref();
        // The sizes before anything is loaded or sized from them.
        opts.check()?;
        let total = timing::phase("total (Llm::with_options)");
        let tok_dir = opts.tokenizer_dir.as_deref().unwrap_or(dir);
        let load_tokenizer = |how: &str| {
            let p = timing::phase("tokenizer");
            let present = tok_dir.join("tokenizer.json").exists();
            let t = if present { Tokenizer::from_dir(tok_dir).map(Some) } else { Ok(None) };
            p.done_with(how);
            t
        };
        let (model, tokenizer) = if dir.join(crate::gguf::MARKER).is_file() {
            // A GGUF file: its weights load as a copy of the blocks (about the file's size), and
            // the tokenizer's parse holds ~25-30 MB of transients. Overlapped, both peak together
            // (1.6x the file in resident memory); in turn, with the parse's heap returned in
            // between, the peak is the weights' (docs/perf-notes.md, "GGUF, fourth round").
            let tokenizer = load_tokenizer("before the weights (GGUF: the peak memory is the weights')");
            crate::device::release_free_heap();
            (crate::load::load_model(dir, &opts), tokenizer)
        } else {
            // The tokenizer (a Llama-3 tokenizer.json takes a few hundred ms to parse) loads on
            // a thread of its own while the model loads.
            std::thread::scope(|s| {
                let tok = s.spawn(|| load_tokenizer("on its own thread, overlapping the model load"));
                let model = crate::load::load_model(dir, &opts);
                let tokenizer = tok
                    .join()
                    .unwrap_or_else(|_| Err(Error::Msg("the tokenizer loader thread panicked".into())));
                (model, tokenizer)
            })
        };
        let mut llm = Self::from_model(model?, tokenizer?, opts.clone())?;
        crate::load::apply_checkpoint_kv_scales(dir, llm.sched.runner_mut().kv_mut(), opts.ranks())?;
        if let Some(spec) = &opts.speculative {
            llm.sched.runner_mut().load_draft(spec, dir, &opts)?;
        }
        crate::device::release_free_heap();
        total.done();
        Ok(llm)
    }

    pub fn from_model(
        model: Box<dyn CausalLM>,
        tokenizer: Option<Tokenizer>,
        opts: LlmOptions,
    ) -> Result<Self> {
        let layout = model.kv_layout();
        let blocks = opts.kv_blocks()?;
        let p = timing::phase("kv cache");
        let dtype = opts.load.weight_dtype(model.config());
        let kv = ModelRunner::make_kv(
            &*model,
            opts.load.device,
            dtype,
            opts.kv_cache_dtype,
            opts.kv_block_size,
            blocks,
        )?;
        let mut eos = tokenizer.as_ref().map(|t| t.eos_token_ids.clone()).unwrap_or_default();
        if eos.is_empty() {
            eos = model.config().eos_token_ids.clone();
        }
        // this process's layers (a pipeline stage's)
        let layers = model.stage_layers().len();
        let kv_bytes =
            kv.num_slots() * layout.bytes_per_token(kv.elem_bytes()) / layout.num_layers.max(1) * layers;
        p.done_with(&format!(
            "{blocks} blocks of {} tokens x {} layers, {:.2} GiB{}",
            opts.kv_block_size,
            layers,
            kv_bytes as f64 / (1u64 << 30) as f64,
            if kv.kv_dtype() == crate::batch::KvCacheDtype::Fp8 { ", FP8 E4M3" } else { "" }
        ));
        let p = timing::phase("cuda graphs setup");
        // graphs are per GPU of one rank: not under tensor or pipeline parallelism
        let one_rank = opts.ranks() <= 1;
        let graphs = opts.cuda_graphs && one_rank;
        let runner = ModelRunner::new(model, kv, opts.max_batch_size, opts.max_seq_len, graphs);
        p.done_with(match runner.cuda_graphs() {
            Some(_) => "on (captured lazily, at the first decode step of each batch size)",
            None => "off",
        });
        // One packed prefill for all the prompts that fit, as a direct generate loop would run
        // them; no prefix cache (each call starts from nothing).
        let cfg = SchedulerConfig {
            max_batch_size: opts.max_batch_size,
            max_num_tokens: opts.max_batch_size.saturating_mul(opts.max_seq_len).max(1),
            max_seq_len: opts.max_seq_len,
            prefix_caching: false,
            speculative: opts.speculative.clone(),
        };
        Ok(Llm {
            tokenizer,
            sched: Scheduler::new(runner, cfg, eos)?,
            next_id: 0,
            spec: SpecStats::default(),
        })
    }

    pub fn model(&self) -> &dyn CausalLM {
        self.sched.runner().model()
    }

    /// The CUDA-graph decode state (`None`: every step runs eagerly).
    pub fn cuda_graphs(&self) -> Option<&DecodeGraphs> {
        self.sched.runner().cuda_graphs()
    }

    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            Error::Msg(
                "no tokenizer.json in the model directory (set a tokenizer directory: `--tokenizer-dir`)"
                    .into(),
            )
        })
    }

    /// Generate from text prompts.
    pub fn generate(&mut self, prompts: &[&str], params: &SamplingParams) -> Result<Vec<Generation>> {
        let ids = prompts.iter().map(|p| self.tokenizer()?.encode(p)).collect::<Result<Vec<_>>>()?;
        self.generate_ids(ids, params, &mut |_, _| {})
    }

    /// Generate from token ids; `on_token(prompt index, id)` is called for every new token as
    /// it is made. Prompt `i` samples with seed `params.seed + i` (as the `n` choices of one
    /// server request do).
    pub fn generate_ids(
        &mut self,
        prompts: Vec<Vec<u32>>,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<Vec<Generation>> {
        params.validate()?;
        let shared = Arc::new(params.clone());
        let base = self.next_id;
        self.next_id += prompts.len() as u64;
        let mut outs: Vec<(Vec<u32>, Option<FinishReason>)> = vec![(vec![], None); prompts.len()];
        for (i, p) in prompts.iter().enumerate() {
            if params.max_new_tokens == 0 {
                break;
            }
            if p.is_empty() {
                return Err(self.abort_from(base, i, Error::Request(format!("prompt {i} is empty"))));
            }
            let req = SeqRequest {
                id: base + i as u64,
                prompt: p.clone(),
                params: shared.clone(),
                seed: params.seed.map(|s| s.wrapping_add(i as u64)),
            };
            if let Err(e) = self.sched.add(req) {
                return Err(self.abort_from(base, i, e));
            }
        }
        let (mut prefill, mut decode) = (Duration::ZERO, Duration::ZERO);
        let mut first = true;
        while self.sched.has_work() {
            let t0 = Instant::now();
            let step = match self.sched.step() {
                Ok(s) => s,
                Err(e) => {
                    self.sched.abort_all();
                    return Err(e);
                }
            };
            // Draft-model time counts in decode steps only (the first step's is prefill).
            let mut spec = step.spec;
            if first {
                spec.draft_s = 0.0;
            }
            self.spec.add(&spec);
            for t in &step.tokens {
                let i = (t.seq - base) as usize;
                outs[i].0.push(t.token);
                outs[i].1 = t.finish;
                on_token(i, t.token);
            }
            if first {
                prefill += t0.elapsed();
                first = step.tokens.is_empty();
            } else {
                decode += t0.elapsed();
            }
        }
        prompts
            .into_iter()
            .zip(outs)
            .map(|(prompt_ids, (token_ids, finish))| {
                let text = match &self.tokenizer {
                    Some(t) => t.decode(&token_ids, true)?,
                    None => String::new(),
                };
                Ok(Generation {
                    prompt_ids,
                    token_ids,
                    text,
                    finish_reason: finish.unwrap_or(FinishReason::Length),
                    prefill_time: prefill,
                    decode_time: decode,
                })
            })
            .collect()
    }

    /// What speculative decoding did since the last call (drafts, acceptance, tokens per step,
    /// draft-model time in decode steps), and start counting again.
    pub fn take_spec_stats(&mut self) -> SpecStats {
        std::mem::take(&mut self.spec)
    }

    /// Drop the sequences `base..base + queued` of a call that failed while queueing.
    fn abort_from(&mut self, base: u64, queued: usize, e: Error) -> Error {
        for j in 0..queued {
            self.sched.abort(base + j as u64);
        }
        e
    }

    /// Logits at every position of `ids` (one prefill), and optionally every hidden state.
    pub fn logits_all(
        &mut self,
        ids: &[u32],
        hidden: Option<&mut Vec<Tensor>>,
        comm: &dyn Communicator,
    ) -> Result<Tensor> {
        let mut blocks = vec![];
        if !self.sched.blocks_mut().try_grow(&mut blocks, ids.len())? {
            self.sched.blocks_mut().release_all(&mut blocks);
            return Err(Error::Request(format!(
                "{} tokens do not fit the KV cache ({} blocks of {})",
                ids.len(),
                self.sched.blocks_mut().num_total(),
                self.sched.block_size()
            )));
        }
        let out = self.sched.runner_mut().logits_all(ids, &blocks, hidden, comm);
        self.sched.blocks_mut().release_all(&mut blocks);
        out
    }
}
