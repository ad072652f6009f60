//! API level 4: `DecoderModelForCausalLM<L, N>` = embedding -> `L` x num_layers -> final norm `N`
//! -> lm_head (tied or not). `L` is a `#[decoder_layer]` struct; `N` the final norm type.

use std::sync::Arc;

use super::ModelLayout;
use crate::batch::{ForwardBatch, KvCache, KvLayout};
use crate::config::ModelConfig;
use crate::dist::Communicator;
use crate::layers::{BuildCtx, Embedding, ForwardCtx, NormLayer};
use crate::weights::{TpSplit, VarBuilder};
use crate::{ops, Error, Result, Tensor};

/// One decoder block. `#[decoder_layer]` implements it from field roles; a hand-written
/// implementation is equally valid.
pub trait DecoderLayer: Sized + Send + Sync {
    fn build(cx: &BuildCtx<'_>, vb: &VarBuilder<'_>) -> Result<Self>;
    /// `x` `[t, hidden]` -> `[t, hidden]` (residuals included).
    fn forward(&self, x: Tensor, cx: &mut ForwardCtx<'_>) -> Result<Tensor>;
    /// `forward` with the block's last residual add left to the next layer: the input is
    /// `x + pending` and the output `(y, d)` stands for `y + d`, so the next layer can fuse that
    /// add with its input norm (one `add_rms_norm` instead of an `add` and an `rms_norm`; same
    /// bits). The default defers nothing; `#[decoder_layer]` implements it.
    fn forward_deferred(
        &self,
        x: Tensor,
        pending: Option<Tensor>,
        cx: &mut ForwardCtx<'_>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let x = match pending {
            Some(d) => ops::add(&x, &d)?,
            None => x,
        };
        Ok((self.forward(x, cx)?, None))
    }
}

