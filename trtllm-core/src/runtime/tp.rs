//! The CPU reference of tensor parallelism: the ranks of a group run in one process, one
//! thread per rank, each with its own model shard (built with `Mapping::new(tp, 1, rank)`) and
//! its own KV cache, exchanging partial sums through [`LocalComm`]. `TpModel` is itself a
//! `CausalLM`, so `Llm` runs it unchanged: rank 0 runs on the caller's thread with the caller's
//! KV cache and returns the full logits (the model all-gathers the vocab-parallel lm_head);
//! ranks 1..N run on scoped threads with caches the group keeps, sized like the caller's.

use std::sync::Mutex;

use super::comm::LocalComm;
use super::{ForwardBatch, KvCache, KvLayout};
use crate::layers::Communicator;
use crate::model::{CausalLM, ModelConfig};
use crate::{Error, Result, Tensor};

pub struct TpModel {
    /// Rank order; `ranks[r]` was built for tensor-parallel rank r.
    ranks: Vec<Box<dyn CausalLM>>,
    comms: Vec<LocalComm>,
    /// KV caches of ranks 1..N.
    peer_kv: Mutex<Vec<KvCache>>,
}

impl TpModel {
    /// A group from the shards of ranks 0..N, in order.
    pub fn new(ranks: Vec<Box<dyn CausalLM>>) -> Result<Self> {
        let first = ranks
            .first()
            .ok_or_else(|| Error::Msg("a tensor-parallel group needs at least one rank".into()))?;
        let layout = first.kv_layout();
        for (r, m) in ranks.iter().enumerate() {
            if m.kv_layout() != layout || m.config().architecture != first.config().architecture {
                return Err(Error::Msg(format!(
                    "tensor-parallel rank {r} was built for another model or mapping than rank 0"
                )));
            }
        }
        let comms = LocalComm::group(ranks.len());
        Ok(TpModel { ranks, comms, peer_kv: Mutex::new(vec![]) })
    }

    pub fn tp_size(&self) -> usize {
        self.ranks.len()
    }

    /// Make sure ranks 1..N have caches shaped like rank 0's.
    fn peer_caches<'a>(&self, kv: &KvCache, peers: &'a mut Vec<KvCache>) -> Result<&'a mut Vec<KvCache>> {
        let stale = peers.len() != self.ranks.len() - 1
            || peers.iter().any(|p| p.block_size != kv.block_size || p.num_blocks != kv.num_blocks);
        if stale {
            peers.clear();
            for m in &self.ranks[1..] {
                peers.push(KvCache::new(m.kv_layout(), kv.block_size, kv.num_blocks)?);
            }
        }
        Ok(peers)
    }
}

impl CausalLM for TpModel {
    fn config(&self) -> &ModelConfig {
        self.ranks[0].config()
    }

    fn kv_layout(&self) -> KvLayout {
        self.ranks[0].kv_layout()
    }

    /// `comm` is not used: the group communicates through its own in-process communicators.
    fn forward(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        _comm: &dyn Communicator,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        if self.ranks.len() == 1 {
            return self.ranks[0].forward(batch, kv, &self.comms[0], hidden);
        }
        let mut guard = self.peer_kv.lock().unwrap_or_else(|p| p.into_inner());
        let peers = self.peer_caches(kv, &mut guard)?;
        let (out0, others) = std::thread::scope(|s| {
            let handles: Vec<_> = self.ranks[1..]
                .iter()
                .zip(peers.iter_mut())
                .zip(&self.comms[1..])
                .map(|((model, cache), comm)| {
                    s.spawn(move || {
                        let r = model.forward(batch, cache, comm, None);
                        if r.is_err() {
                            comm.abort();
                        }
                        r
                    })
                })
                .collect();
            let out0 = self.ranks[0].forward(batch, kv, &self.comms[0], hidden);
            if out0.is_err() {
                self.comms[0].abort();
            }
            let others: Vec<Result<Tensor>> = handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Msg("a tensor-parallel rank thread panicked".into())))
                })
                .collect();
            (out0, others)
        });
        // Every rank has left its collectives: the group can be reused whatever happened.
        let failed = out0.is_err() || others.iter().any(|r| r.is_err());
        if failed {
            self.comms[0].reset();
            // Report the rank that failed first-hand, not the ranks it aborted.
            let mut errs: Vec<Error> = std::iter::once(out0).chain(others).filter_map(|r| r.err()).collect();
            let pos = errs.iter().position(|e| !e.to_string().contains("collective aborted")).unwrap_or(0);
            return Err(errs.swap_remove(pos));
        }
        out0
    }
}
