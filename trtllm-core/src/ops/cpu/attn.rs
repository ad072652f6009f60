//! Attention of packed query tokens over the paged KV cache, on the pool.
//!
//! One task = one query token x one KV head: the `heads / kv_heads` query heads that share the
//! KV head are done together, so each cached K and V row is loaded once for the whole group.
//! Scores go to a per-thread scratch buffer (reused across calls: no allocation per step once
//! warm); softmax uses the vectorized exp; the output is `sum_j p_j v_j` with SIMD axpy. Tasks
//! are dealt round-robin to the threads (causal prefill: later tokens cost more).

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;

use super::pool::{self, SendPtr};
use super::{isa, Isa};
use crate::batch::ForwardBatch;
use crate::ops::AttnParams;
use crate::{Error, Result};

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Work (multiply-adds) below which attention runs on one thread: a decode step at a context
/// of ~200 takes ~8 us on one core with the blocked kernel, where splitting 3 KV heads over 2
/// threads saves little more than the handshake costs.
const PARALLEL_MIN_FMAS: usize = 256 * 1024;

/// `out` `[t, heads * head_dim]` (overwritten) from q `[t, heads * head_dim]`.
/// Checks every block table and slot first, so the kernels index without checks.
pub fn paged_attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    batch: &ForwardBatch,
    p: &AttnParams,
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
unsafe fn run_task(
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    batch: &ForwardBatch,
    p: &AttnParams,
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
        // SAFETY: token ti's row, heads kh*group .. (kh+1)*group.
        out: unsafe { out.add(ti * nh * hd + kh * group * hd) },
        s: s.as_mut_ptr(),
    };
    // SAFETY: the caller's contract covers every index the task computes.
    unsafe {
        match isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 if hd == 64 || hd == 128 => blocked::task(&task),
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
            // SAFETY: slots come from the checked block table; q/out/s cover
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
task_body!(
    task_avx2,
    "avx2,fma,f16c",
    super::simd::avx2::dot,
    super::simd::avx2::axpy,
    super::simd::avx2::exp_shift_sum
);

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

/// AVX-512 kernels for head_dim 64 and 128 with the group's q rows and outputs held in
/// registers: scores for 4 positions at a time (4 K rows, one `hadd` reduction per 4 scores
/// instead of a horizontal sum per score), and `P V` with the group's output rows as register
/// accumulators (each V row loaded once for all heads of the group).
#[cfg(target_arch = "x86_64")]
mod blocked {
    use super::Task;
    use std::arch::x86_64::*;

    /// # Safety
    /// As `task_avx512`; head_dim is 64 or 128.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    pub unsafe fn task(t: &Task<'_>) {
        // SAFETY: contract forwarded; each chunk of heads stays inside the group.
        unsafe {
            let mut g0 = 0;
            while g0 < t.group {
                let left = t.group - g0;
                match (t.hd, left) {
                    (64, 1) => chunk::<4, 1>(t, g0),
                    (64, 2) => chunk::<4, 2>(t, g0),
                    (64, _) => chunk::<4, 3>(t, g0),
                    (_, 1) => chunk::<8, 1>(t, g0),
                    (_, _) => chunk::<8, 2>(t, g0),
                }
                g0 += if t.hd == 64 { left.min(3) } else { left.min(2) };
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn reduce4(a: __m512, b: __m512, c: __m512, d: __m512) -> __m128 {
        let half = |v: __m512| {
            _mm256_add_ps(
                _mm512_castps512_ps256(v),
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
            )
        };
        let abcd = _mm256_hadd_ps(_mm256_hadd_ps(half(a), half(b)), _mm256_hadd_ps(half(c), half(d)));
        _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps::<1>(abcd))
    }

    /// Heads `g0 .. g0 + G` of the group; head_dim = 16 * HV.
    ///
    /// # Safety
    /// As `task`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,fma,f16c")]
    unsafe fn chunk<const HV: usize, const G: usize>(t: &Task<'_>, g0: usize) {
        // SAFETY: q/out rows g0..g0+G of the group, scores g*n..g*n+n, and K/V
        // rows at checked slots.
        unsafe {
            let (hd, n) = (t.hd, t.n);
            let mut qv = [[_mm512_setzero_ps(); HV]; G];
            for g in 0..G {
                for h in 0..HV {
                    qv[g][h] = _mm512_loadu_ps(t.q.add((g0 + g) * hd + 16 * h));
                }
            }
            let scale = _mm_set1_ps(t.scale);
            let mut jj = 0;
            while jj + 4 <= n {
                let mut acc = [[_mm512_setzero_ps(); 4]; G];
                for c in 0..4 {
                    let kr = t.kc.add(t.slot(t.lo + jj + c) * t.kvw + t.koff);
                    for h in 0..HV {
                        let kv = _mm512_loadu_ps(kr.add(16 * h));
                        for g in 0..G {
                            acc[g][c] = _mm512_fmadd_ps(qv[g][h], kv, acc[g][c]);
                        }
                    }
                }
                for g in 0..G {
                    let s4 = _mm_mul_ps(reduce4(acc[g][0], acc[g][1], acc[g][2], acc[g][3]), scale);
                    _mm_storeu_ps(t.s.add((g0 + g) * n + jj), s4);
                }
                jj += 4;
            }
            while jj < n {
                let kr = t.kc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
                let mut acc = [_mm512_setzero_ps(); G];
                for h in 0..HV {
                    let kv = _mm512_loadu_ps(kr.add(16 * h));
                    for g in 0..G {
                        acc[g] = _mm512_fmadd_ps(qv[g][h], kv, acc[g]);
                    }
                }
                for g in 0..G {
                    // Same operation order as the 4-wide path: sum, then scale.
                    let v = reduce4(acc[g], _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps());
                    *t.s.add((g0 + g) * n + jj) = _mm_cvtss_f32(v) * t.scale;
                }
                jj += 1;
            }
            for g in 0..G {
                let row = std::slice::from_raw_parts_mut(t.s.add((g0 + g) * n), n);
                if let Some(cap) = t.softcap {
                    for v in row.iter_mut() {
                        *v = (*v / cap).tanh() * cap;
                    }
                }
                let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum = super::super::simd::avx512::exp_shift_sum(row.as_mut_ptr(), n, m);
                let inv = 1.0 / sum;
                for v in row.iter_mut() {
                    *v *= inv;
                }
            }
            let mut o = [[_mm512_setzero_ps(); HV]; G];
            for jj in 0..n {
                let vr = t.vc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
                let mut pb = [_mm512_setzero_ps(); G];
                for g in 0..G {
                    pb[g] = _mm512_set1_ps(*t.s.add((g0 + g) * n + jj));
                }
                for h in 0..HV {
                    let vv = _mm512_loadu_ps(vr.add(16 * h));
                    for g in 0..G {
                        o[g][h] = _mm512_fmadd_ps(pb[g], vv, o[g][h]);
                    }
                }
            }
            for g in 0..G {
                for h in 0..HV {
                    _mm512_storeu_ps(t.out.add((g0 + g) * hd + 16 * h), o[g][h]);
                }
            }
        }
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
                        paged_attention(&q, &kc, &vc, &batch, &p, &mut out).expect("attention");
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
                paged_attention(&q, &kc, &kc, &batch, &p, &mut out).expect("attn");
            }
            let t = std::time::Instant::now();
            let n = 5000;
            for _ in 0..n {
                paged_attention(&q, &kc, &kc, &batch, &p, &mut out).expect("attn");
            }
            println!("ctx {ctx}: {:.2} us/call", t.elapsed().as_secs_f64() * 1e6 / n as f64);
        }
    }
}
