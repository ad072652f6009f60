//! Paged attention. K/V of every token live in a per-layer cache of `num_slots` rows
//! (`[num_slots, kv_heads, head_dim]`); a sequence's block table maps its position `p` to slot
//! `table[p / block_size] * block_size + p % block_size`. Prefill, decode and mixed batches all
//! run through the same function: each query token attends causally to its own sequence's
//! cached positions (within the sliding window, if any). GQA: query head `h` reads KV head
//! `h / (heads / kv_heads)`.

use crate::batch::ForwardBatch;
use crate::{Error, Result, Tensor};

#[derive(Clone, Copy, Debug)]
pub struct AttnParams {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplier of q.k (usually `head_dim^-0.5`).
    pub scale: f32,
    /// Attend to at most this many most recent positions (the token's own included).
    pub window: Option<usize>,
    /// `tanh(s / cap) * cap` on the scaled scores (Gemma 2).
    pub softcap: Option<f32>,
}

/// Write this step's k, v `[t, kv_heads * head_dim]` into their cache slots.
pub fn write_kv(
    k: &Tensor,
    v: &Tensor,
    slots: &[usize],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
) -> Result<()> {
    let (t, w) = k.dims2("write_kv")?;
    if v.shape() != k.shape() || slots.len() != t {
        return Err(Error::shape(
            "write_kv",
            format!("k {:?}, v {:?}, {} slots", k.shape(), v.shape(), slots.len()),
        ));
    }
    let (ks, vs) = (k.f32s()?, v.f32s()?);
    for (i, &s) in slots.iter().enumerate() {
        let dst = s * w..(s + 1) * w;
        if dst.end > k_cache.len().min(v_cache.len()) {
            return Err(Error::KvCache(format!("slot {s} out of range")));
        }
        k_cache[dst.clone()].copy_from_slice(&ks[i * w..(i + 1) * w]);
        v_cache[dst].copy_from_slice(&vs[i * w..(i + 1) * w]);
    }
    Ok(())
}

/// Attention of every query token in `batch` over its sequence's cached keys and values.
/// q `[t, heads * head_dim]` -> `[t, heads * head_dim]`.
pub fn paged_attention(
    q: &Tensor,
    k_cache: &[f32],
    v_cache: &[f32],
    batch: &ForwardBatch,
    p: &AttnParams,
) -> Result<Tensor> {
    paged_attention_sinks(q, k_cache, v_cache, batch, p, None)
}

/// `paged_attention` with attention sinks: a learned logit per head (`sinks` `[heads]`) joins
/// each softmax's denominator and attends to nothing (GPT-OSS).
pub fn paged_attention_sinks(
    q: &Tensor,
    k_cache: &[f32],
    v_cache: &[f32],
    batch: &ForwardBatch,
    p: &AttnParams,
    sinks: Option<&[f32]>,
) -> Result<Tensor> {
    let (t, qw) = q.dims2("paged_attention")?;
    let (hd, nkv) = (p.head_dim, p.num_kv_heads);
    if qw != p.num_heads * hd || t != batch.num_tokens() || nkv == 0 || !p.num_heads.is_multiple_of(nkv) {
        return Err(Error::shape(
            "paged_attention",
            format!("q {:?} for {} tokens, {p:?}", q.shape(), batch.num_tokens()),
        ));
    }
    let _t = super::cpu::prof::scope(|| "paged_attention".to_string());
    // CPU: SIMD kernels on the persistent pool (`cpu::attn`), scratch reused across calls.
    let mut out = vec![0f32; t * qw];
    super::cpu::attn::paged_attention(q.f32s()?, k_cache, v_cache, batch, p, sinks, &mut out)?;
    Tensor::from_f32(out, &[t, qw])
}

// ---- CUDA dispatch: flash prefill kernel or the per-(token, head) paged kernel -------------

/// A batch is prefill-shaped (flash kernel) when one of its sequences brings this many query tokens.
pub(crate) const FLASH_MIN_Q: usize = 16;

/// The attention of `qkv_attention` on the GPU, after K/V of this step are in the cache. Uses the
/// flash prefill kernel (64- or 128-query tiles sharing K/V tiles in shared memory, tensor cores) when
/// some sequence has >= FLASH_MIN_Q query tokens and the kernel supports the operands (bf16,
/// head_dim 64/96/128, sm_80+), unless `TRTLLM_NO_FLASH=1`; else the paged kernel (every decode
/// step, f32, other head sizes). The flash kernel then runs every sequence of the batch, decode
/// rows of a mixed batch included.
pub(crate) fn cuda_attention(
    batch: &ForwardBatch,
    gpu: &std::sync::Arc<trtllm_kernels::Gpu>,
    dt: trtllm_kernels::Dt,
    a: &trtllm_kernels::launch::AttnArgs<'_>,
) -> std::result::Result<(), trtllm_kernels::GpuError> {
    use trtllm_kernels::flash::{self, FlashArgs, FlashSeq};
    let prefill = batch.seqs.iter().any(|s| s.q_len >= FLASH_MIN_Q);
    let off = !crate::env::knobs().flash;
    let covered = batch.seqs.iter().map(|s| s.q_len).sum::<usize>() == a.tokens;
    if prefill && !off && covered && flash::eligible(gpu, dt, a) {
        // The kernel takes each sequence's (non-empty) rows at consecutive positions, as
        // ForwardBatch::new builds them; anything else stays on the paged kernel.
        let mut seqs = Vec::with_capacity(batch.seqs.len());
        for (seq, s) in batch.seqs.iter().enumerate() {
            let pos = batch.positions.get(s.q_start..s.q_start + s.q_len).unwrap_or(&[]);
            let first_pos = pos.first().copied().unwrap_or(0);
            if s.q_len == 0
                || pos.len() != s.q_len
                || pos.iter().enumerate().any(|(i, &p)| p != first_pos + i)
            {
                return trtllm_kernels::launch::paged_attention(gpu, dt, a);
            }
            seqs.push(FlashSeq {
                q_start: s.q_start,
                q_len: s.q_len,
                first_pos,
                seq,
                bt_len: s.block_table.len(),
            });
        }
        let row = a.kv_heads * a.head_dim * trtllm_kernels::launch::Fp8Kv::elem_size(a.fp8, dt);
        let slots = |p: &trtllm_kernels::launch::DevPtr<'_>| p.buf.len().saturating_sub(p.off) / row.max(1);
        let fa = FlashArgs {
            attn: a,
            seqs: &seqs,
            num_seqs: batch.seqs.len(),
            cache_slots: slots(&a.k_cache).min(slots(&a.v_cache)),
        };
        return flash::flash_prefill(gpu, dt, &fa);
    }
    trtllm_kernels::launch::paged_attention(gpu, dt, a)
}
