//! Verification against a synthetic runner: a fixed "model" over a vocabulary of 6 whose logits
//! depend on the last token and its position, sampled at temperature 1 (and with top-k / a
//! penalty), with deliberately poor drafts. The distribution of the first three emitted tokens
//! under speculation must match plain sampling's (two-sample chi-square over disjoint seeds);
//! a verifier that accepted drafts unchecked fails the same test.

use super::super::super::model_runner::{SampleInput, ScheduledSeq};
use super::super::super::sampling::sample_host_row;
use super::super::super::{Sampler, SamplingParams};
use super::verify;
use crate::Tensor;

const V: usize = 6;
const PROMPT: [u32; 2] = [1, 4];
const LEN: usize = 3;

fn logits(context: &[u32]) -> Vec<f32> {
    let (t, p) = (*context.last().expect("context") as f32, context.len() as f32);
    (0..V).map(|v| 2.0 * (1.3 * v as f32 + 0.7 * t + 0.3 * p).sin()).collect()
}

fn input<'a>(p: &'a SamplingParams, output: &'a [u32], sampler: &'a Sampler) -> SampleInput<'a> {
    SampleInput { params: p, prompt: &PROMPT, output, sampler }
}

/// `LEN` tokens sampled one by one.
fn plain(p: &SamplingParams, seed: u64) -> Vec<u32> {
    let sampler = Sampler::new(Some(seed));
    let mut out: Vec<u32> = vec![];
    while out.len() < LEN {
        let ctx = [&PROMPT[..], &out].concat();
        let x = input(p, &out, &sampler);
        out.push(sample_host_row(&logits(&ctx), &x).token);
    }
    out
}

/// `LEN` tokens (at least) with K = 2 drafts per step: `last + 1`, then `last + 2` (mod V).
/// `unchecked`: emit the drafts as if all were accepted (a broken verifier, the control).
fn speculative(p: &SamplingParams, seed: u64, unchecked: bool) -> Vec<u32> {
    let sampler = Sampler::new(Some(seed));
    let mut out: Vec<u32> = vec![];
    while out.len() < LEN {
        let ctx = [&PROMPT[..], &out].concat();
        let last = *ctx.last().expect("context");
        let drafts = [(last + 1) % V as u32, (last + 2) % V as u32];
        if unchecked {
            out.extend(drafts);
            continue;
        }
        let chunk = [&[last][..], &drafts].concat();
        let mut rows = vec![];
        for j in 0..=drafts.len() {
            rows.extend(logits(&[&ctx[..], &drafts[..j]].concat()));
        }
        let t = Tensor::from_f32(rows, &[drafts.len() + 1, V]).expect("tensor");
        let seq = ScheduledSeq {
            id: 0,
            tokens: &chunk,
            start_pos: ctx.len() - 1,
            block_table: &[],
            sample: Some(input(p, &out, &sampler)),
            draft: drafts.len(),
        };
        let r = verify(None, &t, &[seq]).expect("verify");
        let acc: Vec<u32> = r.accepted[0].iter().map(|s| s.token).collect();
        assert_eq!(acc[..], drafts[..acc.len()], "accepted tokens are the drafts' prefix");
        out.extend(acc);
        out.push(r.sampled[0].as_ref().expect("sampled").token);
    }
    out
}

fn cell(t: &[u32]) -> usize {
    t[..LEN].iter().fold(0, |a, &x| a * V + x as usize)
}

/// Two-sample chi-square statistic over cells (pooling cells under 10 observations) and its
/// 0.1% critical value (Wilson-Hilferty).
fn chi_square(a: &[usize], b: &[usize]) -> (f64, f64) {
    let (mut stat, mut df, mut pool) = (0.0, 0i64, (0usize, 0usize));
    let mut add = |x: usize, y: usize| {
        stat += ((x as f64 - y as f64).powi(2)) / (x + y) as f64;
        df += 1;
    };
    for (&x, &y) in a.iter().zip(b) {
        if x + y < 10 {
            pool = (pool.0 + x, pool.1 + y);
        } else {
            add(x, y);
        }
    }
    if pool.0 + pool.1 > 0 {
        add(pool.0, pool.1);
    }
    let k = (df - 1).max(1) as f64;
    let z = 3.09;
    (stat, k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3))
}

#[test]
fn rejection_sampling_preserves_the_distribution() {
    let t1 = SamplingParams { temperature: 1.0, ..Default::default() };
    let topk = SamplingParams { temperature: 0.8, top_k: 4, ..Default::default() };
    let pen = SamplingParams {
        temperature: 1.2,
        repetition_penalty: 1.5,
        frequency_penalty: 0.5,
        ..Default::default()
    };
    const N: u64 = 6000;
    for p in [t1, topk, pen] {
        let (mut a, mut b, mut bad) = (vec![0; V.pow(3)], vec![0; V.pow(3)], vec![0; V.pow(3)]);
        for s in 0..N {
            a[cell(&plain(&p, s))] += 1;
            b[cell(&speculative(&p, N + s, false))] += 1;
            bad[cell(&speculative(&p, N + s, true))] += 1;
            if s < 300 {
                // The same seed emits the same tokens: each row samples as plain decoding would.
                assert_eq!(speculative(&p, s, false)[..LEN], plain(&p, s)[..], "seed {s}");
            }
        }
        let (stat, crit) = chi_square(&a, &b);
        assert!(stat < crit, "{p:?}: speculative vs plain chi-square {stat:.1} >= {crit:.1}");
        let (stat, crit) = chi_square(&a, &bad);
        assert!(stat > crit, "{p:?}: the control (drafts unchecked) passed: {stat:.1} < {crit:.1}");
    }
}
