//! Paged attention. K/V of every token live in a per-layer cache of `num_slots` rows
//! (`[num_slots, kv_heads, head_dim]`); a sequence's block table maps its position `p` to slot
//! `table[p / block_size] * block_size + p % block_size`. Prefill, decode and mixed batches all
//! run through the same function: each query token attends causally to its own sequence's
//! cached positions (within the sliding window, if any). GQA: query head `h` reads KV head
//! `h / (heads / kv_heads)`.

use rayon::prelude::*;

use crate::runtime::ForwardBatch;
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
pub fn write_kv(k: &Tensor, v: &Tensor, slots: &[usize], k_cache: &mut [f32], v_cache: &mut [f32]) -> Result<()> {
    let (t, w) = k.dims2("write_kv")?;
    if v.shape() != k.shape() || slots.len() != t {
        return Err(Error::shape("write_kv", format!("k {:?}, v {:?}, {} slots", k.shape(), v.shape(), slots.len())));
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
pub fn paged_attention(q: &Tensor, k_cache: &[f32], v_cache: &[f32], batch: &ForwardBatch, p: &AttnParams) -> Result<Tensor> {
    let (t, qw) = q.dims2("paged_attention")?;
    let (hd, nkv) = (p.head_dim, p.num_kv_heads);
    if qw != p.num_heads * hd || t != batch.num_tokens() || p.num_heads % nkv != 0 {
        return Err(Error::shape("paged_attention", format!("q {:?} for {} tokens, {p:?}", q.shape(), batch.num_tokens())));
    }
    let group = p.num_heads / nkv;
    let kvw = nkv * hd;
    let qs = q.f32s()?;
    let bs = batch.block_size;
    let mut out = vec![0f32; t * qw];
    out.par_chunks_mut(qw).enumerate().try_for_each(|(ti, orow)| -> Result<()> {
        let seq = &batch.seqs[batch.token_seq[ti]];
        let pos = batch.positions[ti];
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let n = pos + 1 - lo;
        let slot = |j: usize| -> Result<usize> {
            let b = seq.block_table.get(j / bs).ok_or_else(|| Error::KvCache(format!("position {j} has no block")))?;
            Some(*b as usize * bs + j % bs)
                .filter(|s| (s + 1) * kvw <= k_cache.len().min(v_cache.len()))
                .ok_or_else(|| Error::KvCache(format!("position {j}: block {b} is outside the cache")))
        };
        let slots: Vec<usize> = (lo..=pos).map(slot).collect::<Result<_>>()?;
        let mut scores = vec![0f32; n];
        for h in 0..p.num_heads {
            let qh = &qs[ti * qw + h * hd..ti * qw + (h + 1) * hd];
            let kh = h / group;
            for (s, &sl) in scores.iter_mut().zip(&slots) {
                let k = &k_cache[sl * kvw + kh * hd..sl * kvw + (kh + 1) * hd];
                let mut d = 0f32;
                for i in 0..hd {
                    d += qh[i] * k[i];
                }
                *s = d * p.scale;
                if let Some(cap) = p.softcap {
                    *s = (*s / cap).tanh() * cap;
                }
            }
            super::softmax_inplace(&mut scores);
            let oh = &mut orow[h * hd..(h + 1) * hd];
            for (&w, &sl) in scores.iter().zip(&slots) {
                let v = &v_cache[sl * kvw + kh * hd..sl * kvw + (kh + 1) * hd];
                for i in 0..hd {
                    oh[i] += w * v[i];
                }
            }
        }
        Ok(())
    })?;
    Tensor::from_f32(out, &[t, qw])
}
