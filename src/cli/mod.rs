//! Subcommands.

mod alloc;
mod bench;
mod build;
mod chat;
mod convert;
mod convert_gguf;
mod hub;
mod models;
mod perplexity;
mod run;
mod serve;
mod spec_args;
mod summarize;
mod verify;
mod weights;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "trtllm",
    version,
    about = "LLM inference: models defined with Rust macros, run on CPU or CUDA"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Log filter for stderr: a level (error, warn, info, debug, trace) or `RUST_LOG` syntax
    /// (`info,trtllm::request=warn`). Default: $RUST_LOG, else info.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
}

/// Install the `tracing` subscriber: events to stderr, filtered by `--log-level`, else
/// `RUST_LOG`, else `info`. One line per event; requests log under the `trtllm::request` target.
pub fn init_logging(level: Option<&str>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| anyhow::anyhow!("--log-level `{l}`: {e}"))?,
        None => match std::env::var("RUST_LOG") {
            Ok(v) if !v.is_empty() => {
                EnvFilter::try_new(&v).map_err(|e| anyhow::anyhow!("RUST_LOG `{v}`: {e}"))?
            }
            _ => EnvFilter::new("info"),
        },
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init()
        .map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

#[derive(Subcommand)]
enum Cmd {
    /// List the registered architectures and the types that serve them.
    Models(models::Args),
    /// Print a model's weight map (engine tensor <- HF sources) and validate its checkpoint.
    Weights(weights::Args),
    /// HF directory -> trtllm checkpoint (fused, cast, sharded), or GGUF -> HF directory.
    Convert(convert::Args),
    /// Checkpoint -> engine directory (build config, weights, tokenizer).
    Build(build::Args),
    /// Generate text.
    Run(run::Args),
    /// OpenAI-compatible HTTP server (continuous batching).
    Serve(serve::Args),
    /// Chat with a model in the terminal (its chat template, streaming, /reset, /exit).
    Chat(chat::Args),
    /// Compare with an HF reference dump layer by layer (scripts/hf_reference.py).
    Verify(verify::Args),
    /// Summarize a document set and score it with ROUGE (vs references and HF outputs).
    Summarize(summarize::Args),
    /// Measure TTFT, TPOT, tokens/s and achieved bandwidth.
    Bench(bench::Args),
    /// Teacher-forced perplexity over a document set (quantized vs source checkpoints).
    Perplexity(perplexity::Args),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Models(a) => models::main(a),
        Cmd::Weights(a) => weights::main(a),
        Cmd::Convert(a) => convert::main(a),
        Cmd::Build(a) => build::main(a),
        Cmd::Run(a) => run::main(a),
        Cmd::Serve(a) => serve::main(a),
        Cmd::Chat(a) => chat::main(a),
        Cmd::Verify(a) => verify::main(a),
        Cmd::Summarize(a) => summarize::main(a),
        Cmd::Bench(a) => bench::main(a),
        Cmd::Perplexity(a) => perplexity::main(a),
    }
}

/// `--device auto|cpu|cuda[:N]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceArg::Auto),
            "cpu" => Ok(DeviceArg::Cpu),
            "cuda" => Ok(DeviceArg::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => Ok(DeviceArg::Cuda(n)),
                _ => Err(format!("unknown device `{s}` (expected auto, cpu, cuda or cuda:N)")),
            },
        }
    }
}

/// The device to run on: `auto` picks GPU 0 when one is usable; asking for a GPU that is not
/// there is a clear error, not a crash.
pub fn resolve_device(d: &DeviceArg) -> anyhow::Result<trtllm::Device> {
    match d {
        DeviceArg::Cpu => Ok(trtllm::Device::Cpu),
        DeviceArg::Auto if trtllm::kernels::Gpu::available() => Ok(trtllm::Device::Cuda(0)),
        DeviceArg::Auto => Ok(trtllm::Device::Cpu),
        DeviceArg::Cuda(n) => {
            let count = trtllm::kernels::Gpu::device_count();
            if *n >= count {
                anyhow::bail!(
                    "--device cuda:{n}: {count} CUDA device(s) usable on this machine; use --device cpu"
                );
            }
            Ok(trtllm::Device::Cuda(*n))
        }
    }
}

/// `--dtype auto|f32|bf16|f16` (also the HF spellings).
pub fn parse_dtype(s: &str) -> anyhow::Result<Option<trtllm::DType>> {
    if s == "auto" {
        return Ok(None);
    }
    Ok(Some(trtllm::DType::parse(s)?))
}

/// Where the model comes from: the positional `MODEL` or `--model` (an HF, checkpoint or engine
/// directory, or an HF id `Org/Name` in the local HF cache) or `--engine-dir`, and where its
/// tokenizer is when that directory has none.
#[derive(clap::Args)]
pub struct ModelArgs {
    /// The model: a directory, or an HF id (`Org/Name`) in the local HF cache (same as --model).
    #[arg(value_name = "MODEL", conflicts_with_all = ["model", "engine_dir"])]
    pub model_path: Option<std::path::PathBuf>,
    /// HF model directory (or a checkpoint / engine directory), or an HF id (`Org/Name`) found
    /// in the local HF cache ($HF_HOME/hub); never downloaded.
    #[arg(
        long,
        alias = "model_dir",
        alias = "model-dir",
        required_unless_present_any = ["engine_dir", "model_path"],
        conflicts_with = "engine_dir"
    )]
    pub model: Option<std::path::PathBuf>,
    /// Engine directory from `trtllm build` (its build limits are the defaults).
    #[arg(long, alias = "engine_dir")]
    pub engine_dir: Option<std::path::PathBuf>,
    /// Where tokenizer.json is, when the model directory has none.
    #[arg(long, alias = "tokenizer_dir")]
    pub tokenizer_dir: Option<std::path::PathBuf>,
    /// Run every decode step eagerly instead of replaying CUDA graphs.
    #[arg(long)]
    pub no_cuda_graphs: bool,
}

impl ModelArgs {
    /// The directory to load (an HF id resolved in the local HF cache).
    pub fn dir(&self) -> anyhow::Result<std::path::PathBuf> {
        Ok(self.resolve()?.0)
    }

    /// The directory to load, and the HF id it was resolved from (if it was one).
    pub fn resolve(&self) -> anyhow::Result<(std::path::PathBuf, Option<String>)> {
        if let Some(d) = &self.engine_dir {
            return Ok((d.clone(), None));
        }
        match self.model_path.as_ref().or(self.model.as_ref()) {
            Some(m) => hub::resolve_model(m),
            None => anyhow::bail!("a model (MODEL, --model) or --engine-dir is required"),
        }
    }
}
