//! Loading a model from a directory of any kind (HF, `trtllm convert` checkpoint, `trtllm build`
//! engine): the options ([`LlmOptions`], with an engine's own limits), the dispatch on the
//! directory kind, the tensor-parallel group of all ranks ([`TpModel`]), the pipeline stages
//! ([`PpModel`]) and one process of a multi-process launch (`rank.rs`).

mod kv_scales;
mod options;
mod pp;
mod rank;
mod tp;

pub use kv_scales::{apply_checkpoint_kv_scales, checkpoint_kv_scales};
pub use options::{LlmOptions, SpecMethod, SpecOptions, MAX_PROMPT_LOOKUP, MAX_SPEC_TOKENS};
pub use pp::PpModel;
pub use tp::TpModel;

use std::path::Path;
use std::sync::Arc;

use crate::checkpoint::ModelDir;
use crate::dist::{Communicator, DistEnv, NcclComm, TcpComm, TcpGroup};

use crate::model::{CausalLM, LoadOptions};
use crate::{Device, Error, Mapping, Result};

impl LlmOptions {
    /// Defaults, with an engine directory's build limits (KV block size, max batch size, max
    /// sequence length) when `dir` is one.
    pub fn for_dir(dir: &Path) -> Result<Self> {
        let mut opts = LlmOptions::default();
        if let ModelDir::Engine(_, b) = ModelDir::detect(dir)? {
            opts.kv_block_size = b.kv_block_size;
            opts.max_batch_size = b.max_batch_size;
            opts.max_seq_len = b.max_seq_len;
        }
        Ok(opts)
    }
}

/// Build the model of a directory: an HF directory (plan, validate, load through the weight
/// map), a `trtllm convert` checkpoint or a `trtllm build` engine (tensors by engine name).
pub fn build_model(dir: &Path, opts: &crate::model::LoadOptions) -> Result<crate::model::LoadedModel> {
    match ModelDir::detect(dir)? {
        ModelDir::Hf => crate::model::build_hf_model(dir, opts),
        ModelDir::Gguf(file) => crate::model::build_gguf_model(dir, &file, opts),
        ModelDir::Checkpoint(c) | ModelDir::Engine(c, _) => crate::checkpoint::load_checkpoint(dir, &c, opts),
    }
}

/// The tensor-parallel size to run `dir` with: a checkpoint's own, or the one asked for.
fn resolve_tp(dir: &Path, kind: &ModelDir, asked: Option<usize>) -> Result<usize> {
    match kind.checkpoint() {
        None => Ok(asked.unwrap_or(1)),
        Some(c) => {
            let m = c.mapping;
            if m.pp_size != 1 {
                return Err(Error::checkpoint(
                    dir,
                    format!("converted with pp_size {}; the runtime runs pipeline stages of 1 only (convert with --pp-size 1)", m.pp_size),
                ));
            }
            match asked {
                Some(t) if t != m.tp_size => Err(Error::checkpoint(
                    dir,
                    format!("converted for tp_size {}, but tp_size {t} was asked for (re-run `trtllm convert --tp-size {t}`)", m.tp_size),
                )),
                _ => Ok(m.tp_size),
            }
        }
    }
}

impl LlmOptions {
    /// Adopt a multi-process launch (WORLD_SIZE > 1 with RANK, MASTER_ADDR, MASTER_PORT and
    /// optionally LOCAL_RANK in the environment): WORLD_SIZE = tp_size x pp_size (tp_size is
    /// WORLD_SIZE / pp_size unless given), and on GPUs the device this rank's GPU. A no-op
    /// without those variables.
    pub fn apply_dist_env(&mut self) -> Result<()> {
        let Some(d) = DistEnv::from_env()? else { return Ok(()) };
        let pp = self.pp_size.max(1);
        let tp = self.tp_size.unwrap_or(d.world / pp);
        if tp * pp != d.world {
            return Err(Error::Parallel(format!(
                "WORLD_SIZE={} is not tp_size {tp} x pp_size {pp} (--tp-size / --pp-size)",
                d.world
            )));
        }
        self.tp_size = Some(tp);
        match self.load.device {
            Device::Cuda(_) => self.load.device = Device::Cuda(d.local_rank),
            Device::Cpu => {}
            Device::Meta => return Err(Error::Device("cannot run a model on the meta device".into())),
        }
        Ok(())
    }
}

