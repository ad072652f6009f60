//! `build`: checkpoint -> engine directory. The engine holds `build_config.json` (the runtime
//! limits and the target SM), the checkpoint's `config.json` and rank files (hard-linked when
//! possible: they already are the final layout on the CPU) and the tokenizer files. Every rank
//! file is validated against the plan first, so a bad checkpoint fails here, not at run time.

use std::path::Path;

use super::format::{
    rank_file, read_checkpoint_config, write_json, BuildConfig, BUILD_CONFIG, CONVERTER_VERSION,
    ENGINE_FORMAT,
};
use super::load::open_rank;
use super::output::{copy_tokenizer_files, link_or_copy, StagedDir};
use crate::model::LoadOptions;
use crate::{Error, Result};

/// Limits of the engine; `None` takes the default shown in each field's comment.
#[derive(Clone, Debug, Default)]
pub struct BuildOptions {
    /// Default 8.
    pub max_batch_size: Option<usize>,
    /// Default `min(1024, max_seq_len)`.
    pub max_input_len: Option<usize>,
    /// Default `min(max_position_embeddings, 4096)` (the CPU KV cache is sized from it).
    pub max_seq_len: Option<usize>,
    /// Default 8192.
    pub max_num_tokens: Option<usize>,
    /// Default 16.
    pub kv_block_size: Option<usize>,
    /// Compile kernels for this SM (e.g. 90); recorded for the CUDA backend.
    pub target_sm: Option<u32>,
    pub force: bool,
}

fn positive(file: &Path, field: &str, v: usize) -> Result<usize> {
    if v == 0 {
        return Err(Error::config(file, field, "must be positive"));
    }
    Ok(v)
}

/// Build the engine directory `out` from the checkpoint `ckpt_dir`.
pub fn build_engine(ckpt_dir: &Path, out: &Path, opts: &BuildOptions) -> Result<BuildConfig> {
    if ckpt_dir.join(BUILD_CONFIG).exists() {
        return Err(Error::checkpoint(
            ckpt_dir,
            "is already an engine directory; build from the checkpoint `trtllm convert` wrote",
        ));
    }
    let ckpt = read_checkpoint_config(ckpt_dir)?;
    let m = ckpt.mapping;
    for rank in 0..m.world_size {
        let opts = LoadOptions { mapping: m.rank(rank)?, ..Default::default() };
        open_rank(ckpt_dir, &ckpt, &opts)?;
    }
    let flag = Path::new("(build options)");
    let max_seq_len = positive(
        flag,
        "max_seq_len",
        opts.max_seq_len.unwrap_or(ckpt.model_config.max_position_embeddings.min(4096)),
    )?;
    let max_input_len = positive(flag, "max_input_len", opts.max_input_len.unwrap_or(max_seq_len.min(1024)))?;
    if max_input_len > max_seq_len {
        return Err(Error::config(
            flag,
            "max_input_len",
            format!("{max_input_len} exceeds max_seq_len {max_seq_len}"),
        ));
    }
    let cfg = BuildConfig {
        format: ENGINE_FORMAT.into(),
        converter_version: CONVERTER_VERSION,
        builder_version: env!("CARGO_PKG_VERSION").into(),
        max_batch_size: positive(flag, "max_batch_size", opts.max_batch_size.unwrap_or(8))?,
        max_input_len,
        max_seq_len,
        max_num_tokens: positive(flag, "max_num_tokens", opts.max_num_tokens.unwrap_or(8192))?,
        kv_block_size: positive(flag, "kv_block_size", opts.kv_block_size.unwrap_or(16))?,
        target_sm: opts.target_sm,
        kernels: vec![],
    };

    cfg.check(flag)?;
    let mut cfg = cfg;
    // Kernels for the target SM (or the present GPU's), so `run` compiles nothing.
    let sm = opts.target_sm.or_else(|| {
        trtllm_kernels::Gpu::available().then(|| crate::device::gpu(0).ok().map(|g| g.sm)).flatten()
    });
    let mut ptx = vec![];
    if let Some(sm) = sm {
        for k in trtllm_kernels::KERNELS {
            let text = trtllm_kernels::Gpu::ptx_for_sm(k, sm).map_err(|e| {
                Error::Device(format!("precompiling kernels for sm_{sm} needs NVRTC (libnvrtc): {e}"))
            })?;
            ptx.push((trtllm_kernels::prebuilt_name(k, sm), text));
        }
        cfg.target_sm = Some(sm);
        cfg.kernels = ptx.iter().map(|(n, _)| format!("kernels/{n}")).collect();
    }
    let staged = StagedDir::new(out, opts.force)?;
    if !ptx.is_empty() {
        let kdir = staged.path().join("kernels");
        std::fs::create_dir_all(&kdir).map_err(|e| Error::io(&kdir, e))?;
        for (name, text) in &ptx {
            std::fs::write(kdir.join(name), text).map_err(|e| Error::io(kdir.join(name), e))?;
        }
    }
    std::fs::copy(ckpt_dir.join("config.json"), staged.path().join("config.json"))
        .map_err(|e| Error::io(ckpt_dir.join("config.json"), e))?;
    for rank in 0..m.world_size {
        link_or_copy(&rank_file(ckpt_dir, rank), &rank_file(staged.path(), rank))?;
    }
    copy_tokenizer_files(ckpt_dir, staged.path())?;
    write_json(&staged.path().join(BUILD_CONFIG), &cfg)?;
    staged.commit()?;
    Ok(cfg)
}
