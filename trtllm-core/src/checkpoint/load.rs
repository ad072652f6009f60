//! Loading one rank of a converted checkpoint or engine: the config comes from `model_config`,
//! the model from the registry entry of `architecture`, the weights by engine name from
//! `rank{r}.safetensors`. Names and shard shapes are checked against the plan before any
//! tensor data is read, and every problem is reported at once.

use std::collections::BTreeSet;
use std::path::Path;

use super::format::{rank_file, CheckpointConfig};
use crate::model::{lookup, plan_weights, LoadOptions, LoadedModel, ValidationReport};
use crate::weights::{EngineSource, SafetensorsFiles, WeightSpec};
use crate::{Error, Mapping, Result};

/// Compare a rank's plan with the headers of its rank file: every engine tensor present with
/// its shard shape, nothing else.
pub fn validate_rank(
    specs: &[WeightSpec],
    files: &SafetensorsFiles,
    mapping: Mapping,
) -> Result<ValidationReport> {
    let mut report = ValidationReport::default();
    let mut wanted = BTreeSet::new();
    let all: Vec<&String> = files.names().collect();
    for spec in specs {
        wanted.insert(spec.name.as_str());
        let want = spec.shard_shape(mapping.tp_size)?;
        match files.info(&spec.name) {
            None => {
                let near = all
                    .iter()
                    .map(|n| (strsim::levenshtein(n, &spec.name), *n))
                    .min()
                    .map(|(_, n)| n.clone());
                report.missing.push((spec.name.clone(), spec.name.clone(), near));
            }
            Some(info) if info.shape != want => {
                report.wrong_shape.push((spec.name.clone(), want, info.shape.clone()))
            }
            Some(_) => {}
        }
    }
    report.unexpected = all.into_iter().filter(|n| !wanted.contains(n.as_str())).cloned().collect();
    Ok(report)
}

/// The mapping to load: the one asked for, which must be a rank of the checkpoint's layout.
fn rank_mapping(file: &Path, ckpt: &CheckpointConfig, asked: Mapping) -> Result<Mapping> {
    let m = ckpt.mapping;
    if asked.tp_size != m.tp_size || asked.pp_size != m.pp_size {
        return Err(Error::checkpoint(
            file,
            format!(
                "converted for tp_size {} / pp_size {}, but tp_size {} / pp_size {} was asked for; \
                 re-run `trtllm convert --tp-size {} --pp-size {}`",
                m.tp_size, m.pp_size, asked.tp_size, asked.pp_size, asked.tp_size, asked.pp_size
            ),
        ));
    }
    ckpt.mapping.rank(asked.rank)
}

/// The plan of rank `mapping.rank` of a checkpoint, checked against its rank file's headers.
pub fn open_rank(
    dir: &Path,
    ckpt: &CheckpointConfig,
    opts: &LoadOptions,
) -> Result<(Vec<WeightSpec>, SafetensorsFiles)> {
    let config_file = dir.join("config.json");
    let mapping = rank_mapping(&config_file, ckpt, opts.mapping)?;
    let entry = lookup(&ckpt.architecture)?;
    let dtype = opts.dtype.unwrap_or(ckpt.dtype);
    let path = rank_file(dir, mapping.rank);
    let files = SafetensorsFiles::open_files(std::slice::from_ref(&path))?;
    // Before anything is planned per layer or expert.
    ckpt.model_config.check_stored(&config_file, files.stored(mapping.tp_size))?;
    let specs = plan_weights(entry, &ckpt.model_config, mapping, dtype)?;
    let report = validate_rank(&specs, &files, mapping)?;
    if !report.is_ok() {
        return Err(Error::Validation { file: path, report: report.render() });
    }
    Ok((specs, files))
}

/// Build rank `opts.mapping.rank` of a checkpoint or engine directory.
pub fn load_checkpoint(dir: &Path, ckpt: &CheckpointConfig, opts: &LoadOptions) -> Result<LoadedModel> {
    use crate::device::timing;
    let p = timing::phase(format!("open + plan + validate{}", timing::rank_tag(opts.mapping)));
    let (specs, files) = open_rank(dir, ckpt, opts)?;
    let entry = lookup(&ckpt.architecture)?;
    let dtype = opts.dtype.unwrap_or(ckpt.dtype);
    p.done_with("converted checkpoint / engine directory");
    let src = EngineSource { files: &files };
    let vb = crate::model::var_builder(&src, opts, dtype)?;
    let model = crate::model::build_weights(entry, &ckpt.model_config, &vb)?;
    let p = timing::phase(format!("free staging{}", timing::rank_tag(opts.mapping)));
    drop(vb);
    p.done();
    files.close_in_background();
    Ok(LoadedModel { model, entry, specs })
}
