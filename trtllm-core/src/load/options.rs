//! The options a model is loaded and run with.

use std::path::PathBuf;

use crate::model::LoadOptions;

/// What [`crate::Llm`] and the serving engine run with: how to load the model, and the engine limits
/// (an engine directory's `build_config.json` gives the defaults: [`LlmOptions::for_dir`]).
#[derive(Clone, Debug)]
pub struct LlmOptions {
    pub load: LoadOptions,
    pub kv_block_size: usize,
    /// Total KV blocks; `None` sizes the cache for `max_batch_size` sequences of `max_seq_len`.
    pub kv_num_blocks: Option<usize>,
    /// How the KV cache stores keys and values (`--kv-cache-dtype`).
    pub kv_cache_dtype: crate::batch::KvCacheDtype,
    pub max_batch_size: usize,
    pub max_seq_len: usize,
    /// Tensor-parallel ranks (CPU reference: one thread per rank). `None`: a checkpoint's own
    /// size, 1 for an HF directory.
    pub tp_size: Option<usize>,
    /// Pipeline stages (docs/parallelism.md; HF directories): the layers split in `pp_size`
    /// contiguous stages, each of `tp_size` ranks. 1: no pipeline.
    pub pp_size: usize,
    /// Where `tokenizer.json` is, when not in the model directory.
    pub tokenizer_dir: Option<PathBuf>,
    /// Replay decode steps as CUDA graphs on a single GPU (`runner::DecodeGraphs`); also off
    /// with `TRTLLM_NO_CUDA_GRAPH=1`.
    pub cuda_graphs: bool,
    /// Speculative decoding (`None`: one token per sequence per step).
    pub speculative: Option<SpecOptions>,
    /// In a multi-process launch: rank 0 sends every step to the other ranks, which run
    /// `CausalLM::follow` (`trtllm serve`); false: every rank runs the same loop on the same
    /// inputs (`run`, `bench`).
    pub lead_workers: bool,
}

/// Where draft tokens come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecMethod {
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the sequence's
    /// last n-gram (vLLM's `ngram`).
    Ngram,
    /// A smaller model with the target's vocabulary, run autoregressively for K tokens.
    Draft,
}

/// Most draft tokens per step.
pub const MAX_SPEC_TOKENS: usize = 32;
/// Longest n-gram prompt lookup matches.
pub const MAX_PROMPT_LOOKUP: usize = 64;

/// Speculative decoding: K draft tokens per sequence and step, verified by one target forward.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecOptions {
    pub method: SpecMethod,
    /// K: draft tokens per step (`--num-speculative-tokens`).
    pub num_tokens: usize,
    /// N-gram lookup: the longest and shortest suffix n-gram tried (longest first).
    pub prompt_lookup_max: usize,
    pub prompt_lookup_min: usize,
    /// The draft model's directory (`SpecMethod::Draft`).
    pub model: Option<PathBuf>,
}

impl SpecOptions {
    /// N-gram drafting with K tokens and the default lookup window (n = 4 down to 2).
    pub fn ngram(num_tokens: usize) -> Self {
        SpecOptions {
            method: SpecMethod::Ngram,
            num_tokens,
            prompt_lookup_max: 4,
            prompt_lookup_min: 2,
            model: None,
        }
    }

    /// A draft model at `dir` proposing K tokens.
    pub fn draft(dir: impl Into<PathBuf>, num_tokens: usize) -> Self {
        SpecOptions { method: SpecMethod::Draft, model: Some(dir.into()), ..Self::ngram(num_tokens) }
    }

    /// Sizes in range and the method's inputs present; errors name the flag.
    pub fn check(&self) -> crate::Result<()> {
        let bad = |m: String| Err(crate::Error::Request(m));
        if !(1..=MAX_SPEC_TOKENS).contains(&self.num_tokens) {
            return bad(format!("--num-speculative-tokens must be in [1, {MAX_SPEC_TOKENS}]"));
        }
        if self.prompt_lookup_min == 0 || self.prompt_lookup_max > MAX_PROMPT_LOOKUP {
            return bad(format!(
                "--prompt-lookup-min / --prompt-lookup-max must be in [1, {MAX_PROMPT_LOOKUP}]"
            ));
        }
        if self.prompt_lookup_min > self.prompt_lookup_max {
            return bad(format!(
                "--prompt-lookup-min {} is above --prompt-lookup-max {}",
                self.prompt_lookup_min, self.prompt_lookup_max
            ));
        }
        match (&self.method, &self.model) {
            (SpecMethod::Draft, None) => {
                bad("--speculative-method draft needs --speculative-model DIR".into())
            }
            (SpecMethod::Ngram, Some(d)) => bad(format!(
                "--speculative-model {} is a draft model, but --speculative-method is ngram",
                d.display()
            )),
            _ => Ok(()),
        }
    }
}

impl Default for LlmOptions {
    fn default() -> Self {
        LlmOptions {
            load: LoadOptions::default(),
            kv_block_size: 16,
            kv_num_blocks: None,
            kv_cache_dtype: crate::batch::KvCacheDtype::Auto,
            max_batch_size: 8,
            max_seq_len: 4096,
            tp_size: None,
            pp_size: 1,
            tokenizer_dir: None,
            cuda_graphs: true,
            speculative: None,
            lead_workers: false,
        }
    }
}

impl LlmOptions {
    /// Every size positive and under its cap (`config::limits`), before anything is sized from
    /// them; errors name the option and the limit.
    pub fn check(&self) -> crate::Result<()> {
        use crate::config::{check_range, MAX_BATCH_SIZE, MAX_CONTEXT, MAX_KV_BLOCK_SIZE};
        let flag = std::path::Path::new("(options)");
        check_range(flag, "kv_block_size", self.kv_block_size, MAX_KV_BLOCK_SIZE)?;
        check_range(flag, "max_batch_size", self.max_batch_size, MAX_BATCH_SIZE)?;
        check_range(flag, "max_seq_len", self.max_seq_len, MAX_CONTEXT)?;
        if let Some(n) = self.kv_num_blocks {
            check_range(flag, "kv_num_blocks", n, usize::MAX)?;
        }
        if let Some(s) = &self.speculative {
            s.check()?;
        }
        Ok(())
    }

    /// Threads a step runs on: tensor-parallel ranks (the option, else the checkpoint's) times
    /// pipeline stages.
    pub fn ranks(&self) -> usize {
        self.tp_size.unwrap_or(1).max(self.load.mapping.tp_size) * self.pp_size
    }

    /// KV blocks to allocate: `kv_num_blocks`, else `max_batch_size` sequences of `max_seq_len`
    /// (checked: an overflow is an error).
    pub fn kv_blocks(&self) -> crate::Result<usize> {
        self.check()?;
        match self.kv_num_blocks {
            Some(n) => Ok(n),
            None => self
                .max_batch_size
                .checked_mul(self.max_seq_len.div_ceil(self.kv_block_size))
                .ok_or_else(|| {
                    crate::Error::Msg(format!(
                        "max_batch_size {} x max_seq_len {} overflows the KV block count",
                        self.max_batch_size, self.max_seq_len
                    ))
                }),
        }
    }
}
