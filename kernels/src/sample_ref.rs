//! The CPU twin of the batched GPU sampler (`kernels/cuda/sampling_batched.cu`, launchers in
//! [`crate::launch::sample`] (`launch/sampling.rs`)): the same function in plain Rust, no CUDA needed, so the engine and
//! the tests can use it as the oracle. Given the same inputs it returns the same token bit for bit
//! (every float step is an IEEE-rounded op done in the same order on both sides, every sum of
//! probability mass is an exact integer sum), though it finds the thresholds by sorting where the
//! kernel uses radix selects.
//!
//! # The function, per row
//! 1. `l_i` = the raw logit, penalized as trtllm-core's `runner/logits.rs::apply_penalties`
//!    does, from the row's slot of the device token state (`counts[slot][i]`: times token `i`
//!    was generated, `prompt_mask[slot][i]`: `i` is in the prompt): `l -= presence +
//!    frequency * count` when `count > 0` (and either is nonzero), then, when
//!    `repetition_penalty != 1` and the token is in prompt or output,
//!    `l = l > 0 ? l / rp : l * rp`. Then the row's logit bias is added
//!    (`l += bias`; ids outside the vocabulary ignored; ids must be unique within a row).
//!    `min_tokens` is the caller's: fold the EOS ids into the bias list with `-inf` while the row
//!    has generated fewer than `min_tokens` tokens ([`suppress`] does it).
//! 2. `(m, i*)` = argmax of `l` (NaN never wins, ties to the lowest index). When no `l` is above
//!    `-inf` the token is the argmax of the raw row (0 if it is all NaN), as the `argmax` kernel.
//!    When `temperature` is 0 (or not > 0) or `m = +inf`, the token is `i*` (greedy).
//! 3. Else `e_i = exp_neg((l_i - m) / T)` ([`exp_neg`]; NaN logits count as `-inf`) and the mass
//!    `q_i = trunc(e_i * 2^40)` (u64). Filters, all applied (a token is kept when it passes all):
//!    - top-k (`0 < top_k < vocab`): keys `>=` the k-th largest key of `l` ([`key`], monotone in
//!      the value): ties at the boundary are all kept, as HF's and vLLM's threshold top-k;
//!    - top-p (`top_p < 1`): over the tokens that pass top-k (the distribution renormalized to
//!      them, as HF/vLLM and the host `Sampler`), the largest key `t` whose mass
//!      `sum(q_i : key_i >= t)` is `>= max(1, (M_k * trunc(top_p * 2^32)) >> 32)`, `M_k` the
//!      top-k set's mass; ties at the boundary kept;
//!    - min-p (`min_p > 0`): `e_i >= min_p` (`e` of the max is 1: min-p relative to the max prob).
//! 4. `M` = the kept mass, `r` = word 0 of Philox4x32-10 with key `seed` (lo, hi) and counter
//!    `(counter lo, counter hi, 0, 0)`, target `(M * r) >> 32`; the token is the first kept token
//!    in index order whose inclusive prefix mass exceeds the target. The token depends only on
//!    the row, its parameters, seed and counter: not on the batch around it.
//! 5. Logprobs, when `logprobs >= 0`: the chosen token's log-probability under the raw (pre-
//!    penalty, pre-temperature) softmax, and the `logprobs` (<= 20) best raw tokens (value desc,
//!    ties by lowest index) with theirs; top slots past them hold id -1 and `-inf`.

// `!(a > b)` on floats is deliberate throughout: it is the kernel's NaN handling, op for op.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

/// One row's sampling parameters, as the kernel reads them (`#[repr(C)]`, 56 bytes: the same
/// layout as `struct SampleParams` in sampling_batched.cu; upload a `[rows]` array of them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleParams {
    pub seed: u64,
    /// The RNG counter: the index of the token being generated in this sequence.
    pub counter: u64,
    /// 0 = greedy.
    pub temperature: f32,
    /// 1 = off.
    pub top_p: f32,
    /// 0 = off.
    pub min_p: f32,
    /// 1 = off.
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// 0 = off.
    pub top_k: i32,
    /// Row of the token-state tables (`counts`, `prompt_mask`); < 0: no state (no penalties, not
    /// counted).
    pub slot: i32,
    /// < 0: no logprobs; else the chosen token's logprob and this many top alternatives (<= 20).
    pub logprobs: i32,
    pub pad: i32,
}

impl Default for SampleParams {
    fn default() -> Self {
        SampleParams {
            seed: 0,
            counter: 0,
            temperature: 0.0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            top_k: 0,
            slot: -1,
            logprobs: -1,
            pad: 0,
        }
    }
}

