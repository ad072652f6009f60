//! `trtllm build --checkpoint-dir CKPT_DIR --output-dir ENGINE_DIR`: checkpoint -> engine
//! directory (build config + weights in final layout + tokenizer files).

use std::path::PathBuf;

use trtllm::checkpoint::{build_engine, BuildOptions};

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint written by `trtllm convert`.
    #[arg(long, alias = "checkpoint_dir")]
    checkpoint_dir: PathBuf,
    #[arg(long, alias = "output_dir")]
    output_dir: PathBuf,
    /// Default 8.
    #[arg(long, alias = "max_batch_size")]
    max_batch_size: Option<usize>,
    /// Default min(1024, max_seq_len).
    #[arg(long, alias = "max_input_len")]
    max_input_len: Option<usize>,
    /// Default min(max_position_embeddings, 4096).
    #[arg(long, alias = "max_seq_len")]
    max_seq_len: Option<usize>,
    /// Default 8192.
    #[arg(long, alias = "max_num_tokens")]
    max_num_tokens: Option<usize>,
    /// Tokens per KV-cache block (default 16).
    #[arg(long, alias = "kv_block_size", alias = "tokens_per_block")]
    kv_block_size: Option<usize>,
    /// Compile kernels for this SM, e.g. 90 or sm_90.
    #[arg(long, alias = "target_sm", value_parser = parse_sm)]
    target_sm: Option<u32>,
    /// Replace an existing engine at --output-dir.
    #[arg(long)]
    force: bool,
}

fn parse_sm(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("sm_").unwrap_or(s);
    digits.parse().map_err(|_| format!("`{s}` is not an SM (expected e.g. 90 or sm_90)"))
}

pub fn main(a: Args) -> anyhow::Result<()> {
    let opts = BuildOptions {
        max_batch_size: a.max_batch_size,
        max_input_len: a.max_input_len,
        max_seq_len: a.max_seq_len,
        max_num_tokens: a.max_num_tokens,
        kv_block_size: a.kv_block_size,
        target_sm: a.target_sm,
        force: a.force,
    };
    let cfg = build_engine(&a.checkpoint_dir, &a.output_dir, &opts)?;
    println!(
        "built {}: max_batch_size {} max_input_len {} max_seq_len {} max_num_tokens {} kv_block_size {}{}",
        a.output_dir.display(),
        cfg.max_batch_size,
        cfg.max_input_len,
        cfg.max_seq_len,
        cfg.max_num_tokens,
        cfg.kv_block_size,
        cfg.target_sm.map(|s| format!(" target sm_{s}")).unwrap_or_default()
    );
    Ok(())
}
