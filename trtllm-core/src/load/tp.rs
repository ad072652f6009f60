//! Tensor parallelism inside one process: one thread per rank, each with its own model shard
//! (built with `Mapping::new(tp, 1, rank)`) and its own KV cache. On the CPU (the reference) the
//! ranks exchange partial sums through [`LocalComm`]; on GPUs rank r runs on its own device and
//! the collectives are NCCL's ([`NcclComm`]), issued on each GPU's stream.
//!
//! Why threads and not processes for one host: the engine (scheduler, KV block tables, sampling,
//! the HTTP server) stays a single copy that drives all ranks with the same batch, there is no
//! second process to launch, monitor or feed, and a failing rank is reported as an error of the
//! call. Processes (one per GPU, `RANK`/`WORLD_SIZE` rendezvous) are the multi-node shape; see
//! `dist.rs`.
//!
//! `TpModel` is itself a `CausalLM`, so `Llm` and the scheduler run it unchanged: rank 0 runs on
//! the caller's thread with the caller's KV cache and returns the full logits (the model
//! all-gathers the vocab-parallel lm_head); ranks 1..N run on scoped threads with caches the
//! group keeps, shaped like the caller's and placed on their own GPUs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use trtllm_kernels::Gpu;

use crate::batch::{ForwardBatch, KvCache, KvLayout};
use crate::config::ModelConfig;
use crate::dist::Communicator;
use crate::dist::LocalComm;
use crate::dist::NcclComm;
use crate::model::{CausalLM, StageInput, StageOutput};
use crate::{Error, Result, Tensor};

enum Comms {
    Local(Vec<LocalComm>),
    /// With the GPU of each rank.
    Nccl(Vec<NcclComm>, Vec<Arc<Gpu>>),
}

pub struct TpModel {
    /// Rank order; `ranks[r]` was built for tensor-parallel rank r.
    ranks: Vec<Box<dyn CausalLM>>,
    comms: Comms,
    /// KV caches of ranks 1..N.
    peer_kv: Mutex<Vec<KvCache>>,
    /// An NCCL group whose forward failed on some rank: its collectives were aborted.
    broken: AtomicBool,
}

impl TpModel {
    /// A CPU group from the shards of ranks 0..N, in order.
    pub fn new(ranks: Vec<Box<dyn CausalLM>>) -> Result<Self> {
        Self::check(&ranks)?;
        let comms = Comms::Local(LocalComm::group(ranks.len()));
        Ok(TpModel { ranks, comms, peer_kv: Mutex::new(vec![]), broken: AtomicBool::new(false) })
    }

    /// A GPU group: rank r's shard lives on `gpus[r]`; collectives through NCCL.
    pub fn new_nccl(ranks: Vec<Box<dyn CausalLM>>, gpus: Vec<Arc<Gpu>>) -> Result<Self> {
        Self::check(&ranks)?;
        if gpus.len() != ranks.len() {
            return Err(Error::Msg(format!("{} ranks but {} GPUs", ranks.len(), gpus.len())));
        }
        let comms = Comms::Nccl(NcclComm::group(&gpus)?, gpus);
        Ok(TpModel { ranks, comms, peer_kv: Mutex::new(vec![]), broken: AtomicBool::new(false) })
    }

    fn check(ranks: &[Box<dyn CausalLM>]) -> Result<()> {
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
        Ok(())
    }

    fn comm(&self, r: usize) -> &dyn Communicator {
        match &self.comms {
            Comms::Local(c) => &c[r],
            Comms::Nccl(c, _) => &c[r],
        }
    }