impl SampleParams {
    /// The bytes to upload for a `[rows]` array.
    pub fn as_bytes(params: &[SampleParams]) -> Vec<u8> {
        let mut out = Vec::with_capacity(std::mem::size_of_val(params));
        for p in params {
            out.extend_from_slice(&p.seed.to_le_bytes());
            out.extend_from_slice(&p.counter.to_le_bytes());
            for f in [
                p.temperature,
                p.top_p,
                p.min_p,
                p.repetition_penalty,
                p.presence_penalty,
                p.frequency_penalty,
            ] {
                out.extend_from_slice(&f.to_le_bytes());
            }
            for i in [p.top_k, p.slot, p.logprobs, p.pad] {
                out.extend_from_slice(&i.to_le_bytes());
            }
        }
        out
    }
    fn has_penalties(&self) -> bool {
        self.repetition_penalty != 1.0 || self.presence_penalty != 0.0 || self.frequency_penalty != 0.0
    }
}

/// Most top alternatives per row.
pub const MAX_TOP: usize = 20;

/// Philox4x32-10 (Random123): `key` = (lo, hi) of the seed, `ctr` the 128-bit counter.
pub fn philox4x32_10(mut ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut k0, mut k1) = (key[0], key[1]);
    for _ in 0..10 {
        let p0 = 0xD251_1F53u64 * ctr[0] as u64;
        let p1 = 0xCD9E_8D57u64 * ctr[2] as u64;
        let (hi0, lo0, hi1, lo1) = ((p0 >> 32) as u32, p0 as u32, (p1 >> 32) as u32, p1 as u32);
        ctr = [hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0];
        k0 = k0.wrapping_add(0x9E37_79B9);
        k1 = k1.wrapping_add(0xBB67_AE85);
    }
    ctr
}

/// The sampler's 32-bit draw for (seed, counter).
pub fn draw(seed: u64, counter: u64) -> u32 {
    philox4x32_10([counter as u32, (counter >> 32) as u32, 0, 0], [seed as u32, (seed >> 32) as u32])[0]
}

/// NaN -> -inf, -0 -> +0.
fn clean(v: f32) -> f32 {
    if v.is_nan() {
        f32::NEG_INFINITY
    } else if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// The monotone u32 key of a logit: `a > b` iff `key(a) > key(b)` (NaN as -inf, -0 as +0).
pub fn key(v: f32) -> u32 {
    let b = clean(v).to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// `exp(x)` for `x <= 0` from IEEE-rounded ops and fused multiply-adds only (the kernel does the
/// same ops, so the values are bit-identical); 0 below -87 (and for NaN).
pub fn exp_neg(x: f32) -> f32 {
    if !(x > -87.0) {
        return 0.0;
    }
    let c = f32::from_bits;
    let k = (x * c(0x3fb8aa3b)).round_ties_even();
    let r = k.mul_add(-c(0x3f317200), x);
    let r = k.mul_add(-c(0x35bfbe8e), r);
    let z = r * r;
    let mut p = c(0x39506967);
    for coef in [0x3ab743ce, 0x3c088908, 0x3d2aa9c1, 0x3e2aaaaa, 0x3f000000] {
        p = p.mul_add(r, c(coef));
    }
    let y = p.mul_add(z, r) + 1.0;
    y * c(((k as i32 + 127) as u32) << 23)
}

fn prob_e(l: f32, m: f32, t: f32) -> f32 {
    exp_neg((clean(l) - m) / t)
}

fn fixq(e: f32) -> u64 {
    (e * 1_099_511_627_776.0) as u64
}

fn mul_shr32(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) >> 32) as u64
}

/// One logit through the penalties (trtllm-core's `runner/logits.rs::apply_penalties`, per token).
pub fn penalize(l: f32, count: i32, in_prompt: bool, p: &SampleParams) -> f32 {
    let mut l = l;
    if (p.presence_penalty != 0.0 || p.frequency_penalty != 0.0) && count > 0 {
        l -= p.presence_penalty + p.frequency_penalty * count as f32;
    }
    if p.repetition_penalty != 1.0 && (in_prompt || count > 0) {
        l = if l > 0.0 { l / p.repetition_penalty } else { l * p.repetition_penalty };
    }
    l
}

/// `(value, index)` argmax: NaN never wins, ties to the lowest index; None when all NaN.
fn argmax(v: impl Iterator<Item = f32>) -> Option<(f32, usize)> {
    let mut best: Option<(f32, usize)> = None;
    for (i, x) in v.enumerate() {
        if !x.is_nan() && best.is_none_or(|(b, _)| x > b) {
            best = Some((x, i));
        }
    }
    best
}

/// What the sampler returns for one row.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub token: i32,
    /// The chosen token's raw logprob (when asked for).
    pub logprob: Option<f32>,
    /// The best raw tokens with their logprobs, best first.
    pub top: Vec<(i32, f32)>,
    /// How close the draw came to a decision boundary, relative to the kept mass (1 when the
    /// token was not drawn): the distance of the target from the chosen token's mass interval,
    /// and of the top-p mass from its need. The twin matches the kernel exactly; a consumer whose
    /// sums are not exact (another implementation) can skip rows under a tolerance.
    pub margin: f64,
}

