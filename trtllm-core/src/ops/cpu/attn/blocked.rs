//! AVX-512 kernels for head_dim 64 and 128 with the group's q rows and outputs held in
//! registers: scores for 4 positions at a time (4 K rows, one `hadd` reduction per 4 scores
//! instead of a horizontal sum per score), and `P V` with the group's output rows as register
//! accumulators (each V row loaded once for all heads of the group).

// Register arrays are indexed by const loop counters on purpose (they unroll into registers).
#![allow(clippy::needless_range_loop)]

use super::Task;
use std::arch::x86_64::*;

/// # Safety
/// As `super::generic::task_avx512`; head_dim is 64 or 128.
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
                _mm_storeu_ps(t.scores.add((g0 + g) * n + jj), s4);
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
                *t.scores.add((g0 + g) * n + jj) = _mm_cvtss_f32(v) * t.scale;
            }
            jj += 1;
        }
        for g in 0..G {
            let row = std::slice::from_raw_parts_mut(t.scores.add((g0 + g) * n), n);
            if let Some(cap) = t.softcap {
                for v in row.iter_mut() {
                    *v = (*v / cap).tanh() * cap;
                }
            }
            t.softmax(g0 + g, row, super::super::simd::avx512::exp_shift_sum);
        }
        let mut o = [[_mm512_setzero_ps(); HV]; G];
        for jj in 0..n {
            let vr = t.vc.add(t.slot(t.lo + jj) * t.kvw + t.koff);
            let mut pb = [_mm512_setzero_ps(); G];
            for g in 0..G {
                pb[g] = _mm512_set1_ps(*t.scores.add((g0 + g) * n + jj));
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
