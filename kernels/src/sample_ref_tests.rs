//! The CPU twin's own tests (no GPU): the GPU test (tests/gpu_sampling.rs) holds the kernel to it.

use super::*;

fn params(t: f32) -> SampleParams {
    SampleParams { temperature: t, seed: 7, ..Default::default() }
}

fn one(x: &[f32], p: &SampleParams) -> Sampled {
    sample(&Row { logits: x, params: p, counts: None, prompt_mask: None, bias_ids: &[], bias: &[] })
}

/// Deterministic pseudo-random logits in (-s, s), never 0.
fn logits(n: usize, seed: u64, s: f32) -> Vec<f32> {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            let u = ((z >> 40) as f32 + 0.5) / (1u64 << 24) as f32;
            (u * 2.0 - 1.0) * s
        })
        .collect()
}

#[test]
fn philox_known_answers() {
    // Random123's kat_vectors
    assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
    assert_eq!(philox4x32_10([u32::MAX; 4], [u32::MAX; 2]), [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]);
    assert_eq!(
        philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
    );
}

#[test]
fn exp_neg_is_accurate_and_keys_are_monotone() {
    assert_eq!(exp_neg(0.0), 1.0);
    assert_eq!(exp_neg(-0.0), 1.0);
    assert_eq!(exp_neg(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_neg(f32::NAN), 0.0);
    let mut x = -86.99f32;
    while x < 0.0 {
        let (got, want) = (exp_neg(x) as f64, (x as f64).exp());
        assert!(((got - want) / want).abs() < 4e-7, "exp_neg({x}) = {got}, want {want}");
        x += 0.0137;
    }
    let v = [f32::NEG_INFINITY, -3.5, -1e-30, -0.0, 0.0, 1e-30, 2.0, f32::INFINITY];
    for w in v.windows(2) {
        assert!(key(w[0]) <= key(w[1]));
    }
    assert_eq!(key(-0.0), key(0.0));
    assert_eq!(key(f32::NAN), key(f32::NEG_INFINITY));
}

#[test]
fn greedy_top_k_1_and_tiny_top_p_are_argmax() {
    for s in 0..50u64 {
        let x = logits(1000, s, 3.0);
        let best = x.iter().enumerate().fold(0, |b, (i, &v)| if v > x[b] { i } else { b }) as i32;
        assert_eq!(one(&x, &params(0.0)).token, best);
        for c in 0..5 {
            let p = SampleParams { top_k: 1, counter: c, seed: s, ..params(1.0) };
            assert_eq!(one(&x, &p).token, best);
            let p = SampleParams { top_p: 1e-6, counter: c, seed: s, ..params(1.5) };
            assert_eq!(one(&x, &p).token, best);
        }
    }
    // ties: the lowest index
    assert_eq!(one(&[1.0, 3.0, 3.0, f32::NAN], &params(0.0)).token, 1);
}

#[test]
fn seeded_draws_are_deterministic() {
    let x = logits(500, 3, 2.0);
    let p = |seed, counter| SampleParams { seed, counter, top_k: 50, top_p: 0.9, ..params(1.0) };
    let a: Vec<i32> = (0..100).map(|c| one(&x, &p(11, c)).token).collect();
    let b: Vec<i32> = (0..100).map(|c| one(&x, &p(11, c)).token).collect();
    let c: Vec<i32> = (0..100).map(|c| one(&x, &p(12, c)).token).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let distinct: std::collections::HashSet<_> = a.iter().collect();
    assert!(distinct.len() > 10, "counters should spread the draws: {distinct:?}");
    // counter bits above 32 matter
    assert_ne!(draw(1, 5), draw(1, 5 + (1 << 32)));
}

#[test]
fn penalties_match_apply_penalties() {
    // runner/logits.rs's hand-computed example (trtllm-core): prompt [3], output [0, 0, 1].
    let p = SampleParams {
        presence_penalty: 1.0,
        frequency_penalty: 0.5,
        repetition_penalty: 2.0,
        ..params(0.0)
    };
    let (mut counts, mut mask) = (vec![0i32; 4], vec![0u8; 4]);
    slot_init(&mut counts, &mut mask, &[3], &[0, 0, 1]);
    assert_eq!((counts.as_slice(), mask.as_slice()), (&[2, 1, 0, 0][..], &[0, 0, 0, 1][..]));
    let raw = [2.0f32, -1.0, 1.0, 0.5];
    let got: Vec<f32> = (0..4).map(|i| penalize(raw[i], counts[i], mask[i] != 0, &p)).collect();
    // token 0: (2 - 1 - 1) / 2; token 1: (-1 - 1.5) * 2; token 3 (prompt): 0.5 / 2.
    assert_eq!(got, vec![0.0, -5.0, 1.0, 0.25]);
    let row = Row {
        logits: &raw,
        params: &p,
        counts: Some(&counts),
        prompt_mask: Some(&mask),
        bias_ids: &[],
        bias: &[],
    };
    assert_eq!(sample(&row).token, 2, "greedy over the penalized row");
    // only the repetition penalty: prompt token 0 halves 2 -> 1, tying token 2: the lower index wins
    let p = SampleParams { repetition_penalty: 2.0, ..params(0.0) };
    slot_init(&mut counts, &mut mask, &[0], &[]);
    let row = Row {
        logits: &raw,
        params: &p,
        counts: Some(&counts),
        prompt_mask: Some(&mask),
        bias_ids: &[],
        bias: &[],
    };
    assert_eq!(sample(&row).token, 0);
}

#[test]
fn min_p_keeps_tokens_near_the_max() {
    // e = 1, 0.607, 0.0498, 0.0000454: min_p 0.1 keeps tokens 0 and 1
    let x = [0.0f32, -0.5, -3.0, -10.0];
    let mut seen = [0usize; 4];
    for c in 0..2000 {
        seen[one(&x, &SampleParams { min_p: 0.1, counter: c, ..params(1.0) }).token as usize] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0, "{seen:?}");
}

#[test]
fn logit_bias_and_min_tokens() {
    let x = logits(100, 5, 1.0);
    let best = one(&x, &params(0.0)).token;
    let r = |ids: &[i32], vals: &[f32], p: &SampleParams| {
        sample(&Row { logits: &x, params: p, counts: None, prompt_mask: None, bias_ids: ids, bias: vals })
            .token
    };
    for c in 0..20 {
        assert_eq!(r(&[42, 1000, -3], &[100.0, 5.0, 5.0], &SampleParams { counter: c, ..params(1.0) }), 42);
    }
    // min_tokens: EOS (here the argmax) suppressed through the bias list
    let (mut ids, mut vals) = (vec![best], vec![1.0]);
    suppress(&mut ids, &mut vals, &[best, 99]);
    assert_eq!((ids.len(), vals[0]), (2, f32::NEG_INFINITY));
    assert_ne!(r(&ids, &vals, &params(0.0)), best);
    for c in 0..200 {
        let t = r(&ids, &vals, &SampleParams { counter: c, ..params(1.0) });
        assert!(t != best && t != 99);
    }
    // everything masked: the raw argmax
    let all: Vec<i32> = (0..100).collect();
    assert_eq!(r(&all, &[f32::NEG_INFINITY; 100], &params(1.0)), best);
}

#[test]
fn logprobs_are_the_raw_log_softmax() {
    let x = [0.0f32, 1.0, 2.0, 2.0];
    let p = SampleParams { logprobs: 3, repetition_penalty: 3.0, ..params(0.0) };
    let s = one(&x, &p);
    let z: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
    assert_eq!(s.token, 2);
    assert!((s.logprob.unwrap_or(0.0) as f64 - (2.0 - z.ln())).abs() < 1e-6);
    assert_eq!(s.top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![2, 3, 1]);
    assert!((s.top[2].1 as f64 - (1.0 - z.ln())).abs() < 1e-6);
}

#[test]
fn count_tokens_skips_rows_without_a_slot() {
    let mut counts = vec![0i32; 2 * 5];
    let ps = [
        SampleParams { slot: 1, ..params(0.0) },
        SampleParams { slot: -1, ..params(0.0) },
        SampleParams { slot: 0, ..params(0.0) },
        SampleParams { slot: 1, ..params(0.0) },
    ];
    count_tokens(&mut counts, 5, &ps, &[4, 4, 9, 4]);
    assert_eq!(counts, vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
}

/// The filtered softmax in f64 by sorting (an independent statement of the filters).
pub(crate) fn expected_probs(x: &[f32], p: &SampleParams) -> Vec<f64> {
    let t = p.temperature as f64;
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = x.iter().map(|&v| ((v as f64 - m) / t).exp()).collect();
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[b].total_cmp(&x[a]));
    let mut keep = vec![true; x.len()];
    if p.top_k > 0 && (p.top_k as usize) < x.len() {
        let kth = x[idx[p.top_k as usize - 1]];
        (0..x.len()).for_each(|i| keep[i] &= x[i] >= kth);
    }
    if p.top_p < 1.0 {
        let mk: f64 = (0..x.len()).filter(|&i| keep[i]).map(|i| e[i]).sum();
        let mut acc = 0.0;
        let mut cut = f32::NEG_INFINITY;
        for &i in idx.iter().filter(|&&i| keep[i]) {
            acc += e[i];
            if acc >= p.top_p as f64 * mk {
                cut = x[i];
                break;
            }
        }
        (0..x.len()).for_each(|i| keep[i] &= x[i] >= cut);
    }
    if p.min_p > 0.0 {
        (0..x.len()).for_each(|i| keep[i] &= e[i] >= p.min_p as f64);
    }
    let tot: f64 = (0..x.len()).filter(|&i| keep[i]).map(|i| e[i]).sum();
    (0..x.len()).map(|i| if keep[i] { e[i] / tot } else { 0.0 }).collect()
}

/// Pearson's statistic of `counts` against `probs` (cells of probability 0 must stay empty).
pub(crate) fn chi_square(counts: &[usize], probs: &[f64]) -> f64 {
    let n: usize = counts.iter().sum();
    let mut chi = 0.0;
    for (&c, &pr) in counts.iter().zip(probs) {
        if pr == 0.0 {
            assert_eq!(c, 0, "a filtered-out token was drawn");
        } else {
            let want = pr * n as f64;
            chi += (c as f64 - want).powi(2) / want;
        }
    }
    chi
}

#[test]
fn empirical_distribution_matches_the_filtered_softmax() {
    let x = [1.3f32, -0.2, 0.9, 2.1, -1.7, 0.4, 1.8, -0.6];
    let cases = [
        params(1.0),
        SampleParams { top_k: 5, ..params(0.8) },
        SampleParams { top_p: 0.8, ..params(1.2) },
        SampleParams { min_p: 0.15, ..params(1.0) },
        SampleParams { top_k: 6, top_p: 0.9, min_p: 0.05, ..params(0.7) },
    ];
    for p in cases {
        let probs = expected_probs(&x, &p);
        let mut counts = [0usize; 8];
        for c in 0..20_000 {
            counts[one(&x, &SampleParams { counter: c, ..p }).token as usize] += 1;
        }
        let chi = chi_square(&counts, &probs);
        eprintln!("chi^2 {chi:.2} {counts:?}");
        // 7 degrees of freedom at most: p = 0.001 at 24.3
        assert!(chi < 24.3, "{p:?}: chi^2 {chi:.1}, counts {counts:?}, probs {probs:?}");
    }
}

#[test]
fn token_mask_keeps_exactly_the_allowed_tokens() {
    // 70 tokens, a mask of two words: tokens 64.. are past the mask and never allowed.
    let mut row: Vec<f32> = (0..70).map(|i| i as f32).collect();
    let mask = [0b1010u32 | (1 << 31), u32::MAX];
    super::token_mask(&mut row, &mask);
    for (t, x) in row.iter().enumerate() {
        let allowed = t == 1 || t == 3 || t == 31 || (32..64).contains(&t);
        assert_eq!(x.is_finite(), allowed, "token {t}");
        if allowed {
            assert_eq!(*x, t as f32);
        }
    }
}
