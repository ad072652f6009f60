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
    /// `(layer's name, stored name)`: a tensor whose path has the component `layer's name` is read
    /// from the same path with `stored name` when the checkpoint lacks it (Falcon-7B's one
    /// `input_layernorm` stands for the new decoder's `ln_attn` and `ln_mlp`).
    pub renames: &'static [(&'static str, &'static str)],
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
        renames: &[],
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

/// The entry serving `arch`, or an error listing what is supported and the nearest name of the
/// same family.
pub fn lookup(arch: &str) -> Result<&'static ModelEntry> {
    for e in inventory::iter::<ModelEntry> {
        if e.architectures.contains(&arch) {
            return Ok(e);
        }
    }
    let all: Vec<&str> = architectures().into_iter().map(|(a, _)| a).collect();
    let hint = match nearest(arch, &all) {
        Some(a) => format!(" (did you mean `{a}`?)"),
        None => String::new(),
    };
    Err(Error::UnknownArchitecture { name: arch.to_string(), supported: all.join(", "), hint })
}

/// The `config.json` keys the config adapter of `arch` reads (beyond `config::PARSED_KEYS`),
/// found by running it on a minimal config.
pub fn adapter_keys(arch: &str) -> Result<Vec<String>> {
    let entry = lookup(arch)?;
    let v = serde_json::json!({
        "architectures": [arch],
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "vocab_size": 32,
    });
    let mut cfg = ModelConfig::from_hf_value(&v, std::path::Path::new("(minimal config.json)"))?;
    (entry.adapt_config)(&mut cfg)?;
    Ok(cfg.extra_keys_read())
}

/// The model family of an architecture string: the part before `For…` / `LMHeadModel`, lower
/// case (`Olmo2ForCausalLM` -> `olmo2`, `GPT2LMHeadModel` -> `gpt2`).
fn family(arch: &str) -> String {
    let end = ["For", "LMHeadModel", "Model"].iter().filter_map(|m| arch.find(m)).min().unwrap_or(arch.len());
    arch[..end].to_lowercase()
}

/// The registered name `arch` most likely means, by family: the same family (a misspelt or
/// different head), a family one edit away with the same version digits (a typo), or one that extends the other (`Olmo` ->
/// `Olmo2`). Families that merely share a suffix are not related (`Olmo2` is not `Qwen2`).
fn nearest<'a>(arch: &str, all: &[&'a str]) -> Option<&'a str> {
    let f = family(arch);
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let related = |g: &str| {
        f == g
            || (f.len() >= 4 && strsim::levenshtein(&f, g) <= 1 && digits(&f) == digits(g))
            || (f.len() >= 3 && g.len() >= 3 && (f.starts_with(g) || g.starts_with(&f)))
    };
    all.iter()
        .filter(|a| related(&family(a)))
        .map(|a| (strsim::jaro_winkler(&arch.to_lowercase(), &a.to_lowercase()), *a))
        .max_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn hints_follow_the_family_not_the_suffix() {
        let all = [
            "LlamaForCausalLM",
            "Qwen2ForCausalLM",
            "Olmo2ForCausalLM",
            "GPT2LMHeadModel",
            "Gemma2ForCausalLM",
        ];
        assert_eq!(nearest("LLamaForCausalLM", &all), Some("LlamaForCausalLM"));
        assert_eq!(nearest("LlamaForCasualLM", &all), Some("LlamaForCausalLM"));
        assert_eq!(nearest("OlmoForCausalLM", &all), Some("Olmo2ForCausalLM"));
        assert_eq!(nearest("Gemma2ForConditionalGeneration", &all), Some("Gemma2ForCausalLM"));
        // Same suffix and digit, unrelated family: no hint.
        assert_eq!(nearest("Olmo2ForCausalLM", &all[..2]), None);
        assert_eq!(nearest("Exaone4ForCausalLM", &all), None);
        assert_eq!(nearest("GPTJForCausalLM", &all), None);
    }
}
