//! The factory: HF directory -> `config.json["architectures"][0]` -> registry entry -> weight
//! plan -> validation (before any tensor data is read) -> load.

use std::collections::BTreeSet;
use std::path::Path;

use super::{lookup, CausalLM, ModelConfig, ModelEntry, ModelLayout};
use crate::weights::{HfSource, Planner, SafetensorsFiles, VarBuilder, WeightSpec};
use crate::{DType, Error, Mapping, Result};

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Weight dtype; `None` keeps the checkpoint's `torch_dtype` (f32 if absent).
    pub dtype: Option<DType>,
    pub mapping: Mapping,
}

pub struct LoadedModel {
    pub model: Box<dyn CausalLM>,
    pub entry: &'static ModelEntry,
    pub specs: Vec<WeightSpec>,
}

/// Missing, unexpected and wrong-shape tensors, all at once.
#[derive(Debug, Default)]
pub struct ValidationReport {
    /// (HF name wanted, engine tensor it feeds, closest existing name)
    pub missing: Vec<(String, String, Option<String>)>,
    pub unexpected: Vec<String>,
    /// (HF name, expected shape, stored shape)
    pub wrong_shape: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl ValidationReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, engine, near) in &self.missing {
            s += &format!("  missing tensor `{name}` (for engine tensor `{engine}`)");
            if let Some(n) = near {
                s += &format!("; closest existing name: `{n}`");
            }
            s += "\n";
        }
        for (name, want, got) in &self.wrong_shape {
            s += &format!("  wrong shape for `{name}`: expected {want:?}, found {got:?}\n");
        }
        for name in &self.unexpected {
            s += &format!("  unexpected tensor `{name}` (not used by this architecture)\n");
        }
        s
    }
}

/// Maps an HF name as the layers spell it to the name stored in this checkpoint.
pub fn resolver<'a>(layout: &'a ModelLayout, files: &'a SafetensorsFiles) -> impl Fn(&str) -> String + Sync + 'a {
    move |name: &str| {
        if files.contains(name) || layout.prefix.is_empty() {
            return name.to_string();
        }
        if let Some(rest) = name.strip_prefix(&format!("{}.", layout.prefix)) {
            for alias in layout.prefix_aliases {
                let cand = if alias.is_empty() { rest.to_string() } else { format!("{alias}.{rest}") };
                if files.contains(&cand) {
                    return cand;
                }
            }
        }
        name.to_string()
    }
}

/// Every engine tensor the model needs, built without reading data.
pub fn plan_weights(entry: &ModelEntry, cfg: &ModelConfig, mapping: Mapping, dtype: DType) -> Result<Vec<WeightSpec>> {
    let planner = Planner::default();
    let vb = VarBuilder::new(&planner, mapping, dtype);
    (entry.build)(cfg, &vb, &entry.layout)?;
    Ok(planner.into_specs())
}

/// Compare the plan with the checkpoint's headers.
pub fn validate(specs: &[WeightSpec], files: &SafetensorsFiles, layout: &ModelLayout, ignorable: &[String]) -> ValidationReport {
    let resolve = resolver(layout, files);
    let mut report = ValidationReport::default();
    let mut used = BTreeSet::new();
    let all: Vec<&String> = files.names().collect();
    for spec in specs {
        for src in &spec.sources {
            let stored = resolve(&src.name);
            match files.info(&stored) {
                None => {
                    let near = all
                        .iter()
                        .map(|n| (strsim::levenshtein(n, &src.name), *n))
                        .min()
                        .map(|(_, n)| n.clone());
                    report.missing.push((src.name.clone(), spec.name.clone(), near));
                }
                Some(info) => {
                    used.insert(stored.clone());
                    if info.shape != src.shape {
                        report.wrong_shape.push((stored, src.shape.clone(), info.shape.clone()));
                    }
                }
            }
        }
    }
    for name in all {
        let ignored = name.ends_with("rotary_emb.inv_freq")
            || layout.ignore.iter().any(|p| name.starts_with(p))
            || ignorable.iter().any(|p| p == name);
        if !used.contains(name) && !ignored {
            report.unexpected.push(name.clone());
        }
    }
    report
}

/// Read `dir/config.json`, find the architecture's entry and normalize the config for it.
pub fn resolve_config(dir: &Path) -> Result<(ModelConfig, &'static ModelEntry)> {
    let mut cfg = ModelConfig::from_hf_dir(dir)?;
    let entry = lookup(&cfg.architecture)?;
    (entry.adapt_config)(&mut cfg);
    Ok((cfg, entry))
}

/// Build the model of an HF directory: plan, validate, load.
pub fn build_model(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let (mut cfg, entry) = resolve_config(dir)?;
    let files = SafetensorsFiles::open_dir(dir)?;
    let resolve = resolver(&entry.layout, &files);
    let head = format!("{}.weight", entry.layout.lm_head);
    let mut ignorable = vec![];
    if !files.contains(&resolve(&head)) {
        cfg.tie_word_embeddings = true;
    } else if cfg.tie_word_embeddings {
        ignorable.push(resolve(&head));
    }
    let dtype = opts.dtype.or(cfg.torch_dtype).unwrap_or(DType::F32);
    let specs = plan_weights(entry, &cfg, opts.mapping, dtype)?;
    let report = validate(&specs, &files, &entry.layout, &ignorable);
    if !report.is_ok() {
        return Err(Error::Validation { file: files.first_file().to_path_buf(), report: report.render() });
    }
    let src = HfSource { files: &files, resolve: &resolve };
    let vb = VarBuilder::new(&src, opts.mapping, dtype);
    let model = (entry.build)(&cfg, &vb, &entry.layout)?;
    Ok(LoadedModel { model, entry, specs })
}

/// The plan and validation report of an HF directory (`trtllm weights`).
pub fn inspect(dir: &Path, mapping: Mapping) -> Result<(ModelConfig, &'static ModelEntry, Vec<WeightSpec>, ValidationReport)> {
    let (mut cfg, entry) = resolve_config(dir)?;
    let files = SafetensorsFiles::open_dir(dir)?;
    let resolve = resolver(&entry.layout, &files);
    let head = format!("{}.weight", entry.layout.lm_head);
    let mut ignorable = vec![];
    if !files.contains(&resolve(&head)) {
        cfg.tie_word_embeddings = true;
    } else if cfg.tie_word_embeddings {
        ignorable.push(resolve(&head));
    }
    let dtype = cfg.torch_dtype.unwrap_or(DType::F32);
    let specs = plan_weights(entry, &cfg, mapping, dtype)?;
    let report = validate(&specs, &files, &entry.layout, &ignorable);
    Ok((cfg, entry, specs, report))
}
