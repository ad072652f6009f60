//! Subcommands.

mod build;
mod convert;
mod convert_gguf;
mod models;
mod run;
mod weights;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "trtllm", version, about = "LLM inference: models defined with Rust macros, run on CPU or CUDA")]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the registered architectures and the types that serve them.
    Models,
    /// Print a model's weight map (engine tensor <- HF sources) and validate its checkpoint.
    Weights(weights::Args),
    /// HF directory -> trtllm checkpoint (fused, cast, sharded), or GGUF -> HF directory.
    Convert(convert::Args),
    /// Checkpoint -> engine directory (build config, weights, tokenizer).
    Build(build::Args),
    /// Generate text.
    Run(run::Args),
}

pub fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Models => models::main(),
        Cmd::Weights(a) => weights::main(a),
        Cmd::Convert(a) => convert::main(a),
        Cmd::Build(a) => build::main(a),
        Cmd::Run(a) => run::main(a),
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

/// The device to run on, or a clear error when CUDA is asked for and not available.
pub fn resolve_device(d: &DeviceArg) -> anyhow::Result<DeviceArg> {
    match d {
        DeviceArg::Auto | DeviceArg::Cpu => Ok(DeviceArg::Cpu),
        DeviceArg::Cuda(n) => anyhow::bail!("--device cuda:{n}: this build has no CUDA backend yet; use --device cpu"),
    }
}

/// `--dtype auto|f32|bf16|f16` (also the HF spellings).
pub fn parse_dtype(s: &str) -> anyhow::Result<Option<trtllm::DType>> {
    if s == "auto" {
        return Ok(None);
    }
    Ok(Some(trtllm::DType::parse(s)?))
}
