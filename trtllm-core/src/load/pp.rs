//! Pipeline parallelism inside one process (docs/parallelism.md): the decoder layers split into
//! `pp` contiguous stages (`Mapping::pp_layers`), each stage a model — or a [`TpModel`] group for
//! tp x pp — with a KV cache of its own layers only. Stage 0 embeds the ids and uses the caller's
//! cache; the last stage ends with the norm and the head. The hidden state goes from stage to
//! stage (a host tensor on the CPU; on GPUs copied to the next stage's device).
//!
//! A step's sequences are split into up to `pp` micro-batches ([`ForwardBatch::split_seqs`]) and
//! the stages run on one thread each, joined by channels, so stage `s` works on micro-batch `i`
//! while stage `s + 1` works on `i - 1`; the last stage's logits are concatenated in order.
//!
//! [`TpModel`]: super::TpModel

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use trtllm_kernels::Gpu;

use crate::batch::{ForwardBatch, KvCache, KvLayout};
use crate::config::ModelConfig;
use crate::dist::{Communicator, SingleRank};
use crate::model::{CausalLM, StageInput, StageOutput};
use crate::{Device, Error, Result, Tensor};

pub struct PpModel {
    /// Stage order; `stages[s]` was built for pipeline stage s.
    stages: Vec<Box<dyn CausalLM>>,
    /// The GPU of each stage's first rank (its KV cache's device); `None`: the CPU.
    gpus: Option<Vec<Arc<Gpu>>>,
    /// KV caches of stages 1..N (their layers only).
    peer_kv: Mutex<Vec<KvCache>>,
}

/// `t` on the device of `cache` (a copy through the host when it is on another GPU).
pub(crate) fn to_cache_device(t: Tensor, cache: &KvCache) -> Result<Tensor> {
    match (t.device(), cache.gpu()) {
        (Device::Cuda(n), Some(g)) if n == g.ordinal => Ok(t),
        (Device::Cuda(_), Some(g)) => t.to_cpu()?.to_gpu(&g),
        (Device::Cpu, Some(g)) => t.to_gpu(&g),
        (Device::Cuda(_), None) => t.to_cpu(),
        _ => Ok(t),
    }
}

/// The rows of every micro-batch's logits, in order, on the first part's device.
pub(crate) fn cat_rows(parts: Vec<Tensor>) -> Result<Tensor> {
    if parts.len() == 1 {
        return Ok(parts.into_iter().next().expect("one part"));
    }
    let gpu = parts.iter().find_map(|p| p.devbuf().map(|(b, _)| b.gpu().clone()));
    let host = parts.iter().map(|p| p.to_cpu()).collect::<Result<Vec<_>>>()?;
    let all = Tensor::cat0(&host)?;
    match gpu {
        Some(g) => all.to_gpu(&g),
        None => Ok(all),
    }
}

/// Stage `s`'s output as stage `s + 1`'s input, on that stage's device.
fn hand_on(out: StageOutput, next: &KvCache) -> Result<StageInput> {
    match out {
        StageOutput::Hidden { x, pending } => stage_input_on(StageInput::Hidden { x, pending }, next),
        StageOutput::Logits(_) => {
            Err(Error::Parallel("a pipeline stage before the last returned logits".into()))
        }
    }
}

/// `input` with its tensors on the device of `cache`.
pub(crate) fn stage_input_on(input: StageInput, cache: &KvCache) -> Result<StageInput> {
    Ok(match input {
        StageInput::Ids => StageInput::Ids,
        StageInput::Hidden { x, pending } => StageInput::Hidden {
            x: to_cache_device(x, cache)?,
            pending: pending.map(|p| to_cache_device(p, cache)).transpose()?,
        },
    })
}

/// A pipeline forward asked for per-layer hidden states, which no stage collects.
pub(crate) fn no_hidden_states() -> Error {
    Error::Parallel("per-layer hidden states are not collected under pipeline parallelism".into())
}

pub(crate) fn logits(out: StageOutput) -> Result<Tensor> {
    match out {
        StageOutput::Logits(l) => Ok(l),
        StageOutput::Hidden { .. } => {
            Err(Error::Parallel("the last pipeline stage returned no logits".into()))
        }
    }
}

impl PpModel {
    /// The stages of one model, in order (stage s built with `Mapping::new(tp, pp, s * tp + t)`),
    /// with the GPU of each stage's first rank when they run on GPUs.
    pub fn new(stages: Vec<Box<dyn CausalLM>>, gpus: Option<Vec<Arc<Gpu>>>) -> Result<Self> {
        let first =
            stages.first().ok_or_else(|| Error::Parallel("a pipeline needs at least one stage".into()))?;
        let (layout, arch) = (first.kv_layout(), &first.config().architecture);
        let mut next = 0;
        for (s, m) in stages.iter().enumerate() {
            let r = m.stage_layers();
            if m.kv_layout() != layout || &m.config().architecture != arch || r.start != next {
                return Err(Error::Parallel(format!(
                    "pipeline stage {s} (layers {r:?}) was built for another model or mapping than stage 0"
                )));
            }
            next = r.end;
        }
        if next != layout.num_layers {
            return Err(Error::Parallel(format!(
                "the pipeline stages cover {next} of {} layers",
                layout.num_layers
            )));
        }
        if gpus.as_ref().is_some_and(|g| g.len() != stages.len()) {
            return Err(Error::Parallel("one GPU per pipeline stage".into()));
        }
        Ok(PpModel { stages, gpus, peer_kv: Mutex::new(vec![]) })
    }

