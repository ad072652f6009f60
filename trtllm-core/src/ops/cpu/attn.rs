//! Attention of packed query tokens over the paged KV cache, on the pool.
//!
//! One task = one query token x one KV head: the `heads / kv_heads` query heads that share the
//! KV head are done together, so each cached K and V row is loaded once for the whole group.
//! Scores go to a per-thread scratch buffer (reused across calls: no allocation per step once
//! warm); softmax uses the vectorized exp; the output is `sum_j p_j v_j` with SIMD axpy. Tasks
//! are dealt round-robin to the threads (causal prefill: later tokens cost more).

use std::cell::RefCell;

use super::pool::{self, SendPtr};
use super::{isa, Isa};
use crate::ops::AttnParams;
use crate::runtime::ForwardBatch;
use crate::{Error, Result};

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Work (multiply-adds) below which attention runs on one thread.
const PARALLEL_MIN_FMAS: usize = 16 * 1024;

/// `out` `[t, heads * head_dim]` (overwritten) from q `[t, heads * head_dim]`.
/// Checks every block table and slot first, so the kernels index without checks.
pub fn paged_attention(q: &[f32], k_cache: &[f32], v_cache: &[f32], batch: &ForwardBatch, p: &AttnParams, out: &mut [f32]) -> Result<()> {
    let t = batch.num_tokens();
    let (hd, nh, nkv) = (p.head_dim, p.num_heads, p.num_kv_heads);
    let qw = nh * hd;
    let kvw = nkv * hd;
    let bs = batch.block_size;
    assert!(q.len() >= t * qw && out.len() >= t * qw, "paged_attention: buffer sizes");
    if bs == 0 {
        return Err(Error::KvCache("block size 0".into()));
    }
    let cache_slots = k_cache.len().min(v_cache.len()) / kvw.max(1);
    let mut work = 0usize;
    for ti in 0..t {
        let seq = batch
            .seqs
            .get(*batch.token_seq.get(ti).ok_or_else(|| Error::KvCache(format!("token {ti} has no sequence")))?)
            .ok_or_else(|| Error::KvCache(format!("token {ti}: unknown sequence")))?;
        let pos = *batch.positions.get(ti).ok_or_else(|| Error::KvCache(format!("token {ti} has no position")))?;
        let lo = p.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for bi in lo / bs..=pos / bs {
            let j = (bi * bs).max(lo);
            let b = seq.block_table.get(bi).ok_or_else(|| Error::KvCache(format!("position {j} has no block")))?;
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
    let min = std::env::var("TRTLLM_ATTN_MIN").ok().and_then(|v| v.parse().ok()).unwrap_or(PARALLEL_MIN_FMAS);
    let parts = if work < min { 1 } else { (4 * pool::num_threads()).min(ntask) };
    pool::run_parts(parts, &|part, nt| {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let mut task = part;
            while task < ntask {
                let (ti, kh) = (task / nkv, task % nkv);
                // SAFETY: the checks above cover every slot the task reads; the task writes
                // only token ti's output heads of KV head kh (disjoint across tasks).
                unsafe { run_task(q, k_cache, v_cache, batch, p, ti, kh, op.get(), &mut s) };
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
unsafe fn run_task(q: &[f32], kc: &[f32], vc: &[f32], batch: &ForwardBatch, p: &AttnParams, ti: usize, kh: usize, out: *mut f32, s: &mut Vec<f32>) {
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
        // SAFETY: token ti's row, heads kh*group .. (kh+1)*group.
        out: unsafe { out.add(ti * nh * hd + kh * group * hd) },
        s: s.as_mut_ptr(),
    };
    // SAFETY: the caller's contract covers every index the task computes.
    unsafe {
        match isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => task_avx512(&task),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => task_avx2(&task),
            _ => task_scalar(&task),
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
    out: *mut f32,
    /// `group * n` scores.
    s: *mut f32,
}

impl Task<'_> {
    #[inline(always)]
    fn slot(&self, j: usize) -> usize {
        self.table[j / self.bs] as usize * self.bs + j % self.bs
    }
}

macro_rules! task_body {
    ($name:ident, $($feat:literal)?, $dot:path, $axpy:path, $expsum:path) => {
        /// # Safety
        /// Every pointer in `t` is valid for what the task touches.
        $(#[target_feature(enable = $feat)])?
        unsafe fn $name(t: &Task<'_>) {
            // SAFETY (whole body): slots come from the checked block table; q/out/s cover
            // group heads x hd and group x n.
            unsafe {
                let (hd, n) = (t.hd, t.n);
                for jj in 0..n {
                    let kr = t.kc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
                    for g in 0..t.group {
                        let mut d = $dot(t.q.add(g * hd), kr, hd) * t.scale;
                        if let Some(cap) = t.softcap {
                            d = (d / cap).tanh() * cap;
                        }
                        *t.s.add(g * n + jj) = d;
                    }
                }
                for g in 0..t.group {
                    let row = std::slice::from_raw_parts_mut(t.s.add(g * n), n);
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum = $expsum(row.as_mut_ptr(), n, m);
                    let inv = 1.0 / sum;
                    for v in row.iter_mut() {
                        *v *= inv;
                    }
                    std::ptr::write_bytes(t.out.add(g * hd), 0, hd);
                }
                for jj in 0..n {
                    let vr = t.vc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
                    for g in 0..t.group {
                        $axpy(t.out.add(g * hd), *t.s.add(g * n + jj), vr, hd);
                    }
                }
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
task_body!(
    task_avx512,
    "avx512f,avx512bw,avx512vl,fma,f16c",
    super::simd::avx512::dot,
    super::simd::avx512::axpy,
    super::simd::avx512::exp_shift_sum
);
#[cfg(target_arch = "x86_64")]
task_body!(task_avx2, "avx2,fma,f16c", super::simd::avx2::dot, super::simd::avx2::axpy, super::simd::avx2::exp_shift_sum);

/// # Safety
/// Pointers valid for `n` elements.
unsafe fn sc_dot(a: *const f32, b: *const f32, n: usize) -> f32 {
    // SAFETY: per the contract.
    unsafe { super::simd::scalar::dot(std::slice::from_raw_parts(a, n), std::slice::from_raw_parts(b, n)) }
}
/// # Safety
/// Pointers valid for `n` elements.
unsafe fn sc_axpy(y: *mut f32, a: f32, x: *const f32, n: usize) {
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe { *y.add(i) += a * *x.add(i) };
    }
}
/// # Safety
/// `x` valid for `n` elements.
unsafe fn sc_expsum(x: *mut f32, n: usize, max: f32) -> f32 {
    let mut s = 0.0;
    for i in 0..n {
        // SAFETY: per the contract.
        unsafe {
            let e = (*x.add(i) - max).exp();
            *x.add(i) = e;
            s += e;
        }
    }
    s
}
task_body!(task_scalar, , sc_dot, sc_axpy, sc_expsum);
