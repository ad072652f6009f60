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
//! all-gathers the vocab-parallel lm_head); ranks 1..N run on persistent threads (one per rank,
//! started with the group, fed one job per step over a channel) with caches they keep, shaped
//! like the caller's and placed on their own GPUs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use trtllm_kernels::Gpu;

use crate::batch::{ForwardBatch, KvCache, KvCacheDtype, KvLayout};
use crate::config::ModelConfig;
use crate::dist::Communicator;
use crate::dist::LocalComm;
use crate::dist::NcclComm;
use crate::model::{CausalLM, StageInput, StageOutput};
use crate::{DType, Error, Result, Tensor};

enum Comms {
    Local(Vec<LocalComm>),
    /// With the GPU of each rank.
    Nccl(Vec<NcclComm>, Vec<Arc<Gpu>>),
}

/// What the rank threads share with the caller.
struct Group {
    /// Rank order; `ranks[r]` was built for tensor-parallel rank r.
    ranks: Vec<Box<dyn CausalLM>>,
    comms: Comms,
    /// An NCCL group whose forward failed on some rank: its collectives were aborted.
    broken: AtomicBool,
}

/// The shape of the caller's cache, which every rank's cache follows.
#[derive(Clone, Copy, PartialEq, Debug)]
struct CacheShape {
    block_size: usize,
    num_blocks: usize,
    /// `None`: a host cache.
    dtype: Option<DType>,
    kv_dtype: KvCacheDtype,
}

impl CacheShape {
    fn of(kv: &KvCache) -> Self {
        CacheShape {
            block_size: kv.block_size,
            num_blocks: kv.num_blocks,
            dtype: kv.cuda_dtype(),
            kv_dtype: kv.kv_dtype(),
        }
    }
}

/// One step's work for one rank thread.
enum Work {
    Forward,
    Stage(StageInput),
}

struct Job {
    batch: Arc<ForwardBatch>,
    shape: CacheShape,
    work: Work,
    done: mpsc::Sender<(usize, Result<()>)>,
}

impl Group {
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

    /// Rank `r`'s cache in `shape`, holding the layers of its model's stage.
    fn cache_for(&self, r: usize, shape: CacheShape) -> Result<KvCache> {
        let m = &self.ranks[r];
        let (bs, nb, layers) = (shape.block_size, shape.num_blocks, m.stage_layers());
        match (&self.comms, shape.dtype) {
            (Comms::Nccl(_, gpus), Some(dtype)) => {
                KvCache::new_cuda_stage(&gpus[r], dtype, m.kv_layout(), bs, nb, layers, shape.kv_dtype)
            }
            (Comms::Local(_), None) => KvCache::new_stage(m.kv_layout(), bs, nb, layers, shape.kv_dtype),
            _ => Err(Error::Device(
                "a tensor-parallel group on GPUs needs a GPU KV cache (and a CPU group a host one)".into(),
            )),
        }
    }

    /// Rank `r`'s thread: one job per step until the group is dropped.
    fn serve(&self, r: usize, jobs: mpsc::Receiver<Job>) {
        let mut cache: Option<KvCache> = None;
        for job in jobs {
            let run = std::panic::AssertUnwindSafe(|| -> Result<()> {
                if cache.as_ref().map(CacheShape::of) != Some(job.shape) {
                    cache = None;
                    cache = Some(self.cache_for(r, job.shape)?);
                }
                let kv = cache.as_mut().ok_or_else(|| Error::Parallel("no rank cache".into()))?;
                let (model, comm) = (self.ranks[r].as_ref(), self.comm(r));
                match job.work {
                    Work::Forward => model.forward(&job.batch, kv, comm, None).map(drop),
                    Work::Stage(input) => {
                        let input = super::pp::stage_input_on(input, kv)?;
                        model.forward_stage(&job.batch, kv, comm, input).map(drop)
                    }
                }
            });
            let res = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                cache = None;
                Err(Error::Parallel(format!("tensor-parallel rank {r} panicked")))
            });
            if res.is_err() {
                self.abort(r);
            }
            let _ = job.done.send((r, res));
        }
    }
}