/// What the engine runs: any causal LM, however it was written.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a causal LM: #[register_model] wraps a model base such as `DecoderModelForCausalLM<MyLayer>`",
    label = "not a model (implement `trtllm_core::model::CausalLM` and `BuildCausalLM`)"
)]
pub trait CausalLM: Send + Sync {
    fn config(&self) -> &ModelConfig;
    fn kv_layout(&self) -> KvLayout;
    /// Logits `[rows, vocab]` for `batch.logit_rows()`. When `hidden` is given, it receives the
    /// hidden state after the embedding, after each layer, and after the final norm.
    fn forward(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        comm: &dyn Communicator,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor>;

    /// The decoder layers this model runs (a pipeline stage's; all of them otherwise): the KV
    /// cache layers it uses.
    fn stage_layers(&self) -> std::ops::Range<usize> {
        0..self.kv_layout().num_layers
    }

    /// A worker rank of a multi-process launch whose rank 0 leads (`LlmOptions::lead_workers`):
    /// run every step the leader sends until it says stop, in a KV cache `make_kv(blocks,
    /// block_size)` shaped like the leader's. Other models are not workers.
    fn follow(&self, _make_kv: &mut dyn FnMut(usize, usize) -> Result<KvCache>) -> Result<()> {
        Err(Error::Parallel(format!(
            "{} is not a worker rank of a multi-process launch (WORLD_SIZE, RANK != 0)",
            self.config().architecture
        )))
    }

    /// This model's part of a pipeline-parallel forward (docs/parallelism.md): `Ids` in and
    /// `Logits` out for a model that is the whole pipeline (the default: `forward`).
    fn forward_stage(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        comm: &dyn Communicator,
        input: StageInput,
    ) -> Result<StageOutput> {
        match input {
            StageInput::Ids => Ok(StageOutput::Logits(self.forward(batch, kv, comm, None)?)),
            StageInput::Hidden { .. } => Err(Error::Msg(format!(
                "{} does not run as a later pipeline stage",
                self.config().architecture
            ))),
        }
    }
}

/// What a pipeline stage starts from: the token ids (stage 0) or the previous stage's hidden state.
#[derive(Clone)]
pub enum StageInput {
    Ids,
    /// `x + pending` is the hidden state `[tokens, hidden]` (the last residual add deferred).
    Hidden {
        x: Tensor,
        pending: Option<Tensor>,
    },
}

/// What a pipeline stage hands on: the hidden state to the next stage, or the logits (last stage).
pub enum StageOutput {
    Hidden { x: Tensor, pending: Option<Tensor> },
    Logits(Tensor),
}

/// Building a model from its config, weights and checkpoint layout.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be built by #[register_model]: it needs `trtllm_core::model::BuildCausalLM`",
    label = "use a model base such as `DecoderModelForCausalLM<MyLayer>`"
)]
pub trait BuildCausalLM: Sized {
    fn build(cfg: &ModelConfig, vb: &VarBuilder<'_>, layout: &ModelLayout) -> Result<Self>;
}

pub struct DecoderModelForCausalLM<L, N = crate::layers::RmsNorm> {
    cfg: ModelConfig,
    embed_tokens: Embedding,
    position_embeddings: Option<Embedding>,
    layers: Vec<L>,
    norm: N,
    /// `None` when tied to the embedding (its vocab-parallel shard under tensor parallelism).
    lm_head: Option<Tensor>,
    tp_size: usize,
    /// Pipeline stage: embeds the ids (first) / ends with the norm and the head (last); both
    /// without pipeline parallelism. `layers` are the stage's own (`Mapping::pp_layers`).
    first_stage: bool,
    last_stage: bool,
    layer_range: std::ops::Range<usize>,
}

/// A unit of the (possibly parallel) build.
#[derive(Clone, Copy)]
enum Job {
    Embed,
    Pos,
    Layer(usize),
    Norm,
    Head,
}

enum Part<L, N> {
    Embed(Embedding),
    Pos(Option<Embedding>),
    Layer(L),
    Norm(N),
    Head(Option<Tensor>),
}

impl<L: DecoderLayer, N: NormLayer + Send> BuildCausalLM for DecoderModelForCausalLM<L, N> {
    fn build(cfg: &ModelConfig, vb: &VarBuilder<'_>, layout: &ModelLayout) -> Result<Self> {
        let base = if layout.prefix.is_empty() { vb.clone() } else { vb.pp(layout.prefix) };
        let mult = cfg.arch.embedding_multiplier.map(|m| m as f32);
        let (v, h) = (cfg.vocab_size, cfg.hidden_size);
        // The parts load on `threads` threads, the two largest tensors (embedding, head) first;
        // on one thread (the planner) in declaration order, which is the weight map's order.
        let threads = vb.load_threads();
        let mut jobs = vec![Job::Embed];
        if threads > 1 {
            jobs.push(Job::Head);
        }
        jobs.push(Job::Pos);
        jobs.extend(vb.mapping.pp_layers(cfg.num_hidden_layers).map(Job::Layer));
        jobs.push(Job::Norm);
        if threads <= 1 {
            jobs.push(Job::Head);
        }
        let parts = crate::weights::map_jobs(threads, &jobs, |job| {
            Ok(match *job {
                Job::Embed => {
                    Part::Embed(Embedding::vocab_parallel(&base.pp(layout.embed_tokens), v, h, mult)?)
                }
                Job::Pos => Part::Pos(match layout.position_embeddings {
                    Some(name) => Some(Embedding::new(&base.pp(name), cfg.max_position_embeddings, h, None)?),
                    None => None,
                }),
                Job::Layer(layer_idx) => {
                    let cx = BuildCtx { cfg, layer_idx };
                    Part::Layer(L::build(&cx, &base.pp(layout.layers).pp(layer_idx))?)
                }
                Job::Norm => {
                    let cx = BuildCtx { cfg, layer_idx: cfg.num_hidden_layers };
                    Part::Norm(N::build(&cx, &base.pp(layout.norm))?)
                }
                // Tied: the head is the embedding table, whose vocab-parallel shard (rank r's
                // rows) is exactly the head's column split.
                Job::Head if cfg.tie_word_embeddings => Part::Head(None),
                Job::Head => Part::Head(Some(vb.pp(layout.lm_head).get(
                    "weight",
                    &[v, h],
                    TpSplit::Column(vec![v]),
                )?)),
            })
        })?;
        let (mut embed_tokens, mut position_embeddings, mut norm, mut lm_head) = (None, None, None, None);
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for part in parts {
            match part {
                Part::Embed(e) => embed_tokens = Some(e),
                Part::Pos(p) => position_embeddings = p,
                Part::Layer(l) => layers.push(l), // in layer order: results come in job order
                Part::Norm(n) => norm = Some(n),
                Part::Head(t) => lm_head = t,
            }
        }
        let missing = |what: &str| Error::Msg(format!("building the model: no {what} was built"));
        Ok(DecoderModelForCausalLM {
            cfg: cfg.clone(),
            embed_tokens: embed_tokens.ok_or_else(|| missing("embedding"))?,
            position_embeddings,
            layers,
            norm: norm.ok_or_else(|| missing("final norm"))?,
            lm_head,
            tp_size: vb.tp_size(),
            first_stage: vb.mapping.pp_rank() == 0,
            last_stage: vb.mapping.pp_rank() + 1 == vb.mapping.pp_size,
            layer_range: vb.mapping.pp_layers(cfg.num_hidden_layers),
        })
    }
}

impl<L: DecoderLayer, N: NormLayer + Send + Sync> CausalLM for DecoderModelForCausalLM<L, N> {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn kv_layout(&self) -> KvLayout {
        match self.cfg.arch.mla {
            // MLA: one latent row per token, the same on every rank.
            Some(m) => KvLayout {
                num_layers: self.cfg.num_hidden_layers,
                kv_heads: 1,
                head_dim: m.lora + m.rope,
                values: false,
            },
            None => KvLayout {
                num_layers: self.cfg.num_hidden_layers,
                kv_heads: crate::weights::heads_per_rank(self.cfg.num_key_value_heads, self.tp_size),
                head_dim: self.cfg.head_dim,
                values: true,
            },
        }
    }

