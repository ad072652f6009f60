//! Attention of packed query tokens over the paged KV cache, on the pool.
//!
//! One task = one query token x one KV head: the `heads / kv_heads` query heads that share the
//! KV head are done together, so each cached K and V row is loaded once for the whole group.
//! Scores go to a per-thread scratch buffer (reused across calls: no allocation per step once
//! warm); softmax uses the vectorized exp; the output is `sum_j p_j v_j` with SIMD axpy. Tasks
//! are dealt round-robin to the threads (causal prefill: later tokens cost more).
//!
//! This file checks the batch and deals the tasks; the kernels are per ISA tier: `generic` (one
//! body, instantiated for scalar, AVX2 and AVX-512) and `blocked` (AVX-512, head_dim 64 and 128,
//! q and outputs in registers).

use std::cell::RefCell;

use super::pool::{self, SendPtr};
use super::{isa, Isa};
use crate::batch::ForwardBatch;
use crate::ops::AttnParams;
use crate::{Error, Result};

#[cfg(target_arch = "x86_64")]
mod blocked;
mod generic;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Work (multiply-adds) below which attention runs on one thread: a decode step at a context
/// of ~200 takes ~8 us on one core with the blocked kernel, where splitting 3 KV heads over 2
/// threads saves little more than the handshake costs.
const PARALLEL_MIN_FMAS: usize = 256 * 1024;

/// `out` `[t, heads * head_dim]` (overwritten) from q `[t, heads * head_dim]`; `sinks` (one
/// logit per head) join each softmax's denominator. Checks every block table and slot first, so
/// the kernels index without checks.
pub fn paged_attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    batch: &ForwardBatch,
    p: &AttnParams,
    sinks: Option<&[f32]>,
    out: &mut [f32],
) -> Result<()> {
    let t = batch.num_tokens();
    let (hd, nh, nkv) = (p.head_dim, p.num_heads, p.num_kv_heads);
    let qw = nh * hd;
    let kvw = nkv * hd;
    let bs = batch.block_size;
    assert!(q.len() >= t * qw && out.len() >= t * qw, "paged_attention: buffer sizes");
    if bs == 0 {
        return Err(Error::KvCache("block size 0".into()));
    }
    if sinks.is_some_and(|s| s.len() != nh) {
        return Err(Error::shape(
            "paged_attention",
            format!("{} sinks for {nh} heads", sinks.map_or(0, |s| s.len())),
        ));
    }
    let cache_slots = k_cache.len().min(v_cache.len()) / kvw.max(1);
    let mut work = 0usize;
    for ti in 0..t {
        let seq = batch
            .seqs
            .get(
                *batch
                    .token_seq
                    .get(ti)
                    .ok_or_else(|| Error::KvCache(format!("token {ti} has no sequence")))?,
            )
            .ok_or_else(|| Error::KvCache(format!("token {ti}: unknown sequence")))?;
        let pos =
            *batch.positions.get(ti).ok_or_else(|| Error::KvCache(format!("token {ti} has no position")))?;
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for bi in lo / bs..=pos / bs {
            let j = (bi * bs).max(lo);
            let b = seq
                .block_table
                .get(bi)
                .ok_or_else(|| Error::KvCache(format!("position {j} has no block")))?;
            if (*b as usize + 1) * bs > cache_slots {
                // The last slot this token reads in the block must exist.
                let last = (*b as usize) * bs + (pos.min(bi * bs + bs - 1) % bs);
                if last >= cache_slots {
                    return Err(Error::KvCache(format!("position {j}: block {b} is outside the cache")));
                }
            }
        }
        work += (pos + 1 - lo) * qw * 2;
    }
    let op = SendPtr(out.as_mut_ptr());
    let ntask = t * nkv;
    let parts = if work < PARALLEL_MIN_FMAS { 1 } else { (4 * pool::num_threads()).min(ntask) };
    pool::run_parts(parts, &|part, nt| {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let mut task = part;
            while task < ntask {
                let (ti, kh) = (task / nkv, task % nkv);
                // SAFETY: the checks above cover every slot the task reads; the task writes
                // only token ti's output heads of KV head kh (disjoint across tasks).
                unsafe { run_task(q, k_cache, v_cache, batch, p, sinks, ti, kh, op.get(), &mut s) };
                task += nt;
            }
        })
    });
    Ok(())
}

