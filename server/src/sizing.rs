//! Sizing the serving engine on a GPU: the KV cache takes what is left of
//! `gpu_memory_utilization` of the card after the weights (already loaded) and a reserve for
//! activations, logits, sampling state and CUDA graphs; a cache that cannot hold one sequence of
//! `max_seq_len` is refused with the numbers.

use trtllm_core::batch::KvLayout;
use trtllm_core::{Error, Result};

/// What the KV cache may use and how it was worked out (printed at start).
#[derive(Clone, Debug)]
pub struct KvBudget {
    pub blocks: usize,
    pub bytes_per_block: usize,
    pub free_bytes: usize,
    pub total_bytes: usize,
    pub reserve_bytes: usize,
}

/// Bytes of one KV block: K and V of every layer.
pub fn bytes_per_block(layout: &KvLayout, block_size: usize, elem: usize) -> usize {
    [layout.planes(), layout.num_layers, block_size, layout.kv_heads, layout.head_dim, elem]
        .iter()
        .fold(1usize, |a, &d| a.saturating_mul(d))
}

/// Memory outside the weights and the KV cache that a step needs at most: activations of
/// `max_num_tokens` tokens (a generous 24 hidden-size rows plus the MLP's intermediate rows per
/// token), `[max_seqs, vocab]` logits in f32 twice (step output, graph copy), the sampler's
/// workspace and token-state tables, and a fixed 1 GiB for cuBLAS workspaces, graphs and the
/// allocator's slack.
pub fn reserve_bytes(
    hidden: usize,
    inter: usize,
    vocab: usize,
    max_num_tokens: usize,
    max_seqs: usize,
) -> usize {
    // Saturating: a size past the address space is refused by the budget, not wrapped.
    let m = |xs: &[usize]| xs.iter().fold(1usize, |a, &d| a.saturating_mul(d));
    let act = m(&[max_num_tokens, (24 * hidden).saturating_add(3 * inter), 4]);
    let logits = m(&[2, max_seqs, vocab, 4]);
    let sampler = m(&[max_seqs, vocab, 4 + 4 + 1]);
    act.saturating_add(logits).saturating_add(sampler).saturating_add(1 << 30)
}

/// KV blocks for `utilization` of a card with `free` of `total` bytes free now.
pub fn kv_budget(
    free: usize,
    total: usize,
    utilization: f64,
    reserve: usize,
    bytes_per_block: usize,
    block_size: usize,
    max_seq_len: usize,
) -> Result<KvBudget> {
    if !(utilization > 0.0 && utilization <= 1.0) {
        return Err(Error::Msg(format!("--gpu-memory-utilization {utilization}: must be in (0, 1]")));
    }
    // Of the card, (1 - utilization) stays unused; what is already taken (weights, context)
    // counts against the rest.
    let keep_free = ((1.0 - utilization) * total as f64) as usize;
    let avail = free.saturating_sub(keep_free).saturating_sub(reserve);
    let blocks = avail / bytes_per_block.max(1);
    let need = max_seq_len.div_ceil(block_size.max(1));
    if blocks < need {
        return Err(Error::Msg(format!(
            "KV cache: {:.2} GiB left for it ({:.2} GiB free of {:.2} GiB, utilization {utilization}, \
             {:.2} GiB reserved for activations) holds {blocks} blocks of {block_size} tokens, but one \
             sequence of --max-model-len {max_seq_len} needs {need}: lower --max-model-len or \
             --max-num-seqs, or raise --gpu-memory-utilization",
            avail as f64 / GIB,
            free as f64 / GIB,
            total as f64 / GIB,
            reserve as f64 / GIB,
        )));
    }
    Ok(KvBudget { blocks, bytes_per_block, free_bytes: free, total_bytes: total, reserve_bytes: reserve })
}

pub const GIB: f64 = (1u64 << 30) as f64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_takes_the_utilization_share_after_weights_and_reserve() {
        let g = 1usize << 30;
        // 100 GiB card, 80 GiB free after the weights, 0.9 utilization: 70 GiB usable, minus 2 reserved.
        let b = kv_budget(80 * g, 100 * g, 0.9, 2 * g, 1 << 20, 16, 4096).expect("fits");
        assert_eq!(b.blocks, 68 * 1024);
    }

    #[test]
    fn refuses_when_one_sequence_does_not_fit() {
        let g = 1usize << 30;
        let e = kv_budget(3 * g, 100 * g, 0.9, g, 1 << 30, 16, 4096).expect_err("too small").to_string();
        assert!(e.contains("--max-model-len 4096") && e.contains("needs 256"), "{e}");
        assert!(kv_budget(g, g, 1.5, 0, 1, 1, 1).is_err());
    }
}