pub struct TpModel {
    group: Arc<Group>,
    /// Step channels of ranks 1..N.
    jobs: Vec<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl TpModel {
    /// A CPU group from the shards of ranks 0..N, in order.
    pub fn new(ranks: Vec<Box<dyn CausalLM>>) -> Result<Self> {
        Self::check(&ranks)?;
        let comms = Comms::Local(LocalComm::group(ranks.len()));
        Self::start(ranks, comms)
    }

    /// A GPU group: rank r's shard lives on `gpus[r]`; collectives through NCCL.
    pub fn new_nccl(ranks: Vec<Box<dyn CausalLM>>, gpus: Vec<Arc<Gpu>>) -> Result<Self> {
        Self::check(&ranks)?;
        if gpus.len() != ranks.len() {
            return Err(Error::Parallel(format!("{} ranks but {} GPUs", ranks.len(), gpus.len())));
        }
        let comms = Comms::Nccl(NcclComm::group(&gpus)?, gpus);
        Self::start(ranks, comms)
    }

    /// Start one thread per rank 1..N.
    fn start(ranks: Vec<Box<dyn CausalLM>>, comms: Comms) -> Result<Self> {
        let n = ranks.len();
        let group = Arc::new(Group { ranks, comms, broken: AtomicBool::new(false) });
        let (mut jobs, mut threads) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for r in 1..n {
            let (tx, rx) = mpsc::channel::<Job>();
            let g = group.clone();
            let t = std::thread::Builder::new()
                .name(format!("tp-rank-{r}"))
                .spawn(move || g.serve(r, rx))
                .map_err(|e| Error::Parallel(format!("starting tensor-parallel rank {r}'s thread: {e}")))?;
            jobs.push(tx);
            threads.push(t);
        }
        Ok(TpModel { group, jobs, threads })
    }

    fn check(ranks: &[Box<dyn CausalLM>]) -> Result<()> {
        let first = ranks
            .first()
            .ok_or_else(|| Error::Parallel("a tensor-parallel group needs at least one rank".into()))?;
        let layout = first.kv_layout();
        for (r, m) in ranks.iter().enumerate() {
            if m.kv_layout() != layout || m.config().architecture != first.config().architecture {
                return Err(Error::Parallel(format!(
                    "tensor-parallel rank {r} was built for another model or mapping than rank 0"
                )));
            }
        }
        Ok(())
    }

    pub fn tp_size(&self) -> usize {
        self.group.ranks.len()
    }

    /// Hand ranks 1..N their work for this step (`peer(r)`, made for all before any is sent),
    /// run rank 0 on the caller's thread with the caller's cache, then wait for every rank:
    /// rank 0's result, or the error of the rank that failed first-hand.
    fn on_ranks<T>(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        peer: impl Fn(usize) -> Work,
        rank0: impl FnOnce(&dyn CausalLM, &mut KvCache, &dyn Communicator) -> Result<T>,
    ) -> Result<T> {
        let g = &self.group;
        if g.broken.load(Ordering::SeqCst) {
            return Err(Error::Parallel(
                "this tensor-parallel group was aborted after a rank failed; load the model again".into(),
            ));
        }
        let (shared, shape) = (Arc::new(batch.clone()), CacheShape::of(kv));
        let works: Vec<Work> = (1..g.ranks.len()).map(peer).collect();
        let (done, results) = mpsc::channel();
        let mut sent = 0;
        for (tx, work) in self.jobs.iter().zip(works) {
            let job = Job { batch: shared.clone(), shape, work, done: done.clone() };
            if tx.send(job).is_ok() {
                sent += 1;
            }
        }
        drop(done);
        let out0 = if sent + 1 == g.ranks.len() {
            rank0(g.ranks[0].as_ref(), kv, g.comm(0))
        } else {
            Err(Error::Parallel("a tensor-parallel rank thread has stopped".into()))
        };
        if out0.is_err() {
            g.abort(0);
        }
        let mut others: Vec<(usize, Result<()>)> = results.iter().take(sent).collect();
        if others.len() < sent {
            others.push((0, Err(Error::Parallel("a tensor-parallel rank thread stopped mid-step".into()))));
        }
        // Every rank has left its collectives: the group can be reused whatever happened.
        let failed = out0.is_err() || others.iter().any(|(_, r)| r.is_err());
        if failed {
            if let Comms::Local(c) = &g.comms {
                c[0].reset();
            }
            // Report the rank that failed first-hand, not the ranks it aborted.
            others.sort_by_key(|(r, _)| *r);
            let mut errs: Vec<Error> = std::iter::once(out0.err())
                .flatten()
                .chain(others.into_iter().filter_map(|(_, r)| r.err()))
                .collect();
            let pos = errs.iter().position(|e| !e.to_string().contains("collective aborted")).unwrap_or(0);
            return Err(errs.swap_remove(pos));
        }
        out0
    }
}

impl Drop for TpModel {
    fn drop(&mut self) {
        self.jobs.clear(); // the rank threads' loops end
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl CausalLM for TpModel {
    fn config(&self) -> &ModelConfig {
        self.group.ranks[0].config()
    }

    fn kv_layout(&self) -> KvLayout {
        self.group.ranks[0].kv_layout()
    }

    fn stage_layers(&self) -> std::ops::Range<usize> {
        self.group.ranks[0].stage_layers()
    }

    /// `comm` is not used: the group communicates through its own in-process communicators.
    fn forward(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        _comm: &dyn Communicator,
        hidden: Option<&mut Vec<Tensor>>,
    ) -> Result<Tensor> {
        if self.group.ranks.len() == 1 {
            return self.group.ranks[0].forward(batch, kv, self.group.comm(0), hidden);
        }
        self.on_ranks(batch, kv, |_| Work::Forward, |m, kv, comm| m.forward(batch, kv, comm, hidden))
    }

    /// Every rank runs the stage on its own copy of the input (on its own GPU).
    fn forward_stage(
        &self,
        batch: &ForwardBatch,
        kv: &mut KvCache,
        _comm: &dyn Communicator,
        input: StageInput,
    ) -> Result<StageOutput> {
        let peer = |_| Work::Stage(input.clone());
        let first = super::pp::stage_input_on(input.clone(), kv)?;
        self.on_ranks(batch, kv, peer, |m, kv, comm| m.forward_stage(batch, kv, comm, first))
    }
}
