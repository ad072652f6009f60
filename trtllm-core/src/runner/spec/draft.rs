//! The draft model: a second causal LM (or the target itself, a self-draft) with its own paged
//! KV cache of the target's geometry. It shares the target's block tables: position `p` of a
//! sequence is the same slot in both caches, so the scheduler's blocks, prefix cache and
//! rollback serve both. Each step it mirrors the target's chunks (prefill chunks and decode
//! tokens: its KV follows the target's) and, for the sequences that speculate, proposes K greedy
//! tokens: one batched forward over every chunk, then K - 1 batched one-token forwards (plain
//! decode steps, replayed as CUDA graphs where the target's would be).

use std::path::Path;

use super::super::graphs::{forward_step, DecodeGraphs};
use crate::batch::{ForwardBatch, KvCache, SeqStep};
use crate::load::{LlmOptions, SpecOptions};
use crate::model::CausalLM;
use crate::{Error, Result};

/// The draft model `spec` names, loaded with `opts` (device, dtype); `None` when its directory
/// is `target_dir` (a self-draft: the target's weights are used, not loaded twice).
pub fn load(spec: &SpecOptions, target_dir: &Path, opts: &LlmOptions) -> Result<Option<Box<dyn CausalLM>>> {
    let Some(dir) = spec.model.as_deref() else {
        return Err(Error::Msg(
            "speculative decoding with a draft model needs --speculative-model DIR".into(),
        ));
    };
    if opts.tp_size.unwrap_or(1) > 1 || opts.load.mapping.tp_size > 1 {
        return Err(Error::Msg(
            "--speculative-model: a draft model runs on one rank only (no --tp-size)".into(),
        ));
    }
    let canon = |p: &Path| {
        p.canonicalize().map_err(|e| Error::Msg(format!("--speculative-model {}: {e}", p.display())))
    };
    if canon(dir)? == canon(target_dir)? {
        return Ok(None);
    }
    let mut o = opts.clone();
    o.tokenizer_dir = None;
    o.tp_size = None;
    let m = crate::load::load_model(dir, &o)
        .map_err(|e| Error::Msg(format!("--speculative-model {}: {e}", dir.display())))?;
    Ok(Some(m))
}

/// One sequence's draft work in a step: the tokens whose draft KV is not computed yet (ending
/// with the sequence's last token), from position `start_pos`, and how many tokens to propose
/// (0: only compute the KV). The table must cover `start_pos + tokens.len() + k - 1` positions.
pub struct DraftChunk<'a> {
    pub tokens: &'a [u32],
    pub start_pos: usize,
    pub block_table: &'a [u32],
    pub k: usize,
}

/// A draft model with its KV cache and decode graphs.
pub struct DraftModel {
    /// `None`: the target model drafts for itself (self-draft; its weights are not loaded twice).
    model: Option<Box<dyn CausalLM>>,
    kv: KvCache,
    graphs: Option<DecodeGraphs>,
}

impl DraftModel {
    /// `model` (`None`: the target) over `kv`; `graphs`: replay its decode steps as CUDA graphs
    /// (`max_batch` sequences of `max_seq_len`) where they apply.
    pub fn new(
        model: Option<Box<dyn CausalLM>>,
        target: &dyn CausalLM,
        kv: KvCache,
        max_batch: usize,
        max_seq_len: usize,
        graphs: bool,
    ) -> Result<Self> {
        let m = model.as_deref().unwrap_or(target);
        let (dv, tv) = (m.config().vocab_size, target.config().vocab_size);
        if dv > tv {
            return Err(Error::Msg(format!(
                "the draft model's vocabulary ({dv} tokens) is larger than the target's ({tv}): a draft must use the target's tokenizer"
            )));
        }
        let graphs = DecodeGraphs::new(m, &kv, max_batch, max_seq_len, graphs);
        Ok(DraftModel { model, kv, graphs })
    }

    pub fn kv(&self) -> &KvCache {
        &self.kv
    }

    /// Capture the draft's decode graphs now (as the target's, before any sequence holds a
    /// block): lazily, mid-serve, each capture would cost a latency spike and an arena allocated
    /// after the KV budget took the memory.
    pub fn capture_graphs(&mut self, target: &dyn CausalLM) -> Result<Vec<usize>> {
        let model = self.model.as_deref().unwrap_or(target);
        match self.graphs.as_mut() {
            Some(g) => g.capture_all(model, &mut self.kv),
            None => Ok(vec![]),
        }
    }

    /// Run `chunks` (see [`DraftChunk`]) with `target` standing in for a self-draft: up to
    /// `k` greedy draft tokens per chunk.
    pub fn propose(&mut self, target: &dyn CausalLM, chunks: &[DraftChunk<'_>]) -> Result<Vec<Vec<u32>>> {
        let model = self.model.as_deref().unwrap_or(target);
        let mut out: Vec<Vec<u32>> = vec![vec![]; chunks.len()];
        if chunks.is_empty() {
            return Ok(out);
        }
        let bs = self.kv.block_size;
        // A draft whose vocabulary is smaller than the target's (Qwen2.5 pairs: 151936 vs
        // 152064) reads the target's ids beyond it as id 0: its cache stays in step, its
        // proposals there are only worse, and verification keeps the output the target's.
        let vocab = model.config().vocab_size;
        let narrower = vocab < target.config().vocab_size;
        let clamped: Vec<std::borrow::Cow<'_, [u32]>> = chunks
            .iter()
            .map(|c| match narrower && c.tokens.iter().any(|&t| t as usize >= vocab) {
                false => std::borrow::Cow::Borrowed(c.tokens),
                true => c.tokens.iter().map(|&t| if (t as usize) < vocab { t } else { 0 }).collect(),
            })
            .collect();
        let steps: Vec<SeqStep<'_>> = chunks
            .iter()
            .zip(&clamped)
            .map(|(c, t)| SeqStep { tokens: t, start_pos: c.start_pos, block_table: c.block_table })
            .collect();
        let batch = ForwardBatch::new(&steps, bs, false)?;
        let logits = forward_step(self.graphs.as_mut(), model, &batch, &mut self.kv)?;
        let ids = crate::ops::argmax_rows(&logits)?;
        let mut live: Vec<usize> = (0..chunks.len()).filter(|&i| chunks[i].k > 0).collect();
        for &i in &live {
            out[i].push(ids[i]);
        }
        for j in 1.. {
            live.retain(|&i| chunks[i].k > j);
            if live.is_empty() {
                break;
            }
            let last: Vec<[u32; 1]> = live.iter().map(|&i| [out[i][j - 1]]).collect();
            let steps: Vec<SeqStep<'_>> = live
                .iter()
                .zip(&last)
                .map(|(&i, t)| SeqStep {
                    tokens: t,
                    start_pos: chunks[i].start_pos + chunks[i].tokens.len() + j - 1,
                    block_table: chunks[i].block_table,
                })
                .collect();
            let batch = ForwardBatch::new(&steps, bs, false)?;
            let logits = forward_step(self.graphs.as_mut(), model, &batch, &mut self.kv)?;
            for (&i, t) in live.iter().zip(crate::ops::argmax_rows(&logits)?) {
                out[i].push(t);
            }
        }
        Ok(out)
    }
}
