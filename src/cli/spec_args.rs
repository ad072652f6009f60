//! The speculative-decoding flags of `run`, `bench`, `summarize` and `serve` (vLLM's names where
//! it has them): `--speculative-method ngram|draft`, `--speculative-model DIR`,
//! `--num-speculative-tokens K`, `--prompt-lookup-max N`, `--prompt-lookup-min N`.

use trtllm::load::{SpecMethod, SpecOptions};

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SpecArgs {
    /// Speculative decoding: `ngram` (prompt lookup) or `draft` (--speculative-model). Default:
    /// draft with --speculative-model, else ngram when --num-speculative-tokens is given.
    #[arg(long, alias = "speculative_method", value_parser = ["ngram", "draft"])]
    pub speculative_method: Option<String>,
    /// Draft model directory (the target's vocabulary; the target's own directory drafts with
    /// the target's weights). `[ngram]` means prompt lookup, as in older vLLM.
    #[arg(long, alias = "speculative_model")]
    pub speculative_model: Option<std::path::PathBuf>,
    /// K: draft tokens verified per step [default: 4 when speculating].
    #[arg(long, alias = "num_speculative_tokens")]
    pub num_speculative_tokens: Option<usize>,
    /// Prompt lookup: the longest suffix n-gram looked up [default: 4].
    #[arg(long, alias = "prompt_lookup_max", alias = "ngram-prompt-lookup-max")]
    pub prompt_lookup_max: Option<usize>,
    /// Prompt lookup: the shortest suffix n-gram looked up [default: 2].
    #[arg(long, alias = "prompt_lookup_min", alias = "ngram-prompt-lookup-min")]
    pub prompt_lookup_min: Option<usize>,
}

/// Draft tokens per step when only a method is given.
const DEFAULT_K: usize = 4;

impl SpecArgs {
    /// The options these flags ask for (`None`: no speculation), checked.
    pub fn options(&self) -> anyhow::Result<Option<SpecOptions>> {
        let lookup_model = self.speculative_model.as_ref().is_some_and(|m| m.as_os_str() == "[ngram]");
        let model = self.speculative_model.clone().filter(|_| !lookup_model);
        let method = match (self.speculative_method.as_deref(), &model) {
            (Some("draft"), _) => SpecMethod::Draft,
            (Some(_), _) => SpecMethod::Ngram,
            (None, Some(_)) => SpecMethod::Draft,
            (None, None) => {
                let any = lookup_model
                    || self.num_speculative_tokens.is_some()
                    || self.prompt_lookup_max.is_some()
                    || self.prompt_lookup_min.is_some();
                if !any {
                    return Ok(None);
                }
                SpecMethod::Ngram
            }
        };
        let mut o = SpecOptions::ngram(self.num_speculative_tokens.unwrap_or(DEFAULT_K));
        o.method = method;
        o.model = model;
        if let Some(n) = self.prompt_lookup_max {
            o.prompt_lookup_max = n;
            o.prompt_lookup_min = o.prompt_lookup_min.min(n);
        }
        if let Some(n) = self.prompt_lookup_min {
            o.prompt_lookup_min = n;
        }
        o.check()?;
        Ok(Some(o))
    }
}

/// The speculation line of a report: acceptance and tokens per step.
pub fn describe(s: &trtllm::serve::SpecStats) -> String {
    format!(
        "speculative: {} drafts, {:.1}% accepted, {:.2} tokens per step, draft model {:.2}s",
        s.draft_tokens,
        100.0 * s.acceptance_rate(),
        s.tokens_per_step(),
        s.draft_s
    )
}
