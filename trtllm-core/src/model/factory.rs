//! The factory: HF directory -> `config.json["architectures"][0]` -> registry entry -> weight
//! plan -> validation (before any tensor data is read) -> load.

use std::collections::BTreeSet;
use std::path::Path;

use super::{lookup, CausalLM, ModelEntry, ModelLayout};
use crate::config::ModelConfig;
use crate::device::timing;
use crate::weights::{HfSource, Planner, SafetensorsFiles, VarBuilder, WeightSource, WeightSpec};
use crate::{DType, Device, Error, Mapping, Result};

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Weight dtype; `None` keeps the checkpoint's `torch_dtype` (f32 if absent).
    pub dtype: Option<DType>,
    pub mapping: Mapping,
    /// `Device::Cuda(n)` loads the weights onto GPU n (f32 or bf16).
    pub device: Device,
    /// Whether a quantized checkpoint's FP8 linears stay E4M3 + scales (`Some(true)`; on the
    /// CPU each call decodes them, for tests) or are dequantized at load (`Some(false)`).
    /// `None`: kept on the GPU in bf16, where the FP8 kernels run; dequantized elsewhere.
    pub keep_quantized: Option<bool>,
}

impl LoadOptions {
    /// The dtype weights (and, on the GPU, activations) are stored in.
    pub fn weight_dtype(&self, cfg: &ModelConfig) -> DType {
        match (self.dtype, cfg.torch_dtype, self.device) {
            (Some(d), _, _) => d,
            // The GPU kernels take f32 and bf16: an f16 checkpoint runs in bf16 there.
            (None, Some(DType::F16), Device::Cuda(_)) => DType::BF16,
            (None, Some(d), _) => d,
            (None, None, _) => DType::F32,
        }
    }
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
    /// The head's name when `config.json` says `tie_word_embeddings: false` but the checkpoint
    /// stores no head: the model ties it to the embedding (not an error, but not "every tensor
    /// present" either).
    pub tied_by_absence: Option<String>,
}

