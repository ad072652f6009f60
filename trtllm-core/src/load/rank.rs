//! One process of a multi-process launch (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT): its
//! shard — tensor-parallel rank `t` of pipeline stage `s`, `rank = s * tp + t` (`Mapping`) —
//! joined to the others over a [`TcpGroup`]. Under `run` and `bench` every process runs the same
//! engine on the same requests (SPMD) and gets the same full logits, so all sample the same
//! tokens; under `serve` rank 0 leads and the others follow (below).
//!
//! Tensor parallelism inside a stage: NCCL on GPUs (the id sent over the TCP mesh), the TCP
//! collectives ([`TcpComm`]) on CPU ranks. Pipeline stages (CPU ranks): the step's sequences are
//! split into up to `pp` micro-batches; stage `s` sends each micro-batch's hidden state to the
//! same tensor-parallel rank of stage `s + 1` as soon as it is done, so the stages overlap; the
//! last stage sends the step's logits back to the ranks of the earlier stages.

use std::sync::Arc;

use super::pp::{cat_rows, logits, no_hidden_states, stage_input_on};
use crate::batch::{ForwardBatch, KvCache, KvLayout};
use crate::config::ModelConfig;
use crate::dist::{Communicator, TcpGroup};
use crate::model::{CausalLM, StageInput, StageOutput};
use crate::{Error, Result, Tensor};

/// Where this process sits in the pipeline: tensor-parallel rank `tp_rank` of `stage`.
pub(crate) struct Pipe {
    pub stage: usize,
    pub pp: usize,
    pub tp: usize,
    pub tp_rank: usize,
}

impl Pipe {
    /// The rank of this tensor-parallel rank's place in stage `s`.
    fn peer_in(&self, s: usize) -> usize {
        s * self.tp + self.tp_rank
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
    pub group: Arc<TcpGroup>,
    /// Rank 0 sending every step to the workers.
    pub lead: bool,
}

/// The largest step a worker accepts from the leader (tokens and block tables of one step).
const MAX_STEP_BYTES: usize = 1 << 30;

impl Drop for RankModel {
    fn drop(&mut self) {
        if self.lead {
            for r in 1..self.group.world() {
                let _ = self.group.send(r, &[]);
            }
        }
    }
}

impl RankModel {
    fn send_hidden(&self, pipe: &Pipe, out: StageOutput) -> Result<()> {
        let StageOutput::Hidden { x, pending } = out else {
            return Err(Error::Parallel("a pipeline stage before the last returned logits".into()));
        };
        let next = pipe.peer_in(pipe.stage + 1);
        self.group.send_tensor(next, &x)?;
        self.group.send(next, &[pending.is_some() as u8])?;
        pending.map_or(Ok(()), |p| self.group.send_tensor(next, &p))
    }

    fn recv_hidden(&self, pipe: &Pipe, tokens: usize, kv: &KvCache) -> Result<StageInput> {
        let prev = pipe.peer_in(pipe.stage - 1);
        let width = self.model.config().hidden_size;
        let x = self.group.recv_tensor(prev, tokens, width)?;
        let pending = match self.group.recv(prev, &[1])?[0] {
            0 => None,
            _ => Some(self.group.recv_tensor(prev, tokens, width)?),
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
                self.group.send_tensor(pipe.peer_in(s), &all)?;
            }
            return Ok(all);
        }
        let all = self.group.recv_tensor(pipe.peer_in(pipe.pp - 1), rows, max_cols)?;
        super::pp::to_cache_device(all, kv)
    }
}

impl RankModel {
    /// This rank's share of `batch` (the whole model's forward, or its pipeline stage).
    fn forward_local(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        match &self.pipe {
            None => self.model.forward(batch, kv, self.comm.as_ref(), hidden),
            Some(_) if hidden.is_some() => Err(no_hidden_states()),
            Some(pipe) => self.pipelined(pipe, batch, kv),
        }
    }

    /// The leader's step to every worker: its cache's blocks, block size and element bytes,
    /// then the batch.
    fn send_step(&self, batch: &ForwardBatch, kv: &KvCache) -> Result<()> {
        let mut msg: Vec<u8> = [kv.num_blocks, kv.block_size, kv.elem_bytes()]
            .iter()
            .flat_map(|&v| (v as u64).to_le_bytes())
            .collect();
        msg.extend(batch.encode()?);
        (1..self.group.world()).try_for_each(|r| self.group.send(r, &msg))
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
        if self.lead {
            self.send_step(batch, kv)?;
        }
        self.forward_local(batch, kv, hidden)
    }

    fn follow(&self, make_kv: &mut dyn FnMut(usize, usize) -> Result<KvCache>) -> Result<()> {
        if self.group.rank() == 0 {
            return Err(Error::Parallel("rank 0 leads; it does not follow".into()));
        }
        let mut kv: Option<KvCache> = None;
        loop {
            let msg = self.group.recv_upto(0, MAX_STEP_BYTES)?;
            if msg.is_empty() {
                return Ok(());
            }
            if msg.len() < 24 {
                return Err(Error::Parallel(format!("a step from the leader of {} bytes", msg.len())));
            }
            let field =
                |i: usize| u64::from_le_bytes(msg[8 * i..8 * i + 8].try_into().expect("8 bytes")) as usize;
            let (blocks, block_size, elem) = (field(0), field(1), field(2));
            let cache = match kv.take() {
                Some(c) if c.num_blocks == blocks && c.block_size == block_size => c,
                _ => make_kv(blocks, block_size)?,
            };
            if cache.elem_bytes() != elem {
                return Err(Error::Parallel(format!(
                    "rank {}: KV cache of {} bytes per element, the leader's has {elem} (same --kv-cache-dtype and --dtype on every rank)",
                    self.group.rank(),
                    cache.elem_bytes()
                )));
            }
            let kv = kv.insert(cache);
            self.forward_local(&ForwardBatch::decode(&msg[24..])?, kv, None)?;
        }
    }
}