/// Load the model of `dir` as `opts` asks: one model when the tensor-parallel size is 1, else
/// every rank in a [`TpModel`] (one thread per rank; NCCL between GPUs, the in-process reference
/// on the CPU), or, in a multi-process launch (see [`LlmOptions::apply_dist_env`]), this
/// process's rank. The size is a checkpoint's own, or `opts.tp_size` (also read from
/// `opts.load.mapping.tp_size`) for an HF directory, sharded in memory.
pub fn load_model(dir: &Path, opts: &LlmOptions) -> Result<Box<dyn CausalLM>> {
    let kind = ModelDir::detect(dir)?;
    if matches!(kind, ModelDir::Engine(..)) && dir.join("kernels").is_dir() {
        trtllm_kernels::set_prebuilt_dir(Some(dir.join("kernels")));
    }
    let asked = opts.tp_size.or((opts.load.mapping.tp_size > 1).then_some(opts.load.mapping.tp_size));
    let tp = resolve_tp(dir, &kind, asked)?;
    let pp = opts.pp_size.max(1);
    if pp > 1 && !matches!(kind, ModelDir::Hf) {
        return Err(Error::checkpoint(dir, "pipeline parallelism (pp_size > 1) loads HF directories only"));
    }
    if let Some(d) = DistEnv::from_env()? {
        return load_rank(dir, opts, tp, pp, &d);
    }
    if tp == 1 && pp == 1 {
        let load = LoadOptions { mapping: Mapping::default(), ..opts.load.clone() };
        let model = build_model(dir, &load)?.model;
        crate::device::release_free_heap();
        return Ok(model);
    }
    let world = tp * pp;
    let device_of = |rank: usize| match opts.load.device {
        Device::Cuda(base) => Device::Cuda(base + rank),
        d => d,
    };
    let gpus = match opts.load.device {
        Device::Cuda(base) => {
            let n = trtllm_kernels::Gpu::device_count();
            if base + world > n {
                return Err(Error::Device(format!(
                    "tp_size {tp} x pp_size {pp} from cuda:{base} needs GPUs {base}..{}, {n} present",
                    base + world - 1
                )));
            }
            Some((base..base + world).map(crate::ops::cuda::gpu).collect::<Result<Vec<_>>>()?)
        }
        Device::Cpu => None,
        Device::Meta => return Err(Error::Device("cannot run a model on the meta device".into())),
    };
    // The shards load side by side (each reads its slices of the same files); rank r is
    // tensor-parallel rank r % tp of stage r / tp (`Mapping`).
    let ranks: Vec<Result<Box<dyn CausalLM>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..world)
            .map(|rank| {
                s.spawn(move || {
                    let mapping = Mapping::new(tp, pp, rank)?;
                    let load = LoadOptions { mapping, device: device_of(rank), ..opts.load.clone() };
                    Ok(build_model(dir, &load)?.model)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| Err(Error::Parallel("a rank's loader thread panicked".into())))
            })
            .collect()
    });
    let mut ranks = ranks.into_iter().collect::<Result<Vec<_>>>()?.into_iter();
    let mut stages: Vec<Box<dyn CausalLM>> = Vec::with_capacity(pp);
    for s in 0..pp {
        let group: Vec<_> = ranks.by_ref().take(tp).collect();
        stages.push(match (&gpus, tp) {
            (_, 1) => group.into_iter().next().ok_or_else(|| Error::Parallel("no rank built".into()))?,
            (Some(g), _) => Box::new(TpModel::new_nccl(group, g[s * tp..(s + 1) * tp].to_vec())?),
            (None, _) => Box::new(TpModel::new(group)?),
        });
    }
    if pp == 1 {
        return Ok(stages.pop().expect("one stage"));
    }
    let stage_gpus = gpus.map(|g| (0..pp).map(|s| g[s * tp].clone()).collect());
    Ok(Box::new(PpModel::new(stages, stage_gpus)?))
}

/// One process of a multi-process launch: its shard, joined to the others over TCP (and NCCL
/// between GPUs of a stage).
fn load_rank(dir: &Path, opts: &LlmOptions, tp: usize, pp: usize, d: &DistEnv) -> Result<Box<dyn CausalLM>> {
    if tp * pp != d.world {
        return Err(Error::checkpoint(
            dir,
            format!("tp_size {tp} x pp_size {pp} but WORLD_SIZE={}", d.world),
        ));
    }
    let gpu = match opts.load.device {
        Device::Cuda(n) if n != d.local_rank => {
            return Err(Error::Device(format!(
                "rank {} must run on cuda:{} (LOCAL_RANK), not cuda:{n} (LlmOptions::apply_dist_env sets it)",
                d.rank, d.local_rank
            )))
        }
        Device::Cuda(_) if pp > 1 => {
            return Err(Error::Device(
                "multi-process pipeline parallelism runs on CPU ranks; on GPUs run the stages in one process (--pp-size without WORLD_SIZE)".into(),
            ))
        }
        Device::Cuda(n) => Some(crate::device::gpu(n)?),
        _ => None,
    };
    tracing::info!(
        rank = d.rank,
        world = d.world,
        "joining the group at {}:{}",
        d.master_addr,
        d.master_port
    );
    let group = Arc::new(TcpGroup::connect(d)?);
    let stage = d.rank / tp;
    let members: Vec<usize> = (stage * tp..(stage + 1) * tp).collect();
    let comm: Box<dyn Communicator + Send> = match &gpu {
        Some(g) => Box::new(NcclComm::init_over(g, &group, &members)?),
        None => Box::new(TcpComm::new(group.clone(), members)?),
    };
    let load = LoadOptions { mapping: Mapping::new(tp, pp, d.rank)?, ..opts.load.clone() };
    let model = build_model(dir, &load)?.model;
    let pipe = (pp > 1).then_some(rank::Pipe { stage, pp, tp, tp_rank: d.rank % tp });
    let lead = opts.lead_workers && d.rank == 0;
    Ok(Box::new(rank::RankModel { model, comm, pipe, group, lead }))
}