/// # Safety
/// The block tables of `ti`'s sequence cover its attended positions within the caches (checked
/// by the caller); `out` is valid for token ti's row.
#[allow(clippy::too_many_arguments)]
unsafe fn run_task(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    batch: &ForwardBatch,
    p: &AttnParams,
    sinks: Option<&[f32]>,
    ti: usize,
    kh: usize,
    out: *mut f32,
    s: &mut Vec<f32>,
) {
    let (hd, nh, nkv) = (p.head_dim, p.num_heads, p.num_kv_heads);
    let group = nh / nkv;
    let seq = &batch.seqs[batch.token_seq[ti]];
    let pos = batch.positions[ti];
    let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
    let n = pos + 1 - lo;
    if s.len() < group * n {
        s.resize(group * n, 0.0);
    }
    let task = Task {
        q: q[ti * nh * hd + kh * group * hd..].as_ptr(),
        kc: kc.as_ptr(),
        vc: vc.as_ptr(),
        table: &seq.block_table,
        bs: batch.block_size,
        kvw: nkv * hd,
        koff: kh * hd,
        hd,
        group,
        lo,
        n,
        scale: p.scale,
        softcap: p.softcap,
        sinks: sinks.map(|s| s[kh * group..].as_ptr()),
        // SAFETY: token ti's row, heads kh*group .. (kh+1)*group.
        out: unsafe { out.add(ti * nh * hd + kh * group * hd) },
        scores: s.as_mut_ptr(),
    };
    // SAFETY: the caller's contract covers every index the task computes.
    unsafe {
        match isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if hd == 64 || hd == 128 => blocked::task(&task),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => generic::task_avx512(&task),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => generic::task_avx2(&task),
            _ => generic::task_scalar(&task),
        }
    }
}

struct Task<'a> {
    q: *const f32,
    kc: *const f32,
    vc: *const f32,
    table: &'a [u32],
    bs: usize,
    kvw: usize,
    koff: usize,
    hd: usize,
    group: usize,
    lo: usize,
    n: usize,
    scale: f32,
    softcap: Option<f32>,
    /// The sink logits of this task's `group` heads.
    sinks: Option<*const f32>,
    out: *mut f32,
    /// `group * n` scores.
    scores: *mut f32,
}

