//! `convert`: HF directory -> our checkpoint (`config.json` + one `rank{r}.safetensors` per
//! rank), fused, cast and sharded through the generated weight map. It streams: each engine
//! tensor is read, transformed, sharded and appended to the rank files that hold it before the
//! next is read, and the mapped source pages are released as soon as they are used, so peak
//! memory is a small multiple of the largest tensor, not of the model.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::format::{
    rank_file, write_json, CheckpointConfig, CheckpointMapping, ModelDir, CHECKPOINT_FORMAT,
    CONVERTER_VERSION,
};
use super::output::{copy_tokenizer_files, StagedDir};
use super::writer::{StreamingWriter, TensorEntry};
use crate::model::{plan_weights, HfCheckpoint};
use crate::weights::WeightSpec;
use crate::{DType, Error, Mapping, Result};

#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Weight dtype; `None` keeps the HF `torch_dtype` (f32 if absent).
    pub dtype: Option<DType>,
    pub tp_size: usize,
    pub pp_size: usize,
    /// Replace an existing checkpoint at the output path.
    pub force: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions { dtype: None, tp_size: 1, pp_size: 1, force: false }
    }
}

/// Reported after each engine tensor is written.
#[derive(Debug)]
pub struct ConvertProgress<'a> {
    pub tensor: &'a str,
    pub index: usize,
    pub num_tensors: usize,
    /// Bytes of the full (unsharded) engine tensors done so far, and in all.
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct ConvertSummary {
    pub architecture: String,
    pub dtype: DType,
    pub num_tensors: usize,
    /// Data bytes written to each rank file.
    pub rank_bytes: Vec<u64>,
    /// The largest full engine tensor (name, bytes): peak memory scales with it.
    pub largest_tensor: (String, u64),
    pub tokenizer_files: Vec<&'static str>,
}

fn full_bytes(spec: &WeightSpec) -> u64 {
    spec.shape.iter().product::<usize>() as u64 * spec.dtype.size_in_bytes() as u64
}

/// Convert `hf_dir` into a checkpoint at `out` (written into a temporary sibling, then renamed).
pub fn convert(
    hf_dir: &Path,
    out: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(&ConvertProgress<'_>),
) -> Result<ConvertSummary> {
    if ModelDir::detect(hf_dir)?.checkpoint().is_some() {
        return Err(Error::checkpoint(
            hf_dir,
            "is already a trtllm checkpoint or engine; convert takes an HF directory",
        ));
    }
    let staged = StagedDir::new(out, opts.force)?;
    let mut hf = HfCheckpoint::open(hf_dir)?;
    let dtype = opts.dtype.or(hf.cfg.torch_dtype).unwrap_or(DType::F32);
    let mapping = Mapping::new(opts.tp_size, opts.pp_size, 0)?;

    // Every rank's plan; the unique engine tensors in first-seen order and the ranks holding each.
    let world = mapping.world_size;
    let mut plans = Vec::with_capacity(world);
    for r in 0..world {
        plans.push(plan_weights(hf.entry, &hf.cfg, mapping.with_rank(r), dtype)?);
    }
    let mut order: Vec<&WeightSpec> = vec![];
    let mut holders: HashMap<&str, Vec<usize>> = HashMap::new();
    for (r, plan) in plans.iter().enumerate() {
        for spec in plan {
            let h = holders.entry(spec.name.as_str()).or_default();
            if h.is_empty() {
                order.push(spec);
            }
            h.push(r);
        }
    }
    let unique: Vec<WeightSpec> = order.iter().map(|s| (*s).clone()).collect();
    let report = hf.validate(&unique);
    if !report.is_ok() {
        return Err(Error::Validation { file: hf.files.first_file().to_path_buf(), report: report.render() });
    }

    // Headers first: each rank file declares its tensors in the global processing order.
    let meta = BTreeMap::from([
        ("format".to_string(), "pt".to_string()),
        ("trtllm_converter_version".to_string(), CONVERTER_VERSION.to_string()),
    ]);
    let mut writers = Vec::with_capacity(world);
    for r in 0..world {
        let mut entries = vec![];
        for spec in &unique {
            if holders[spec.name.as_str()].contains(&r) {
                let shape = spec.shard_shape(opts.tp_size)?;
                entries.push(TensorEntry { name: spec.name.clone(), dtype: spec.dtype, shape });
            }
        }
        writers.push(StreamingWriter::create(&rank_file(staged.path(), r), entries, &meta)?);
    }

    let total_bytes: u64 = unique.iter().map(full_bytes).sum();
    let (mut done_bytes, mut largest) = (0u64, (String::new(), 0u64));
    {
        let resolve = hf.resolver();
        for (i, spec) in unique.iter().enumerate() {
            let names: Vec<String> = spec.sources.iter().map(|s| resolve(&s.name)).collect();
            let sources = names.iter().map(|n| hf.files.read(n)).collect::<Result<Vec<_>>>()?;
            for n in &names {
                hf.files.release(n);
            }
            let full = spec.to_engine(sources)?;
            for &r in &holders[spec.name.as_str()] {
                let shard = spec.shard(&full, mapping.with_rank(r).tp_rank(), opts.tp_size)?;
                writers[r].write(&spec.name, &shard)?;
            }
            let bytes = full_bytes(spec);
            if bytes > largest.1 {
                largest = (spec.name.clone(), bytes);
            }
            done_bytes += bytes;
            progress(&ConvertProgress {
                tensor: &spec.name,
                index: i,
                num_tensors: unique.len(),
                done_bytes,
                total_bytes,
            });
        }
    }
    let rank_bytes = writers.into_iter().map(StreamingWriter::finish).collect::<Result<Vec<_>>>()?;

    // The stored config is the one the engine builds from: adapter applied, tied head
    // detected, dtype the converted one.
    hf.cfg.torch_dtype = Some(dtype);
    let hf_config = crate::error::read_json(&hf_dir.join("config.json"))?;
    let cfg = CheckpointConfig {
        format: CHECKPOINT_FORMAT.into(),
        converter_version: CONVERTER_VERSION,
        architecture: hf.cfg.architecture.clone(),
        dtype,
        mapping: CheckpointMapping { world_size: world, tp_size: opts.tp_size, pp_size: opts.pp_size },
        model_config: hf.cfg.clone(),
        hf_config,
    };
    write_json(&staged.path().join("config.json"), &cfg)?;
    let tokenizer_files = copy_tokenizer_files(hf_dir, staged.path())?;
    staged.commit()?;
    Ok(ConvertSummary {
        architecture: cfg.architecture,
        dtype,
        num_tensors: unique.len(),
        rank_bytes,
        largest_tensor: largest,
        tokenizer_files,
    })
}
