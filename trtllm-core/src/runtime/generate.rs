//! `Llm`: the high-level API, in the spirit of TensorRT-LLM's `LLM`. All prompts of a call are
//! run together: their prefills share one packed forward, then every step decodes one token per
//! unfinished sequence, each through its own KV blocks.
//!
//! ```no_run
//! use trtllm_core::runtime::{Llm, SamplingParams};
//! let mut llm = Llm::new("path/to/hf-model")?;
//! let out = llm.generate(&["Born in north-east France, Soyer trained as a"], &SamplingParams::greedy(30))?;
//! println!("{}", out[0].text);
//! # Ok::<(), trtllm_core::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::load_timing as timing;
use super::{BlockAllocator, ForwardBatch, KvCache, Sampler, SamplingParams, SeqStep, Tokenizer};
use crate::layers::Communicator;
use crate::model::{CausalLM, LoadOptions};
use crate::{Error, Result, Tensor};

/// Engine-level limits (the `build` config).
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub load: LoadOptions,
    pub kv_block_size: usize,
    /// Total KV blocks; `None` sizes the cache for `max_batch_size` sequences of `max_seq_len`.
    pub kv_num_blocks: Option<usize>,
    pub max_batch_size: usize,
    pub max_seq_len: usize,
    /// Tensor-parallel ranks (CPU reference: one thread per rank). `None`: a checkpoint's own
    /// size, 1 for an HF directory.
    pub tp_size: Option<usize>,
    /// Where `tokenizer.json` is, when not in the model directory.
    pub tokenizer_dir: Option<PathBuf>,
    /// Replay decode steps as CUDA graphs on a single GPU (`runtime::DecodeGraphs`); also off
    /// with `TRTLLM_NO_CUDA_GRAPH=1`.
    pub cuda_graphs: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            load: LoadOptions::default(),
            kv_block_size: 16,
            kv_num_blocks: None,
            max_batch_size: 8,
            max_seq_len: 4096,
            tp_size: None,
            tokenizer_dir: None,
            cuda_graphs: true,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: FinishReason,
    /// Time of the prefill step that produced the first token, and of all decode steps.
    pub prefill_time: Duration,
    pub decode_time: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Length,
    Stop,
}

pub struct Llm {
    pub model: Box<dyn CausalLM>,
    pub tokenizer: Option<Tokenizer>,
    kv: KvCache,
    alloc: BlockAllocator,
    opts: EngineOptions,
    eos: Vec<u32>,
    /// Captured decode steps (GPU, one rank); built from `model` and `kv`, which never change.
    graphs: Option<super::DecodeGraphs>,
}

struct Seq {
    tokens: Vec<u32>,
    prompt_len: usize,
    cached: usize,
    blocks: Vec<u32>,
    sampler: Sampler,
    done: Option<FinishReason>,
}

impl Llm {
    /// Load an HF, checkpoint or engine directory with default options (an engine's own limits).
    pub fn new(dir: impl AsRef<Path>) -> Result<Self> {
        Self::with_options(&dir, EngineOptions::for_dir(dir.as_ref())?)
    }

    /// Load an HF directory, a `trtllm convert` checkpoint or a `trtllm build` engine.
    pub fn with_options(dir: impl AsRef<Path>, opts: EngineOptions) -> Result<Self> {
        let dir = dir.as_ref();
        let total = timing::phase("total (Llm::with_options)");
        let tok_dir = opts.tokenizer_dir.as_deref().unwrap_or(dir);
        // The tokenizer (a Llama-3 tokenizer.json takes a few hundred ms to parse) loads on a
        // thread of its own while the model loads.
        let (model, tokenizer) = std::thread::scope(|s| {
            let tok = s.spawn(|| {
                let p = timing::phase("tokenizer");
                let present = tok_dir.join("tokenizer.json").exists();
                let t = if present { Tokenizer::from_dir(tok_dir).map(Some) } else { Ok(None) };
                p.done_with("on its own thread, overlapping the model load");
                t
            });
            let model = super::load::load_engine_model(dir, &opts);
            let tokenizer =
                tok.join().unwrap_or_else(|_| Err(Error::Msg("the tokenizer loader thread panicked".into())));
            (model, tokenizer)
        });
        let llm = Self::from_model(model?, tokenizer?, opts)?;
        total.done();
        Ok(llm)
    }

    pub fn from_model(
        model: Box<dyn CausalLM>,
        tokenizer: Option<Tokenizer>,
        opts: EngineOptions,
    ) -> Result<Self> {
        let layout = model.kv_layout();
        let blocks =
            opts.kv_num_blocks.unwrap_or(opts.max_batch_size * opts.max_seq_len.div_ceil(opts.kv_block_size));
        let p = timing::phase("kv cache");
        let kv = match opts.load.device {
            crate::Device::Cuda(n) => {
                let dtype = opts.load.weight_dtype(model.config());
                KvCache::new_cuda(&crate::ops::cuda::gpu(n)?, dtype, layout, opts.kv_block_size, blocks)?
            }
            _ => KvCache::new(layout, opts.kv_block_size, blocks)?,
        };
        let mut eos = tokenizer.as_ref().map(|t| t.eos_token_ids.clone()).unwrap_or_default();
        if eos.is_empty() {
            eos = model.config().eos_token_ids.clone();
        }
        let elem = kv.cuda_dtype().map_or(4, |d| d.size_in_bytes());
        let kv_bytes = 2 * layout.num_layers * kv.num_slots() * layout.kv_heads * layout.head_dim * elem;
        p.done_with(&format!(
            "{blocks} blocks of {} tokens x {} layers, {:.2} GiB",
            opts.kv_block_size,
            layout.num_layers,
            kv_bytes as f64 / (1u64 << 30) as f64
        ));
        let p = timing::phase("cuda graphs setup");
        let one_rank = opts.tp_size.unwrap_or(1) == 1 && opts.load.mapping.tp_size <= 1;
        let graphs = super::DecodeGraphs::new(
            &*model,
            &kv,
            opts.max_batch_size,
            opts.max_seq_len,
            opts.cuda_graphs && one_rank,
        );
        p.done_with(match &graphs {
            Some(_) => "on (captured lazily, at the first decode step of each batch size)",
            None => "off",
        });
        Ok(Llm { model, tokenizer, kv, alloc: BlockAllocator::new(blocks), opts, eos, graphs })
    }

