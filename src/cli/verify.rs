//! `trtllm verify --model DIR | --engine-dir DIR --reference REF.safetensors`: compare the engine
//! with an HF transformers dump (`scripts/hf_reference.py`) stage by stage — per-layer hidden
//! state NMSE, logits NMSE and KL, greedy tokens — and name the first layer that diverges.
//! Exits non-zero when anything fails.

use std::path::PathBuf;

use trtllm::eval::verify::{verify, Reference, VerifyOptions};
use trtllm::llm::Llm;
use trtllm::load::LlmOptions;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    m: super::ModelArgs,
    /// Reference dump written by scripts/hf_reference.py.
    #[arg(long)]
    reference: PathBuf,
    /// Weight dtype: auto (the dtype the reference was computed in), f32, bf16, f16.
    #[arg(long, default_value = "auto")]
    dtype: String,
    #[arg(long, default_value = "cpu")]
    device: super::DeviceArg,
    /// A stage fails when its NMSE exceeds this.
    #[arg(long, alias = "nmse_threshold", default_value_t = 1e-6)]
    nmse_threshold: f64,
    /// The logits fail when the mean KL(ref || ours) over positions exceeds this (nats).
    #[arg(long, alias = "kl_threshold", default_value_t = 1e-4)]
    kl_threshold: f64,
    /// Skip the greedy-continuation comparison.
    #[arg(long)]
    no_greedy: bool,
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let device = super::resolve_device(&a.device)?;
    let dir = &a.m.dir()?;
    let refs = Reference::open(&a.reference)?;
    let ref_dtype = refs.meta("dtype").unwrap_or("float32");
    let mut opts = LlmOptions::for_dir(dir)?;
    opts.load.dtype = match a.dtype.as_str() {
        "auto" => Some(trtllm::DType::parse(ref_dtype)?),
        d => super::parse_dtype(d)?,
    };
    opts.load.device = device;
    opts.tokenizer_dir = a.m.tokenizer_dir.clone();
    // One sequence: the prompt plus the greedy tokens.
    let need = refs.files.info("input_ids").map_or(0, |i| i.shape.iter().product())
        + refs.files.info("greedy").map_or(0, |i| i.shape.iter().product::<usize>());
    opts.max_batch_size = 1;
    opts.max_seq_len = need.max(1);
    let mut llm = Llm::with_options(dir, opts)?;

    println!("verify: {} against {}", dir.display(), a.reference.display());
    println!(
        "reference: {} (transformers {}, {}), {} tokens",
        refs.meta("architecture").unwrap_or("?"),
        refs.meta("transformers_version").unwrap_or("?"),
        ref_dtype,
        refs.meta("seq_len").unwrap_or("?"),
    );
    let vopts = VerifyOptions {
        nmse_threshold: a.nmse_threshold,
        kl_threshold: a.kl_threshold,
        greedy: !a.no_greedy,
    };
    let report = verify(&mut llm, &refs, &vopts)?;
    print!("{}", report.render());
    if !report.passed() {
        let why = match report.first_divergence() {
            Some(r) => format!("first divergence at {}", r.stage),
            None if !report.kl_ok() => "logits KL above the threshold".into(),
            None => "greedy tokens differ".into(),
        };
        anyhow::bail!("verify failed: {why}");
    }
    Ok(())
}