    pub fn pp_size(&self) -> usize {
        self.stages.len()
    }

    /// Caches of stages 1..N shaped like the caller's, holding only each stage's layers.
    fn peer_caches<'a>(&self, kv: &KvCache, peers: &'a mut Vec<KvCache>) -> Result<&'a mut Vec<KvCache>> {
        let stale = peers.len() != self.stages.len() - 1
            || peers.iter().any(|p| {
                p.block_size != kv.block_size
                    || p.num_blocks != kv.num_blocks
                    || p.kv_dtype() != kv.kv_dtype()
            });
        if stale {
            peers.clear();
            for (s, m) in self.stages.iter().enumerate().skip(1) {
                let (bs, nb, layers, kd) = (kv.block_size, kv.num_blocks, m.stage_layers(), kv.kv_dtype());
                peers.push(match (&self.gpus, kv.cuda_dtype()) {
                    (Some(g), Some(dtype)) => {
                        KvCache::new_cuda_stage(&g[s], dtype, m.kv_layout(), bs, nb, layers, kd)?
                    }
                    (None, None) => KvCache::new_stage(m.kv_layout(), bs, nb, layers, kd)?,
                    _ => {
                        return Err(Error::Device(
                            "a pipeline on GPUs needs a GPU KV cache (and one on the CPU a host one)".into(),
                        ))
                    }
                });
            }
        }
        Ok(peers)
    }

    /// Micro-batches through the stages, one thread per stage, channels between them: stage
    /// `s` takes micro-batch `i` as soon as stage `s - 1` hands it on. A failed micro-batch is
    /// handed on as its error, so every stage still sees every micro-batch and the step ends.
    fn pipelined(&self, micro: &[ForwardBatch], caches: Vec<&mut KvCache>) -> Result<Tensor> {
        type Msg = Result<StageOutput>;
        // channel s carries stage s's outputs: into stage s + 1, the last one out of the pipeline
        let (txs, rxs): (Vec<mpsc::Sender<Msg>>, Vec<mpsc::Receiver<Msg>>) =
            self.stages.iter().map(|_| mpsc::channel::<Msg>()).unzip();
        let mut rxs: Vec<Option<mpsc::Receiver<Msg>>> = rxs.into_iter().map(Some).collect();
        let done = rxs.pop().flatten().expect("one channel per stage");
        rxs.insert(0, None);
        std::thread::scope(|sc| {
            for (s, ((stage, cache), (rx, tx))) in
                self.stages.iter().zip(caches).zip(rxs.into_iter().zip(txs)).enumerate()
            {
                sc.spawn(move || {
                    for mb in micro {
                        let input = match &rx {
                            None => Ok(StageInput::Ids),
                            Some(rx) => match rx.recv() {
                                Ok(prev) => prev.and_then(|o| hand_on(o, cache)),
                                Err(_) => Err(Error::Parallel(format!(
                                    "pipeline stage {s}: the stage before it stopped"
                                ))),
                            },
                        };
                        let _ = tx.send(input.and_then(|i| stage.forward_stage(mb, cache, &SingleRank, i)));
                    }
                });
            }
        });
        let parts = done.into_iter().map(|o| o.and_then(logits)).collect::<Result<Vec<_>>>()?;
        cat_rows(parts)
    }
}

impl CausalLM for PpModel {
    fn config(&self) -> &ModelConfig {
        self.stages[0].config()
    }

    fn kv_layout(&self) -> KvLayout {
        self.stages[0].kv_layout()
    }

    /// The caller's cache is stage 0's: it holds stage 0's layers only (the other stages keep
    /// their own caches).
    fn stage_layers(&self) -> std::ops::Range<usize> {
        self.stages[0].stage_layers()
    }

    /// `comm` is not used: each stage runs its own (tensor-parallel) communication. Per-layer
    /// hidden states (`hidden`) are not collected across stages.
    fn forward(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        _comm: &dyn Communicator,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        if hidden.is_some() {
            return Err(no_hidden_states());
        }
        let mut guard = self.peer_kv.lock().unwrap_or_else(|p| p.into_inner());
        let peers = self.peer_caches(kv, &mut guard)?;
        let mut caches: Vec<&mut KvCache> = std::iter::once(kv).chain(peers.iter_mut()).collect();
        let micro = batch.split_seqs(self.stages.len());
        if micro.len() > 1 {
            return self.pipelined(&micro, caches);
        }
        let mut out = self.stages[0].forward_stage(batch, caches[0], &SingleRank, StageInput::Ids)?;
        for (stage, cache) in self.stages.iter().zip(caches).skip(1) {
            let input = hand_on(out, cache)?;
            out = stage.forward_stage(batch, cache, &SingleRank, input)?;
        }
        logits(out)
    }
}
