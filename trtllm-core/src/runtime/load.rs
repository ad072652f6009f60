//! What `Llm` loads from a directory (HF, checkpoint or engine): the options an engine was
//! built with, and the model, one rank or a tensor-parallel group of all ranks.

use std::path::Path;

use super::tp::TpModel;
use super::EngineOptions;
use crate::checkpoint::ModelDir;
use crate::model::{build_model, CausalLM, LoadOptions};
use crate::{Device, Error, Mapping, Result};

impl EngineOptions {
    /// Defaults, with an engine directory's build limits (KV block size, max batch size, max
    /// sequence length) when `dir` is one.
    pub fn for_dir(dir: &Path) -> Result<Self> {
        let mut opts = EngineOptions::default();
        if let ModelDir::Engine(_, b) = ModelDir::detect(dir)? {
            opts.kv_block_size = b.kv_block_size;
            opts.max_batch_size = b.max_batch_size;
            opts.max_seq_len = b.max_seq_len;
        }
        Ok(opts)
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

/// Load the model of `dir` as `opts` asks: one model when the tensor-parallel size is 1, else
/// every rank in a [`TpModel`]. The size is a checkpoint's own, or `opts.tp_size` (also read
/// from `opts.load.mapping.tp_size`) for an HF directory, sharded in memory.
pub fn load_engine_model(dir: &Path, opts: &EngineOptions) -> Result<Box<dyn CausalLM>> {
    let kind = ModelDir::detect(dir)?;
    if matches!(kind, ModelDir::Engine(..)) && dir.join("kernels").is_dir() {
        trtllm_kernels::set_prebuilt_dir(Some(dir.join("kernels")));
    }
    let asked = opts.tp_size.or((opts.load.mapping.tp_size > 1).then_some(opts.load.mapping.tp_size));
    let tp = resolve_tp(dir, &kind, asked)?;
    if tp == 1 {
        let load = LoadOptions { mapping: Mapping::default(), ..opts.load.clone() };
        return Ok(build_model(dir, &load)?.model);
    }
    if opts.load.device != Device::Cpu {
        return Err(Error::Device(format!(
            "tensor parallelism (tp_size {tp}) runs on the CPU reference only for now; use --device cpu"
        )));
    }
    let mut ranks = Vec::with_capacity(tp);
    for rank in 0..tp {
        let load = LoadOptions { mapping: Mapping::new(tp, 1, rank)?, ..opts.load.clone() };
        ranks.push(build_model(dir, &load)?.model);
    }
    Ok(Box::new(TpModel::new(ranks)?))
}