    fn forward(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        comm: &dyn Communicator,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        if !(self.first_stage && self.last_stage) {
            return Err(Error::Msg("a pipeline stage runs through forward_stage, not forward".into()));
        }
        match self.run(batch, kv, comm, StageInput::Ids, hidden)? {
            StageOutput::Logits(l) => Ok(l),
            StageOutput::Hidden { .. } => Err(Error::Msg("the last stage returned no logits".into())),
        }
    }

    fn stage_layers(&self) -> std::ops::Range<usize> {
        self.layer_range.clone()
    }

    fn forward_stage(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        comm: &dyn Communicator,
        input: StageInput,
    ) -> Result<StageOutput> {
        if matches!(input, StageInput::Ids) != self.first_stage {
            return Err(Error::Msg(format!(
                "pipeline stage input: {} (first stage: {})",
                if matches!(input, StageInput::Ids) { "token ids" } else { "a hidden state" },
                self.first_stage
            )));
        }
        self.run(batch, kv, comm, input, None)
    }
}

impl<L: DecoderLayer, N: NormLayer + Send + Sync> DecoderModelForCausalLM<L, N> {
    /// Embed (first stage) -> this stage's layers -> norm + head (last stage).
    fn run(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        comm: &dyn Communicator,
        input: StageInput,
        mut hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<StageOutput> {
        // Batch metadata on the device: the caller's persistent buffers (a CUDA-graph decode
        // step) when they are on this cache's GPU, else uploaded now.
        let gpu = kv.gpu();
        let given = batch
            .device
            .as_deref()
            .filter(|d| gpu.as_ref().is_some_and(|g| Arc::ptr_eq(g, d.positions.gpu())));
        let uploaded = match (given, gpu) {
            (None, Some(gpu)) => Some(batch.to_device(&gpu)?),
            _ => None,
        };
        let dev = given.or(uploaded.as_ref());
        let (mut x, mut pending) = match input {
            StageInput::Ids => {
                let mut x = self.embed_tokens.forward_tp(batch, dev, comm)?;
                if let Some(pe) = &self.position_embeddings {
                    x = ops::add(&x, &pe.forward_positions_batch(batch, dev)?)?;
                }
                (x, None)
            }
            StageInput::Hidden { x, pending } => (x, pending),
        };
        let mut cx = ForwardCtx { batch, kv, comm, dev };
        if let Some(h) = hidden.as_deref_mut() {
            h.push(x.clone());
        }
        // Each layer's last residual add is deferred into the next layer's input norm (and the
        // final norm) unless the per-layer hidden states are wanted.
        for layer in &self.layers {
            if let Some(h) = hidden.as_deref_mut() {
                x = layer.forward(x, &mut cx)?;
                h.push(x.clone());
            } else {
                (x, pending) = layer.forward_deferred(x, pending.take(), &mut cx)?;
            }
        }
        if !self.last_stage {
            return Ok(StageOutput::Hidden { x, pending });
        }
        // Only the rows whose logits are wanted go through the norm and the head.
        let rows = batch.logit_rows();
        let x = ops::select_rows(&x, &rows)?;
        let x = match pending {
            Some(d) => self.norm.forward_residual(&ops::select_rows(&d, &rows)?, &x)?.1,
            None => self.norm.forward(&x)?,
        };
        if let Some(h) = hidden {
            h.push(x.clone());
        }
        let head = self.lm_head.as_ref().unwrap_or(&self.embed_tokens.weight);
        let mut logits = ops::matmul_t(&x, head)?;
        if self.tp_size > 1 {
            // [rows, vocab / tp] on each rank -> [rows, vocab]
            logits = comm.all_gather_cols(&logits)?;
        }
        if let Some(s) = self.cfg.arch.logit_scale {
            logits = ops::scale(&logits, s as f32)?;
        }
        if let Some(cap) = self.cfg.final_logit_softcapping {
            logits = ops::softcap(&logits, cap as f32)?;
        }
        Ok(StageOutput::Logits(logits))
    }
}
