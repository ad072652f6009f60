//! Expert routing of one token on the host: its router logits -> its `(expert, weight)` picks, by
//! the rules of `MoeOptions` (softmax / sigmoid / top-k-then-softmax scores, group-limited choice,
//! a score-correction bias for the choice only, renormalization, a routed scaling factor). The
//! oracle of the GPU's `moe_route` kernel (`ops/moe.rs`).

use crate::config::{MoeOptions, MoeScoring};
use crate::{Error, Result};

/// What `route` needs besides the logits and the correction bias.
#[derive(Clone, Copy, Debug)]
pub struct Router<'a> {
    pub opts: &'a MoeOptions,
    pub top_k: usize,
    pub renormalize: bool,
}

impl Router<'_> {
    /// Checks that the grouping fits `experts`.
    pub fn check(&self, experts: usize) -> Result<()> {
        if let Some((g, tg)) = self.opts.groups {
            if g == 0 || !experts.is_multiple_of(g) || tg == 0 || tg > g || self.top_k > tg * (experts / g) {
                return Err(Error::Msg(format!(
                    "MoE routing: {experts} experts in n_group {g} with topk_group {tg} cannot pick {} experts",
                    self.top_k
                )));
            }
        }
        Ok(())
    }

    /// The top-k `(expert, weight)` pairs of one token, best first; `correction` is
    /// `e_score_correction_bias` `[experts]` (DeepSeek-V3).
    pub fn route(&self, logits: &[f32], correction: Option<&[f32]>) -> Vec<(usize, f32)> {
        let e = logits.len();
        let scores: Vec<f32> = match self.opts.scoring {
            MoeScoring::Softmax => {
                let mut p = logits.to_vec();
                super::softmax_inplace(&mut p);
                p
            }
            MoeScoring::Sigmoid => logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect(),
            MoeScoring::TopKSoftmax => logits.to_vec(),
        };
        // What the choice ranks: the scores plus the correction bias, outside the allowed groups -inf.
        let mut choice: Vec<f32> = match correction {
            Some(b) => scores.iter().zip(b).map(|(s, b)| s + b).collect(),
            None => scores.clone(),
        };
        if let Some((g, tg)) = self.opts.groups {
            let per = e / g;
            let group_score = |gi: usize| {
                let mut v: Vec<f32> = choice[gi * per..(gi + 1) * per].to_vec();
                v.sort_by(|a, b| b.total_cmp(a));
                if self.opts.group_top2 {
                    v.iter().take(2).sum::<f32>()
                } else {
                    v[0]
                }
            };
            let gs: Vec<f32> = (0..g).map(group_score).collect();
            let keep = top(&gs, tg);
            for gi in (0..g).filter(|gi| !keep.contains(gi)) {
                choice[gi * per..(gi + 1) * per].fill(f32::NEG_INFINITY);
            }
        }
        let picked = top(&choice, self.top_k);
        let mut w: Vec<f32> = picked.iter().map(|&j| scores[j]).collect();
        if self.opts.scoring == MoeScoring::TopKSoftmax {
            super::softmax_inplace(&mut w);
        } else if self.renormalize {
            let sum: f32 = w.iter().sum();
            w.iter_mut().for_each(|x| *x /= sum);
        }
        if let Some(s) = self.opts.routed_scaling {
            w.iter_mut().for_each(|x| *x *= s as f32);
        }
        picked.into_iter().zip(w).collect()
    }
}

/// Indices of the `k` largest values, largest first (ties: the lower index).
fn top(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[b].total_cmp(&v[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_limited_sigmoid_with_correction_and_scaling() {
        // 4 experts in 2 groups; group 1 wins on its top-2 sum with the bias, so expert 0 (the best
        // single score) is excluded.
        let opts = MoeOptions {
            scoring: MoeScoring::Sigmoid,
            groups: Some((2, 1)),
            group_top2: true,
            routed_scaling: Some(2.0),
            ..Default::default()
        };
        let bias = [0.0, -1.0, 0.3, 0.3];
        let r = Router { opts: &opts, top_k: 2, renormalize: true };
        let logits = [3.0f32, -3.0, 0.5, 0.0];
        let got = r.route(&logits, Some(&bias));
        let s = |x: f32| 1.0 / (1.0 + (-x).exp());
        let (a, b) = (s(0.5), s(0.0));
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2, 3]);
        assert!((got[0].1 - 2.0 * a / (a + b)).abs() < 1e-6 && (got[1].1 - 2.0 * b / (a + b)).abs() < 1e-6);
    }

    #[test]
    fn topk_then_softmax() {
        let opts = MoeOptions { scoring: MoeScoring::TopKSoftmax, ..Default::default() };
        let r = Router { opts: &opts, top_k: 2, renormalize: false };
        let got = r.route(&[1.0, 3.0, 2.0], None);
        let z = 1.0 + (-1.0f32).exp();
        assert_eq!((got[0].0, got[1].0), (1, 2));
        assert!((got[0].1 - 1.0 / z).abs() < 1e-6 && (got[1].1 - (-1.0f32).exp() / z).abs() < 1e-6);
    }
}
