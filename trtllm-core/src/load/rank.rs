//! One process of a multi-process launch (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT): its
//! shard — tensor-parallel rank `t` of pipeline stage `s`, `rank = s * tp + t` (`Mapping`) —
//! joined to the others over a [`TcpGroup`]. Every process runs the same engine on the same
//! requests (SPMD) and gets the same full logits, so all sample the same tokens.
//!
//! Tensor parallelism inside a stage: NCCL on GPUs (the id sent over the TCP mesh), the TCP
//! collectives ([`TcpComm`]) on CPU ranks. Pipeline stages (CPU ranks): the step's sequences are
//! split into up to `pp` micro-batches; stage `s` sends each micro-batch's hidden state to the
//! same tensor-parallel rank of stage `s + 1` as soon as it is done, so the stages overlap; the
//! last stage sends the step's logits back to the ranks of the earlier stages.

use std::sync::Arc;

use super::pp::{cat_rows, logits, stage_input_on};
use crate::batch::{ForwardBatch, KvCache, KvLayout};
use crate::config::ModelConfig;
use crate::dist::{Communicator, TcpGroup};
use crate::model::{CausalLM, StageInput, StageOutput};
use crate::{Error, Result, Tensor};

/// Where this process sits in the pipeline.
pub(crate) struct Pipe {
    pub group: Arc<TcpGroup>,
    pub stage: usize,
    pub pp: usize,
    pub tp: usize,
}

impl Pipe {
    fn tp_rank(&self) -> usize {
        self.group.rank() % self.tp
    }
    /// The rank of this tensor-parallel rank's place in stage `s`.
    fn peer_in(&self, s: usize) -> usize {
        s * self.tp + self.tp_rank()
    }
    fn last(&self) -> bool {
        self.stage + 1 == self.pp
    }
}

/// A shard that runs its collectives on its own communicator (whatever `forward` is handed)
/// and, under pipeline parallelism, exchanges hidden states and logits with the other stages.
pub(crate) struct RankModel {
    pub model: Box<dyn CausalLM>,
    pub comm: Box<dyn Communicator + Send>,
    pub pipe: Option<Pipe>,
}

impl RankModel {
    fn send_hidden(&self, pipe: &Pipe, out: StageOutput) -> Result<()> {
        let StageOutput::Hidden { x, pending } = out else {
            return Err(Error::Parallel("a pipeline stage before the last returned logits".into()));
        };
        let next = pipe.peer_in(pipe.stage + 1);
        pipe.group.send_tensor(next, &x)?;
        pipe.group.send(next, &[pending.is_some() as u8])?;
        pending.map_or(Ok(()), |p| pipe.group.send_tensor(next, &p))
    }

    fn recv_hidden(&self, pipe: &Pipe, tokens: usize, kv: &KvCache) -> Result<StageInput> {
        let prev = pipe.peer_in(pipe.stage - 1);
        let width = self.model.config().hidden_size;
        let x = pipe.group.recv_tensor(prev, tokens, width)?;
        let pending = match pipe.group.recv(prev, &[1])?[0] {
            0 => None,
            _ => Some(pipe.group.recv_tensor(prev, tokens, width)?),
        };
        stage_input_on(StageInput::Hidden { x, pending }, kv)
    }

    /// This stage's share of a pipelined step; every stage returns the step's full logits.
    fn pipelined(&self, pipe: &Pipe, batch: &ForwardBatch, kv: &mut KvCache) -> Result<Tensor> {
        let cfg = self.model.config();
        let rows = batch.logit_rows().len();
        let max_cols = 2 * cfg.vocab_size.max(cfg.hidden_size);
        let mut parts = vec![];
        for mb in batch.split_seqs(pipe.pp) {
            let input = match pipe.stage {
                0 => StageInput::Ids,
                _ => self.recv_hidden(pipe, mb.num_tokens(), kv)?,
            };
            let out = self.model.forward_stage(&mb, kv, self.comm.as_ref(), input)?;
            match pipe.last() {
                true => parts.push(logits(out)?),
                false => self.send_hidden(pipe, out)?,
            }
        }
        if pipe.last() {
            let all = cat_rows(parts)?;
            for s in 0..pipe.stage {
                pipe.group.send_tensor(pipe.peer_in(s), &all)?;
            }
            return Ok(all);
        }
        let all = pipe.group.recv_tensor(pipe.peer_in(pipe.pp - 1), rows, max_cols)?;
        super::pp::to_cache_device(all, kv)
    }
}

impl CausalLM for RankModel {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn kv_layout(&self) -> KvLayout {
        self.model.kv_layout()
    }

    fn stage_layers(&self) -> std::ops::Range<usize> {
        self.model.stage_layers()
    }

    fn forward(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        _comm: &dyn Communicator,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        match &self.pipe {
            None => self.model.forward(batch, kv, self.comm.as_ref(), hidden),
            Some(_) if hidden.is_some() => Err(Error::Parallel(
                "per-layer hidden states are not collected under pipeline parallelism".into(),
            )),
            Some(pipe) => self.pipelined(pipe, batch, kv),
        }
    }
}
