//! The model registry. `#[register_model]` submits a `ModelEntry` with `inventory`; every
//! linked crate's entries are collected at link time. Lookup is by HF architecture string.

use super::CausalLM;
use crate::config::ModelConfig;
use crate::weights::VarBuilder;
use crate::{Error, Result};

/// Where a family's tensors live in an HF checkpoint, relative to the root.
#[derive(Clone, Copy, Debug)]
pub struct ModelLayout {
    /// Prefix of the decoder (`model`, GPT-2: `transformer`).
    pub prefix: &'static str,
    pub embed_tokens: &'static str,
    /// Learned absolute position embeddings (GPT-2: `wpe`).
    pub position_embeddings: Option<&'static str>,
    pub layers: &'static str,
    pub norm: &'static str,
    /// Relative to the root, not the prefix.
    pub lm_head: &'static str,
    /// Other prefixes checkpoints use for the decoder (`""` for GPT-2 without `transformer.`,
    /// `model.language_model` for Gemma 3 multimodal checkpoints).
    pub prefix_aliases: &'static [&'static str],
    /// Checkpoint tensors that may be present but are not used (prefix match).
    pub ignore: &'static [&'static str],
}

impl ModelLayout {
    /// The Llama layout: `model.embed_tokens`, `model.layers.N`, `model.norm`, `lm_head`.
    pub const LLAMA: ModelLayout = ModelLayout {
        prefix: "model",
        embed_tokens: "embed_tokens",
        position_embeddings: None,
        layers: "layers",
        norm: "norm",
        lm_head: "lm_head",
        prefix_aliases: &[],
        ignore: &[],
    };
}

pub type BuildFn = fn(&ModelConfig, &VarBuilder<'_>, &ModelLayout) -> Result<Box<dyn CausalLM>>;

/// One registered family.
pub struct ModelEntry {
    /// HF `architectures[0]` strings this family serves (the first is its main name).
    pub architectures: &'static [&'static str],
    /// The registering type (`trtllm_models::llama::Llama`).
    pub type_name: &'static str,
    pub layout: ModelLayout,
    /// Sets the architecture knobs HF keeps in modeling code (an error for a config the
    /// architecture cannot run: a key it does not read set to a value that changes the math).
    pub adapt_config: fn(&mut ModelConfig) -> Result<()>,
    pub build: BuildFn,
}

inventory::collect!(ModelEntry);

/// What a config adapter (`#[register_model(config = fn)]`) may return: nothing, or a `Result`
/// when it reads `config.json` keys (`ModelConfig::extra`) or refuses a config.
pub trait AdaptResult {
    fn into_result(self) -> Result<()>;
}

impl AdaptResult for () {
    fn into_result(self) -> Result<()> {
        Ok(())
    }
}

impl AdaptResult for Result<()> {
    fn into_result(self) -> Result<()> {
        self
    }
}

/// Every (architecture, type) pair, sorted by architecture.
pub fn architectures() -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = inventory::iter::<ModelEntry>
        .into_iter()
        .flat_map(|e| e.architectures.iter().map(move |a| (*a, e.type_name)))
        .collect();
    v.sort();
    v
}

/// The entry serving `arch`, or an error listing what is supported and the nearest name.
pub fn lookup(arch: &str) -> Result<&'static ModelEntry> {
    for e in inventory::iter::<ModelEntry> {
        if e.architectures.contains(&arch) {
            return Ok(e);
        }
    }
    let all: Vec<&str> = architectures().into_iter().map(|(a, _)| a).collect();
    let nearest = all
        .iter()
        .map(|a| (strsim::jaro_winkler(&arch.to_lowercase(), &a.to_lowercase()), *a))
        .max_by(|x, y| x.0.total_cmp(&y.0));
    let hint = match nearest {
        Some((score, a)) if score > 0.7 => format!(" (did you mean `{a}`?)"),
        _ => String::new(),
    };
    Err(Error::UnknownArchitecture { name: arch.to_string(), supported: all.join(", "), hint })
}
