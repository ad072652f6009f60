//! The options a model is loaded and run with.

use std::path::PathBuf;

use crate::model::LoadOptions;

/// What [`crate::Llm`] and the serving engine run with: how to load the model, and the engine limits
/// (an engine directory's `build_config.json` gives the defaults: [`LlmOptions::for_dir`]).
#[derive(Clone, Debug)]
pub struct LlmOptions {
    pub load: LoadOptions,
    pub kv_block_size: usize,
    /// Total KV blocks; `None` sizes the cache for `max_batch_size` sequences of `max_seq_len`.
    pub kv_num_blocks: Option<usize>,
    pub max_batch_size: usize,
    pub max_seq_len: usize,
    /// Tensor-parallel ranks (CPU reference: one thread per rank). `None`: a checkpoint's own
    /// size, 1 for an HF directory.
    pub tp_size: Option<usize>,
    /// Pipeline stages (docs/parallelism.md; HF directories): the layers split in `pp_size`
    /// contiguous stages, each of `tp_size` ranks. 1: no pipeline.
    pub pp_size: usize,
    /// Where `tokenizer.json` is, when not in the model directory.
    pub tokenizer_dir: Option<PathBuf>,
    /// Replay decode steps as CUDA graphs on a single GPU (`runner::DecodeGraphs`); also off
    /// with `TRTLLM_NO_CUDA_GRAPH=1`.
    pub cuda_graphs: bool,
}

impl Default for LlmOptions {
    fn default() -> Self {
        LlmOptions {
            load: LoadOptions::default(),
            kv_block_size: 16,
            kv_num_blocks: None,
            max_batch_size: 8,
            max_seq_len: 4096,
            tp_size: None,
            pp_size: 1,
            tokenizer_dir: None,
            cuda_graphs: true,
        }
    }
}

impl LlmOptions {
    /// Every size positive and under its cap (`config::limits`), before anything is sized from
    /// them; errors name the option and the limit.
    pub fn check(&self) -> crate::Result<()> {
        use crate::config::{check_range, MAX_BATCH_SIZE, MAX_CONTEXT, MAX_KV_BLOCK_SIZE};
        let flag = std::path::Path::new("(options)");
        check_range(flag, "kv_block_size", self.kv_block_size, MAX_KV_BLOCK_SIZE)?;
        check_range(flag, "max_batch_size", self.max_batch_size, MAX_BATCH_SIZE)?;
        check_range(flag, "max_seq_len", self.max_seq_len, MAX_CONTEXT)?;
        if let Some(n) = self.kv_num_blocks {
            check_range(flag, "kv_num_blocks", n, usize::MAX)?;
        }
        Ok(())
    }

    /// KV blocks to allocate: `kv_num_blocks`, else `max_batch_size` sequences of `max_seq_len`
    /// (checked: an overflow is an error).
    pub fn kv_blocks(&self) -> crate::Result<usize> {
        self.check()?;
        match self.kv_num_blocks {
            Some(n) => Ok(n),
            None => self
                .max_batch_size
                .checked_mul(self.max_seq_len.div_ceil(self.kv_block_size))
                .ok_or_else(|| {
                    crate::Error::Msg(format!(
                        "max_batch_size {} x max_seq_len {} overflows the KV block count",
                        self.max_batch_size, self.max_seq_len
                    ))
                }),
        }
    }
}