impl ValidationReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.wrong_shape.is_empty()
    }
    pub fn render(&self) -> String {
        let mut s = String::new();
        for (name, engine, near) in &self.missing {
            s += &format!("  missing tensor `{name}`");
            if name != engine {
                s += &format!(" (for engine tensor `{engine}`)");
            }
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

/// Names and shapes of a checkpoint's stored tensors: what validation compares a plan with
/// (safetensors headers, or a GGUF's tensors by their HF names).
pub trait TensorCatalog: Sync {
    fn shape_of(&self, name: &str) -> Option<&[usize]>;
    fn tensor_names(&self) -> Vec<&String>;
    fn contains(&self, name: &str) -> bool {
        self.shape_of(name).is_some()
    }
}

impl TensorCatalog for SafetensorsFiles {
    fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.info(name).map(|i| i.shape.as_slice())
    }
    fn tensor_names(&self) -> Vec<&String> {
        self.names().collect()
    }
}

/// Maps an HF name as the layers spell it to the name stored in this checkpoint.
pub fn resolver<'a>(
    layout: &'a ModelLayout,
    files: &'a dyn TensorCatalog,
) -> impl Fn(&str) -> String + Sync + 'a {
    move |name: &str| {
        if files.contains(name) {
            return name.to_string();
        }
        for (from, to) in layout.renames {
            let cand = name.replace(&format!(".{from}."), &format!(".{to}."));
            if files.contains(&cand) {
                return cand;
            }
        }
        if layout.prefix.is_empty() {
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
pub fn plan_weights(
    entry: &ModelEntry,
    cfg: &ModelConfig,
    mapping: Mapping,
    dtype: DType,
) -> Result<Vec<WeightSpec>> {
    let planner = Planner::default();
    let vb = VarBuilder::new(&planner, mapping, dtype).with_quant(cfg.quant.clone());
    (entry.build)(cfg, &vb, &entry.layout)?;
    Ok(planner.into_specs())
}

/// Compare the plan with the checkpoint's headers.
pub fn validate(
    specs: &[WeightSpec],
    files: &dyn TensorCatalog,
    layout: &ModelLayout,
    ignorable: &[String],
) -> ValidationReport {
    let resolve = resolver(layout, files);
    let mut report = ValidationReport::default();
    let mut used = BTreeSet::new();
    let all: Vec<&String> = files.tensor_names();
    for spec in specs {
        for src in &spec.sources {
            let stored = resolve(&src.name);
            match files.shape_of(&stored) {
                None => {
                    report.missing.push((src.name.clone(), spec.name.clone(), None));
                }
                Some(shape) => {
                    used.insert(stored.clone());
                    let scale = spec.quant.is_some() && src.name.contains("scale");
                    if shape != src.shape.as_slice()
                        && !(scale && crate::weights::quant::same_scale_shape(&src.shape, shape))
                    {
                        report.wrong_shape.push((stored, src.shape.clone(), shape.to_vec()));
                    }
                }
            }
        }
    }
    // Suggest, for each missing tensor, the closest name nothing else uses (a renamed tensor is
    // unused; its used siblings are closer by spelling but wrong).
    let unused: Vec<&String> = all.iter().copied().filter(|n| !used.contains(*n)).collect();
    for (name, _, near) in &mut report.missing {
        let pool = if unused.is_empty() { &all } else { &unused };
        *near = pool.iter().map(|n| (strsim::levenshtein(n, name), *n)).min().map(|(_, n)| n.clone());
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
    (entry.adapt_config)(&mut cfg)?;
    Ok((cfg, entry))
}

/// An HF directory opened for loading: the normalized config (with the tied head detected from
/// the tensors present), its registry entry, the safetensors and the tensors that may be
/// present without being used.
pub struct HfCheckpoint {
    pub cfg: ModelConfig,
    /// The head's name when the config says untied and the files store none.
    pub tied_by_absence: Option<String>,
    pub entry: &'static ModelEntry,
    pub files: SafetensorsFiles,
    pub ignorable: Vec<String>,
}

impl HfCheckpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let (mut cfg, entry) = resolve_config(dir)?;
        let files = SafetensorsFiles::open_dir(dir)?;
        // Before anything is planned per layer or expert.
        cfg.check_stored(&dir.join("config.json"), files.stored(1))?;
        let head = resolver(&entry.layout, &files)(&format!("{}.weight", entry.layout.lm_head));
        let mut ignorable = vec![];
        let mut tied_by_absence = None;
        if !files.contains(&head) {
            if !cfg.tie_word_embeddings {
                tied_by_absence = Some(head.clone());
            }
            cfg.tie_word_embeddings = true;
        } else if cfg.tie_word_embeddings {
            ignorable.push(head);
        }
        // Static activation / KV-cache scales of a quantized checkpoint: present, unread.
        if let Some(q) = &cfg.quant {
            let unused = |n: &str| q.unused_leaves.iter().any(|l| n.ends_with(&format!(".{l}")));
            ignorable.extend(files.names().filter(|n| unused(n)).cloned());
        }
        Ok(HfCheckpoint { cfg, tied_by_absence, entry, files, ignorable })
    }

    /// Engine-side HF name -> name stored in this checkpoint.
    pub fn resolver(&self) -> impl Fn(&str) -> String + Sync + '_ {
        resolver(&self.entry.layout, &self.files)
    }

    /// Compare a plan with the headers.
    pub fn validate(&self, specs: &[WeightSpec]) -> ValidationReport {
        let mut report = validate(specs, &self.files, &self.entry.layout, &self.ignorable);
        report.tied_by_absence = self.tied_by_absence.clone();
        report
    }
}

/// The builder that loads from `src` as `opts` asks (mapping, dtype, device), on
/// [`load_threads`](crate::weights::load_threads) threads.
pub(crate) fn var_builder<'a>(
    src: &'a dyn WeightSource,
    opts: &LoadOptions,
    dtype: DType,
) -> Result<VarBuilder<'a>> {
    let threads = crate::weights::load_threads(opts.mapping.tp_size);
    let vb = VarBuilder::new(src, opts.mapping, dtype).with_threads(threads);
    Ok(match opts.device {
        Device::Cuda(n) => vb.on_gpu(crate::device::gpu(n)?),
        _ => vb,
    })
}