    /// The CUDA-graph decode state (`None`: every step runs eagerly).
    pub fn cuda_graphs(&self) -> Option<&super::DecodeGraphs> {
        self.graphs.as_ref()
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

    /// Generate from token ids; `on_token(seq, id)` is called for every new token as it is made.
    pub fn generate_ids(
        &mut self,
        prompts: Vec<Vec<u32>>,
        params: &SamplingParams,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<Vec<Generation>> {
        params.validate()?;
        let max_ctx = self.model.config().max_position_embeddings.max(self.opts.max_seq_len);
        for (i, p) in prompts.iter().enumerate() {
            if p.is_empty() {
                return Err(Error::Request(format!("prompt {i} is empty")));
            }
            if p.len() + params.max_new_tokens > max_ctx && self.model.config().arch.no_rope {
                return Err(Error::Request(format!(
                    "prompt {i}: {} tokens + {} new exceed {max_ctx}",
                    p.len(),
                    params.max_new_tokens
                )));
            }
        }
        let mut seqs: Vec<Seq> = prompts
            .into_iter()
            .enumerate()
            .map(|(i, p)| Seq {
                prompt_len: p.len(),
                tokens: p,
                cached: 0,
                blocks: vec![],
                sampler: Sampler::new(params.seed.map(|s| s + i as u64)),
                done: None,
            })
            .collect();
        let result = self.run(&mut seqs, params, on_token);
        for s in &mut seqs {
            self.alloc.release_all(&mut s.blocks);
        }
        let (prefill_time, decode_time) = result?;
        seqs.into_iter()
            .map(|s| {
                let new = s.tokens[s.prompt_len..].to_vec();
                let text = match &self.tokenizer {
                    Some(t) => t.decode(&new, true)?,
                    None => String::new(),
                };
                Ok(Generation {
                    prompt_ids: s.tokens[..s.prompt_len].to_vec(),
                    token_ids: new,
                    text,
                    finish_reason: s.done.unwrap_or(FinishReason::Length),
                    prefill_time,
                    decode_time,
                })
            })
            .collect()
    }

    fn run(
        &mut self,
        seqs: &mut [Seq],
        params: &SamplingParams,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<(Duration, Duration)> {
        let (mut prefill, mut decode) = (Duration::ZERO, Duration::ZERO);
        let mut first = true;
        while params.max_new_tokens > 0 && seqs.iter().any(|s| s.done.is_none()) {
            let t0 = Instant::now();
            let active: Vec<usize> = (0..seqs.len()).filter(|&i| seqs[i].done.is_none()).collect();
            for &i in &active {
                let s = &mut seqs[i];
                self.alloc.ensure(&mut s.blocks, s.tokens.len(), self.opts.kv_block_size)?;
            }
            let steps: Vec<SeqStep<'_>> = active
                .iter()
                .map(|&i| SeqStep {
                    tokens: &seqs[i].tokens[seqs[i].cached..],
                    start_pos: seqs[i].cached,
                    block_table: &seqs[i].blocks,
                })
                .collect();
            let batch = ForwardBatch::new(&steps, self.opts.kv_block_size, false)?;
            let logits =
                super::graph::forward_step(self.graphs.as_mut(), &*self.model, &batch, &mut self.kv)?;
            let v = logits.dim(1);
            // Greedy on the GPU: only the ids cross to the host.
            let greedy =
                if params.temperature == 0.0 { Some(crate::ops::argmax_rows(&logits)?) } else { None };
            let host = if greedy.is_none() { logits.to_cpu()?.to_dtype(crate::DType::F32)? } else { logits };
            for (row, &i) in active.iter().enumerate() {
                let s = &mut seqs[i];
                s.cached = s.tokens.len();
                let tok = match &greedy {
                    Some(ids) => ids[row],
                    None => s.sampler.sample(&host.f32s()?[row * v..(row + 1) * v], params),
                };
                s.tokens.push(tok);
                on_token(i, tok);
                let stop =
                    !params.ignore_eos && self.eos.contains(&tok) || params.stop_token_ids.contains(&tok);
                if stop {
                    s.done = Some(FinishReason::Stop);
                } else if s.tokens.len() - s.prompt_len >= params.max_new_tokens {
                    s.done = Some(FinishReason::Length);
                }
            }
            if first {
                prefill = t0.elapsed();
                first = false;
            } else {
                decode += t0.elapsed();
            }
        }
        Ok((prefill, decode))
    }

    /// Logits at every position of `ids` (one prefill), and optionally every hidden state.
    pub fn logits_all(
        &mut self,
        ids: &[u32],
        hidden: Option<&mut Vec<Tensor>>,
        comm: &dyn Communicator,
    ) -> Result<Tensor> {
        let mut blocks = vec![];
        self.alloc.ensure(&mut blocks, ids.len(), self.opts.kv_block_size)?;
        let step = [SeqStep { tokens: ids, start_pos: 0, block_table: &blocks }];
        let batch = ForwardBatch::new(&step, self.opts.kv_block_size, true);
        let out = batch.and_then(|b| self.model.forward(&b, &mut self.kv, comm, hidden));
        self.alloc.release_all(&mut blocks);
        out
    }
}
