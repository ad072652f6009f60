//! A GGUF file's model: the config of its model directory (`gguf::model_dir`), the same plan
//! and validation as an HF directory (tensors by their HF names), weights from the file
//! (`weights::GgufWeights`: block-quantized linears kept in their blocks on the CPU).

use std::path::Path;

use super::factory::{build_weights, plan_weights, resolve_config, validate, var_builder, TensorCatalog};
use super::{LoadOptions, LoadedModel, ModelEntry, ValidationReport};
use crate::config::ModelConfig;
use crate::device::timing;
use crate::weights::{GgufBlocks, GgufWeights, WeightSpec};
use crate::{DType, Error, Mapping, Result};

impl TensorCatalog for GgufWeights {
    fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.shapes().get(name).map(|s| s.as_slice())
    }
    fn tensor_names(&self) -> Vec<&String> {
        let mut v: Vec<&String> = self.shapes().keys().collect();
        v.sort();
        v
    }
}

struct Opened {
    cfg: ModelConfig,
    entry: &'static ModelEntry,
    weights: GgufWeights,
    ignorable: Vec<String>,
}

fn open(dir: &Path, file: &Path) -> Result<Opened> {
    let (mut cfg, entry) = resolve_config(dir)?;
    let weights = GgufWeights::open(file, GgufBlocks::Dequantize)?.with_renames(entry.layout.renames);
    let bytes = std::fs::metadata(file).map_err(|e| Error::io(file, e))?.len();
    let stored = crate::config::Stored { file, tensors: weights.file.tensors.len(), bytes, shards: 1 };
    cfg.check_stored(file, stored)?;
    let head = format!("{}.weight", entry.layout.lm_head);
    let mut ignorable = vec![];
    if !weights.contains(&head) {
        cfg.tie_word_embeddings = true;
    } else if cfg.tie_word_embeddings {
        ignorable.push(head);
    }
    Ok(Opened { cfg, entry, weights, ignorable })
}

/// Build the model of a GGUF model directory `dir` standing for `file`: plan, validate, load.
/// With one rank, block-quantized linear weights stay in their blocks where a kernel takes them
/// (`GgufBlocks::choose`: the CPU's qgemm, or Q8_0 / Q4_K on the GPU in bf16).
pub fn build_gguf_model(dir: &Path, file: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let p = timing::phase(format!("open + plan + validate{}", timing::rank_tag(opts.mapping)));
    let mut g = open(dir, file)?;
    // Activations run in f32 on the CPU (the quantized kernels take f32 rows).
    let dtype = opts.weight_dtype(&g.cfg);
    let blocks = GgufBlocks::choose(opts.device, opts.mapping.tp_size, dtype, opts.keep_quantized);
    g.weights.set_blocks(blocks);
    let specs = plan_weights(g.entry, &g.cfg, opts.mapping, dtype)?;
    let report = validate(&specs, &g.weights, &g.entry.layout, &g.ignorable);
    if !report.is_ok() {
        return Err(Error::Validation { file: file.to_path_buf(), report: report.render() });
    }
    p.done_with("GGUF file");
    let vb = var_builder(&g.weights, opts, dtype)?;
    let model = build_weights(g.entry, &g.cfg, &vb)?;
    drop(vb);
    Ok(LoadedModel { model, entry: g.entry, specs })
}

/// The plan and validation report of a GGUF model directory (`trtllm weights`).
pub fn inspect_gguf(
    dir: &Path,
    file: &Path,
    mapping: Mapping,
) -> Result<(ModelConfig, &'static ModelEntry, Vec<WeightSpec>, ValidationReport)> {
    let g = open(dir, file)?;
    let specs = plan_weights(g.entry, &g.cfg, mapping, g.cfg.torch_dtype.unwrap_or(DType::F32))?;
    let report = validate(&specs, &g.weights, &g.entry.layout, &g.ignorable);
    Ok((g.cfg, g.entry, specs, report))
}