/// Per-row inputs of [`sample`]: the raw logits (bf16 rows as their f32 values), the row's
/// token state (its slot's rows of counts / prompt mask, when it has one) and its logit bias.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    pub logits: &'a [f32],
    pub params: &'a SampleParams,
    pub counts: Option<&'a [i32]>,
    pub prompt_mask: Option<&'a [u8]>,
    pub bias_ids: &'a [i32],
    pub bias: &'a [f32],
}

/// The kept mass of `v` (0 when filtered out).
fn kept_q(v: f32, thr: u32, m: f32, t: f32, min_p: f32) -> u64 {
    if key(v) < thr {
        return 0;
    }
    let e = prob_e(v, m, t);
    if min_p > 0.0 && !(e >= min_p) {
        0
    } else {
        fixq(e)
    }
}

/// Sample one row (the kernel's function; see the module docs).
pub fn sample(row: &Row<'_>) -> Sampled {
    let p = row.params;
    let x = row.logits;
    let pen = p.has_penalties() && row.counts.is_some() && row.prompt_mask.is_some();
    let mut l: Vec<f32> = match (pen, row.counts, row.prompt_mask) {
        (true, Some(c), Some(m)) => {
            x.iter().enumerate().map(|(i, &v)| penalize(v, c[i], m[i] != 0, p)).collect()
        }
        _ => x.to_vec(),
    };
    for (&id, &b) in row.bias_ids.iter().zip(row.bias) {
        if let Some(v) = usize::try_from(id).ok().and_then(|i| l.get_mut(i)) {
            *v += b;
        }
    }
    let raw_arg = argmax(x.iter().copied()).map_or(0, |(_, i)| i);
    let mut margin = 1.0f64;
    let token = match argmax(l.iter().copied()) {
        None => raw_arg,
        Some((m, _)) if m == f32::NEG_INFINITY => raw_arg,
        Some((m, i)) if !(p.temperature > 0.0) || m == f32::INFINITY => i,
        Some((m, mi)) => {
            let (tok, mg) = draw_filtered(&l, p, m, mi);
            margin = mg;
            tok
        }
    };
    let (logprob, top) =
        if p.logprobs >= 0 { logprobs(x, token, p.logprobs as usize) } else { (None, vec![]) };
    Sampled { token: token as i32, logprob, top, margin }
}

fn draw_filtered(l: &[f32], p: &SampleParams, m: f32, mi: usize) -> (usize, f64) {
    let n = l.len();
    let t = p.temperature;
    let keys: Vec<u32> = l.iter().map(|&v| key(v)).collect();
    let mut thr = 0u32;
    if p.top_k > 0 && (p.top_k as usize) < n {
        let mut s = keys.clone();
        let k = p.top_k as usize;
        s.select_nth_unstable_by(k - 1, |a, b| b.cmp(a));
        thr = s[k - 1];
    }
    let mut margin = 1.0f64;
    if p.top_p < 1.0 {
        // the top-k set by key, best first; mass per distinct key
        let mut set: Vec<(u32, u64)> =
            (0..n).filter(|&i| keys[i] >= thr).map(|i| (keys[i], fixq(prob_e(l[i], m, t)))).collect();
        set.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
        let mk: u64 = set.iter().map(|s| s.1).sum();
        let frac = (p.top_p.max(0.0) * 4_294_967_296.0) as u64;
        let need = mul_shr32(mk, frac).max(1);
        let (mut acc, mut i) = (0u64, 0);
        while i < set.len() {
            let k = set[i].0;
            let mut j = i;
            while j < set.len() && set[j].0 == k {
                acc += set[j].1;
                j += 1;
            }
            if acc >= need {
                thr = thr.max(k);
                let before = acc - set[i..j].iter().map(|s| s.1).sum::<u64>();
                let d = (acc - need).min(need - before) as f64;
                margin = margin.min(d / mk.max(1) as f64);
                break;
            }
            i = j;
        }
    }
    let q: Vec<u64> = l.iter().map(|&v| kept_q(v, thr, m, t, p.min_p)).collect();
    let mass: u64 = q.iter().sum();
    let target = mul_shr32(mass, draw(p.seed, p.counter) as u64);
    let mut run = 0u64;
    for (i, &qi) in q.iter().enumerate() {
        if target < run + qi {
            let d = (target - run).min(run + qi - 1 - target) as f64;
            return (i, margin.min(d / mass.max(1) as f64));
        }
        run += qi;
    }
    (mi, 0.0)
}

