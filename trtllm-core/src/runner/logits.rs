//! Host-side logit processing for serving: penalties, log-probabilities of the sampled token
//! and its top alternatives, then the [`Sampler`].

use std::collections::HashMap;

use crate::ops::log_softmax;
use crate::runner::SamplingParams;

/// The log-probability of a sampled token and the top alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    pub token: u32,
    pub logprob: f32,
    /// The `k` most likely tokens, best first.
    pub top: Vec<(u32, f32)>,
}

/// Apply presence / frequency penalties (generated tokens) and the repetition penalty (prompt
/// and generated tokens) to one row of logits.
pub fn apply_penalties(row: &mut [f32], prompt: &[u32], output: &[u32], p: &SamplingParams) {
    if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in output {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &c) in &counts {
            if let Some(l) = row.get_mut(t as usize) {
                *l -= p.presence_penalty + p.frequency_penalty * c as f32;
            }
        }
    }
    if p.repetition_penalty != 1.0 {
        let mut seen = vec![false; row.len()];
        for &t in prompt.iter().chain(output) {
            if let Some(s) = seen.get_mut(t as usize) {
                *s = true;
            }
        }
        for (l, _) in row.iter_mut().zip(&seen).filter(|(_, &s)| s) {
            *l = if *l > 0.0 { *l / p.repetition_penalty } else { *l * p.repetition_penalty };
        }
    }
}

/// Log-probability of `token` under `raw` logits and the `k` best alternatives.
pub fn token_logprob(raw: &[f32], token: u32, k: usize) -> TokenLogprob {
    let lp = log_softmax(raw);
    let logprob = lp.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    let mut idx: Vec<usize> = (0..lp.len()).collect();
    let k = k.min(lp.len());
    if k > 0 && k < idx.len() {
        idx.select_nth_unstable_by(k - 1, |&a, &b| lp[b].total_cmp(&lp[a]));
    }
    idx.truncate(k);
    idx.sort_by(|&a, &b| lp[b].total_cmp(&lp[a]).then(a.cmp(&b)));
    TokenLogprob { token, logprob, top: idx.into_iter().map(|i| (i as u32, lp[i])).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_and_logprobs() {
        let p = SamplingParams {
            presence_penalty: 1.0,
            frequency_penalty: 0.5,
            repetition_penalty: 2.0,
            ..Default::default()
        };
        let mut row = vec![2.0, -1.0, 1.0, 0.5];
        apply_penalties(&mut row, &[3], &[0, 0, 1], &p);
        // token 0: (2 - 1 - 1) / 2; token 1: (-1 - 1.5) * 2; token 3 (prompt): 0.5 / 2.
        assert_eq!(row, vec![0.0, -5.0, 1.0, 0.25]);
        let t = token_logprob(&[0.0, 1.0, 2.0], 1, 2);
        assert_eq!(t.top.iter().map(|x| x.0).collect::<Vec<_>>(), vec![2, 1]);
        let z: f32 = [0.0f32, 1.0, 2.0].iter().map(|x| x.exp()).sum();
        assert!((t.logprob - (1.0 - z.ln())).abs() < 1e-6);
    }
}