/// Build the model through `vb` as the `weights` load phase: every upload finished (and
/// checked) before the phase ends.
pub(crate) fn build_weights(
    entry: &ModelEntry,
    cfg: &ModelConfig,
    vb: &VarBuilder<'_>,
) -> Result<Box<dyn CausalLM>> {
    let p = timing::phase(format!("weights{}", timing::rank_tag(vb.mapping)));
    let model = (entry.build)(cfg, vb, &entry.layout)?;
    let stats = vb.finish_uploads()?;
    let secs = p.elapsed();
    let threads = vb.load_threads();
    let detail = match stats {
        Some(s) => format!(
            "{} in {} tensors on {threads} threads; summed over threads: host copies {:.2} s, waiting for staging/DMA {:.2} s, device allocs {:.2} s; {} staging buffers x {} MiB pinned in {:.3} s{}",
            timing::gib_rate(s.bytes, secs),
            s.tensors,
            s.copy_s,
            s.wait_s,
            s.alloc_s,
            s.staging_buffers,
            s.chunk_bytes >> 20,
            s.pin_s,
            if s.pageable_bytes > 0 { format!("; {} bytes pageable (no pinned memory)", s.pageable_bytes) } else { String::new() },
        ),
        None => format!("host memory, {threads} threads"),
    };
    p.done_with(&detail);
    Ok(model)
}

/// Build the model of an HF directory: plan, validate, load.
pub fn build_hf_model(dir: &Path, opts: &LoadOptions) -> Result<LoadedModel> {
    let p = timing::phase(format!("open + plan + validate{}", timing::rank_tag(opts.mapping)));
    let hf = HfCheckpoint::open(dir)?;
    let dtype = opts.weight_dtype(&hf.cfg);
    let specs = plan_weights(hf.entry, &hf.cfg, opts.mapping, dtype)?;
    // A pipeline stage plans only its own layers: the files are checked against the whole
    // model's plan (the other stages' layers are not unexpected).
    let m = opts.mapping;
    let whole = match m.pp_size {
        1 => None,
        _ => Some(plan_weights(hf.entry, &hf.cfg, Mapping::new(m.tp_size, 1, m.tp_rank())?, dtype)?),
    };
    let report = hf.validate(whole.as_deref().unwrap_or(&specs));
    if !report.is_ok() {
        return Err(Error::Validation { file: hf.files.first_file().to_path_buf(), report: report.render() });
    }
    p.done_with("HF directory");
    let resolve = hf.resolver();
    let src = HfSource { files: &hf.files, resolve: &resolve };
    let native =
        opts.keep_quantized.unwrap_or(matches!(opts.device, Device::Cuda(_)) && dtype == DType::BF16);
    let vb = var_builder(&src, opts, dtype)?.with_quant(hf.cfg.quant.clone()).keep_quantized(native);
    let model = build_weights(hf.entry, &hf.cfg, &vb)?;
    let entry = hf.entry;
    let p = timing::phase(format!("free staging{}", timing::rank_tag(opts.mapping)));
    drop(vb);
    p.done();
    drop(resolve);
    hf.files.close_in_background();
    Ok(LoadedModel { model, entry, specs })
}

/// The plan and validation report of an HF directory (`trtllm weights`).
pub fn inspect(
    dir: &Path,
    mapping: Mapping,
) -> Result<(ModelConfig, &'static ModelEntry, Vec<WeightSpec>, ValidationReport)> {
    if let Some(file) = crate::gguf::gguf_of_dir(dir)? {
        return super::inspect_gguf(dir, &file, mapping);
    }
    let hf = HfCheckpoint::open(dir)?;
    let dtype = hf.cfg.torch_dtype.unwrap_or(DType::F32);
    let specs = plan_weights(hf.entry, &hf.cfg, mapping, dtype)?;
    let report = hf.validate(&specs);
    Ok((hf.cfg, hf.entry, specs, report))
}
