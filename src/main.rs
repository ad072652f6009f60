//! The `trtllm` command line: models, weights, run (more subcommands join as they land).
//! Flags are kebab-case; the seed's snake_case spellings (`--max_output_len`) are aliases.

mod cli;

use clap::Parser;

fn main() {
    trtllm::init();
    let args = cli::Cli::parse();
    if let Err(e) = cli::dispatch(args) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