/// The raw log-softmax at `token` and the `k` best raw tokens (value desc, index asc), in f64.
fn logprobs(x: &[f32], token: usize, k: usize) -> (Option<f32>, Vec<(i32, f32)>) {
    let mx = x.iter().copied().filter(|v| *v > f32::NEG_INFINITY).fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = x.iter().filter(|v| **v > f32::NEG_INFINITY).map(|&v| (v as f64 - mx).exp()).sum();
    let lse = mx + sum.ln();
    let lp = |i: usize| (x[i] as f64 - lse) as f32;
    let k = k.min(MAX_TOP).min(x.len());
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| key(x[b]).cmp(&key(x[a])).then(a.cmp(&b)));
    (Some(lp(token)), idx[..k].iter().map(|&i| (i as i32, lp(i))).collect())
}

/// A batch as the kernel sees it: `logits` `[rows, vocab]`, the token-state tables `[slots,
/// vocab]` and the bias CSR (`offsets[rows + 1]` into `ids` / `vals`).
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    pub vocab: usize,
    pub logits: &'a [f32],
    pub params: &'a [SampleParams],
    pub counts: Option<&'a [i32]>,
    pub prompt_mask: Option<&'a [u8]>,
    pub bias: Option<(&'a [i32], &'a [i32], &'a [f32])>,
}

/// [`sample`] for every row of a batch.
pub fn sample_batch(b: &Batch<'_>) -> Vec<Sampled> {
    let v = b.vocab;
    let slots = b.counts.map_or(0, |c| c.len() / v.max(1));
    (0..b.params.len())
        .map(|r| {
            let p = &b.params[r];
            let slot = (p.slot >= 0 && (p.slot as usize) < slots).then_some(p.slot as usize);
            let (bias_ids, bias): (&[i32], &[f32]) = match b.bias {
                Some((off, ids, vals)) => {
                    let nnz = ids.len() as i32;
                    let b0 = off[r].clamp(0, nnz);
                    let b1 = off[r + 1].clamp(b0, nnz);
                    (&ids[b0 as usize..b1 as usize], &vals[b0 as usize..b1 as usize])
                }
                None => (&[], &[]),
            };
            sample(&Row {
                logits: &b.logits[r * v..(r + 1) * v],
                params: p,
                counts: slot.and_then(|s| b.counts.map(|c| &c[s * v..(s + 1) * v])),
                prompt_mask: slot.and_then(|s| b.prompt_mask.map(|m| &m[s * v..(s + 1) * v])),
                bias_ids,
                bias,
            })
        })
        .collect()
}

/// `sample_slots_init` on the host: the slot's counts from its output ids, its prompt mask from
/// its prompt ids (ids outside the vocabulary ignored).
pub fn slot_init(counts: &mut [i32], mask: &mut [u8], prompt: &[i32], output: &[i32]) {
    counts.fill(0);
    mask.fill(0);
    let n = counts.len() as i32;
    for &t in prompt.iter().filter(|&&t| (0..n).contains(&t)) {
        mask[t as usize] = 1;
    }
    for &t in output.iter().filter(|&&t| (0..n).contains(&t)) {
        counts[t as usize] += 1;
    }
}

/// `sample_count_tokens` on the host.
pub fn count_tokens(counts: &mut [i32], vocab: usize, params: &[SampleParams], tokens: &[i32]) {
    let slots = counts.len() / vocab.max(1);
    for (p, &t) in params.iter().zip(tokens) {
        if p.slot >= 0 && (p.slot as usize) < slots && t >= 0 && (t as usize) < vocab {
            counts[p.slot as usize * vocab + t as usize] += 1;
        }
    }
}

/// Append `-inf` bias entries for the EOS ids not yet in `ids` (a row that has generated fewer
/// than its `min_tokens`): the caller's part of `min_tokens`.
pub fn suppress(ids: &mut Vec<i32>, vals: &mut Vec<f32>, eos: &[i32]) {
    for &e in eos {
        match ids.iter().position(|&i| i == e) {
            Some(j) => vals[j] = f32::NEG_INFINITY,
            None => {
                ids.push(e);
                vals.push(f32::NEG_INFINITY);
            }
        }
    }
}

/// Structured outputs on the host: `-inf` for every token of `row` that the packed `mask` does
/// not allow (bit `t % 32` of word `t / 32`; tokens past the mask are not allowed). The
/// `token_mask_*` kernels compute the same.
pub fn token_mask(row: &mut [f32], mask: &[u32]) {
    for (i, chunk) in row.chunks_mut(32).enumerate() {
        let w = mask.get(i).copied().unwrap_or(0);
        if w == u32::MAX {
            continue;
        }
        for (b, x) in chunk.iter_mut().enumerate() {
            if (w >> b) & 1 == 0 {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}

#[cfg(test)]
#[path = "sample_ref_tests.rs"]
mod tests;