    /// Rank `r` failed: wake the ranks waiting for it.
    fn abort(&self, r: usize) {
        match &self.comms {
            Comms::Local(c) => c[r].abort(),
            Comms::Nccl(c, _) => {
                self.broken.store(true, Ordering::SeqCst);
                for comm in c {
                    comm.abort();
                }
            }
        }
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
            for (r, m) in self.ranks.iter().enumerate().skip(1) {
                let cache = match (&self.comms, kv.cuda_dtype()) {
                    (Comms::Nccl(_, gpus), Some(dtype)) => KvCache::new_cuda_stage(
                        &gpus[r],
                        dtype,
                        m.kv_layout(),
                        kv.block_size,
                        kv.num_blocks,
                        m.stage_layers(),
                    )?,
                    (Comms::Local(_), None) => {
                        KvCache::new_stage(m.kv_layout(), kv.block_size, kv.num_blocks, m.stage_layers())?
                    }
                    _ => return Err(Error::Device(
                        "a tensor-parallel group on GPUs needs a GPU KV cache (and a CPU group a host one)"
                            .into(),
                    )),
                };
                peers.push(cache);
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

    fn stage_layers(&self) -> std::ops::Range<usize> {
        self.ranks[0].stage_layers()
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
            return self.ranks[0].forward(batch, kv, self.comm(0), hidden);
        }
        self.on_ranks(kv, |m, kv, comm| m.forward(batch, kv, comm, hidden), &|_, m, kv, comm| {
            m.forward(batch, kv, comm, None)
        })
    }

    /// Every rank runs the stage on its own copy of the input (on its own GPU).
    fn forward_stage(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        _comm: &dyn Communicator,
        input: StageInput,
    ) -> Result<StageOutput> {
        let copy_for = |cache: &KvCache| -> Result<StageInput> {
            Ok(match &input {
                StageInput::Ids => StageInput::Ids,
                StageInput::Hidden { x, pending } => StageInput::Hidden {
                    x: super::pp::to_cache_device(x.clone(), cache)?,
                    pending: pending.clone().map(|p| super::pp::to_cache_device(p, cache)).transpose()?,
                },
            })
        };
        let first = copy_for(kv)?;
        self.on_ranks(kv, |m, kv, comm| m.forward_stage(batch, kv, comm, first), &|_, m, kv, comm| {
            m.forward_stage(batch, kv, comm, copy_for(kv)?)
        })
    }
}

impl TpModel {
    /// Run rank 0 on the caller's thread with the caller's cache and ranks 1..N on scoped
    /// threads with theirs; rank 0's result, or the error of the rank that failed first-hand.
    fn on_ranks<T: Send>(
        &self,
        kv: &mut KvCache,
        rank0: impl FnOnce(&dyn CausalLM, &mut KvCache, &dyn Communicator) -> Result<T>,
        peer: &(dyn Fn(usize, &dyn CausalLM, &mut KvCache, &dyn Communicator) -> Result<T> + Sync),
    ) -> Result<T> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(Error::Msg(
                "this tensor-parallel group was aborted after a rank failed; load the model again".into(),
            ));
        }
        let mut guard = self.peer_kv.lock().unwrap_or_else(|p| p.into_inner());
        let peers = self.peer_caches(kv, &mut guard)?;
        let (out0, others) = std::thread::scope(|s| {
            let handles: Vec<_> = self.ranks[1..]
                .iter()
                .zip(peers.iter_mut())
                .enumerate()
                .map(|(i, (model, cache))| {
                    s.spawn(move || {
                        let r = peer(i + 1, model.as_ref(), cache, self.comm(i + 1));
                        if r.is_err() {
                            self.abort(i + 1);
                        }
                        r.map(|_| ())
                    })
                })
                .collect();
            let out0 = rank0(self.ranks[0].as_ref(), kv, self.comm(0));
            if out0.is_err() {
                self.abort(0);
            }
            let others: Vec<Result<()>> = handles
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
            if let Comms::Local(c) = &self.comms {
                c[0].reset();
            }
            // Report the rank that failed first-hand, not the ranks it aborted.
            let mut errs: Vec<Error> = std::iter::once(out0.err())
                .flatten()
                .chain(others.into_iter().filter_map(|r| r.err()))
                .collect();
            let pos = errs.iter().position(|e| !e.to_string().contains("collective aborted")).unwrap_or(0);
            return Err(errs.swap_remove(pos));
        }
        out0
    }
}
