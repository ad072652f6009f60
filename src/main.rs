//! The `trtllm` command line: models, weights, run (more subcommands join as they land).
//! Flags are kebab-case; the seed's snake_case spellings (`--max_output_len`) are aliases.

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
    if let Err(e) = cli::dispatch(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
