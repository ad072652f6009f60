#![recursion_limit = "256"]
//! The `trtllm` command line (`src/cli/`, one file per subcommand). Flags are kebab-case;
//! TensorRT-LLM's snake_case spellings (`--max_output_len`) are aliases.

mod cli;

use clap::Parser;

fn main() {
    if std::env::var_os("NCCL_NVLS_ENABLE").is_none() {
        // Tensor parallelism never uses NVLink SHARP multicast; keep NCCL from setting it up.
        // Set before any thread exists.
        std::env::set_var("NCCL_NVLS_ENABLE", "0");
    }
    trtllm::init();
    let args = cli::Cli::parse();
    if let Err(e) = cli::init_logging(args.log_level.as_deref()) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
    if let Err(e) = cli::dispatch(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