impl Task<'_> {
    /// Softmax of one head's `row` of scores in place, with head `g`'s sink logit (if any) in
    /// the denominator.
    ///
    /// # Safety
    /// `sinks`, when set, is valid for `group` values.
    #[inline(always)]
    unsafe fn softmax(&self, g: usize, row: &mut [f32], expsum: unsafe fn(*mut f32, usize, f32) -> f32) {
        // SAFETY: the caller's contract.
        let sink = self.sinks.map(|s| unsafe { *s.add(g) });
        let mut m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if let Some(s) = sink {
            m = m.max(s);
        }
        // SAFETY: row is a valid slice.
        let mut sum = unsafe { expsum(row.as_mut_ptr(), row.len(), m) };
        if let Some(s) = sink {
            sum += (s - m).exp();
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }

    #[inline(always)]
    fn slot(&self, j: usize) -> usize {
        self.table[j / self.bs] as usize * self.bs + j % self.bs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::SeqStep;

    /// Naive f64 attention of every token (causal, window, softcap, GQA) over caches laid out
    /// by `batch`.
    fn reference(q: &[f32], kc: &[f32], vc: &[f32], batch: &ForwardBatch, p: &AttnParams) -> Vec<f64> {
        let (hd, nh, nkv) = (p.head_dim, p.num_heads, p.num_kv_heads);
        let (qw, kvw, bs) = (nh * hd, nkv * hd, batch.block_size);
        let mut out = vec![0f64; batch.num_tokens() * qw];
        for ti in 0..batch.num_tokens() {
            let seq = &batch.seqs[batch.token_seq[ti]];
            let pos = batch.positions[ti];
            let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let slot = |j: usize| seq.block_table[j / bs] as usize * bs + j % bs;
            for h in 0..nh {
                let kh = h / (nh / nkv);
                let qh = &q[ti * qw + h * hd..][..hd];
                let mut s: Vec<f64> = (lo..=pos)
                    .map(|j| {
                        let k = &kc[slot(j) * kvw + kh * hd..][..hd];
                        let mut d = qh.iter().zip(k).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>()
                            * p.scale as f64;
                        if let Some(c) = p.softcap {
                            d = (d / c as f64).tanh() * c as f64;
                        }
                        d
                    })
                    .collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                s.iter_mut().for_each(|v| *v = (*v - m).exp());
                let z: f64 = s.iter().sum();
                for (i, j) in (lo..=pos).enumerate() {
                    let v = &vc[slot(j) * kvw + kh * hd..][..hd];
                    for d in 0..hd {
                        out[ti * qw + h * hd + d] += s[i] / z * v[d] as f64;
                    }
                }
            }
        }
        out
    }

    /// The blocked head_dim 64/128 kernels (and the generic ones) against the f64 reference:
    /// every group size up to 5, prefill + decode, windows and soft-capping.
    #[test]
    fn matches_reference_for_all_head_dims_and_groups() {
        let mut seed = 1u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        for hd in [64usize, 128, 32, 8] {
            for (nh, nkv) in [(1, 1), (4, 2), (9, 3), (8, 2), (5, 1), (10, 2)] {
                for (window, softcap) in [(None, None), (Some(5), None), (None, Some(2.0f32))] {
                    let bs = 4;
                    let blocks: Vec<u32> = vec![3, 0, 5, 1, 2, 4, 6];
                    let (start, len) = (9usize, 7usize); // 9 cached + 7 new tokens, then 1
                    let kvw = nkv * hd;
                    let kc: Vec<f32> = (0..8 * bs * kvw).map(|_| rnd()).collect();
                    let vc: Vec<f32> = (0..8 * bs * kvw).map(|_| rnd()).collect();
                    let toks = vec![1u32; len];
                    for (st, l) in [(start, len), (start + len, 1)] {
                        let step = [SeqStep { tokens: &toks[..l], start_pos: st, block_table: &blocks }];
                        let batch = ForwardBatch::new(&step, bs, true).expect("batch");
                        let q: Vec<f32> = (0..l * nh * hd).map(|_| rnd()).collect();
                        let p = AttnParams {
                            num_heads: nh,
                            num_kv_heads: nkv,
                            head_dim: hd,
                            scale: (hd as f32).powf(-0.5),
                            window,
                            softcap,
                        };
                        let mut out = vec![f32::NAN; l * nh * hd];
                        paged_attention(&q, &kc, &vc, &batch, &p, None, &mut out).expect("attention");
                        let r = reference(&q, &kc, &vc, &batch, &p);
                        let num: f64 = out.iter().zip(&r).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
                        let den: f64 = r.iter().map(|b| b * b).sum();
                        let e = (num / den).sqrt();
                        assert!(e <= 1e-5, "hd {hd} heads {nh}/{nkv} window {window:?} softcap {softcap:?} q_len {l}: error {e:e}");
                    }
                }
            }
        }
    }

    /// `cargo test --release -p trtllm-core --lib attn_timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn attn_timing() {
        let (nh, nkv, hd, bs) = (9, 3, 64, 16);
        for ctx in [12usize, 44, 76, 300] {
            let blocks: Vec<u32> = (0..(ctx as u32).div_ceil(16)).collect();
            let step = [SeqStep { tokens: &[1], start_pos: ctx - 1, block_table: &blocks }];
            let batch = ForwardBatch::new(&step, bs, false).expect("batch");
            let kc: Vec<f32> =
                (0..blocks.len() * bs * nkv * hd).map(|i| ((i % 97) as f32 - 48.0) * 0.01).collect();
            let q: Vec<f32> = (0..nh * hd).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
            let p = AttnParams {
                num_heads: nh,
                num_kv_heads: nkv,
                head_dim: hd,
                scale: 0.125,
                window: None,
                softcap: None,
            };
            let mut out = vec![0f32; nh * hd];
            for _ in 0..100 {
                paged_attention(&q, &kc, &kc, &batch, &p, None, &mut out).expect("attn");
            }
            let t = std::time::Instant::now();
            let n = 5000;
            for _ in 0..n {
                paged_attention(&q, &kc, &kc, &batch, &p, None, &mut out).expect("attn");
            }
            println!("ctx {ctx}: {:.2} us/call", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
    }
}
