//! The batched GPU sampler (`launch::sample`, sampling_batched.cu) against its CPU twin
//! (`sample_ref`) and the `argmax` kernel, on random logits (never zeros) at rows 1, 7, 64, 256 x
//! vocab 8, 1000, 32000, 128256, f32 and bf16, with outputs poisoned with NaN bits before each
//! launch. Skips without a GPU.
//!
//! ```text
//! cargo test -p trtllm-kernels --test gpu_sampling -- --nocapture
//! ```

use std::sync::Arc;

use trtllm_kernels::launch::{self, DevPtr, SampleArgs, SampleCsr, SampleLogprobs, SampleParams, TokenState};
use trtllm_kernels::sample_ref::{self, Batch, Sampled};
use trtllm_kernels::{DevBuf, Dt, Gpu};

const ROWS: [usize; 4] = [1, 7, 64, 256];
const VOCABS: [usize; 4] = [8, 1000, 32000, 128256];
const DTS: [Dt; 2] = [Dt::F32, Dt::BF16];
/// The bits every output starts as (a NaN as f32, an id far outside any vocabulary as i32).
const POISON: u32 = 0x7fc0_0000;
const TOP: usize = 20;

fn gpu() -> Option<Arc<Gpu>> {
    if !Gpu::available() {
        eprintln!("SKIPPED: no CUDA GPU on this machine (run on the device: cargo test -p trtllm-kernels --test gpu_sampling)");
        return None;
    }
    static G: std::sync::OnceLock<Arc<Gpu>> = std::sync::OnceLock::new();
    Some(G.get_or_init(|| Gpu::new(0).expect("open GPU 0")).clone())
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn f(&mut self) -> f32 {
        ((self.next() >> 40) as f32 + 0.5) / (1u64 << 24) as f32
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Random logits in (-4, 4) (never 0) with a few peaks, as the values `dt` holds.
fn logits(rng: &mut Rng, n: usize, dt: Dt) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let mut v = (rng.f() * 2.0 - 1.0) * 4.0;
            if rng.below(200) == 0 {
                v += 6.0;
            }
            if v == 0.0 {
                v = 0.125;
            }
            if dt == Dt::BF16 {
                half::bf16::from_f32(v).to_f32()
            } else {
                v
            }
        })
        .collect()
}

fn bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn bytes_i32(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn logit_bytes(v: &[f32], dt: Dt) -> Vec<u8> {
    match dt {
        Dt::F32 => bytes_f32(v),
        Dt::BF16 => v.iter().flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes()).collect(),
    }
}
fn up(g: &Arc<Gpu>, b: &[u8]) -> DevBuf {
    DevBuf::upload(g, b).expect("upload")
}
fn poisoned(g: &Arc<Gpu>, words: usize) -> DevBuf {
    up(g, &vec![POISON; words.max(1)].iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}
fn down_i32(b: &DevBuf, n: usize) -> Vec<i32> {
    b.download(0, n * 4)
        .expect("download")
        .chunks(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
fn down_f32(b: &DevBuf, n: usize) -> Vec<f32> {
    down_i32(b, n).into_iter().map(|x| f32::from_bits(x as u32)).collect()
}

/// One batch on the host: logits, per-row params, token state, bias.
struct Case {
    dt: Dt,
    vocab: usize,
    logits: Vec<f32>,
    params: Vec<SampleParams>,
    slots: usize,
    prompts: Vec<Vec<i32>>,
    outputs: Vec<Vec<i32>>,
    bias_off: Vec<i32>,
    bias_ids: Vec<i32>,
    bias_vals: Vec<f32>,
}

/// The device's results of a batch.
struct Got {
    tokens: Vec<i32>,
    chosen: Vec<f32>,
    top_ids: Vec<i32>,
    top_lps: Vec<f32>,
    counts: Vec<i32>,
    mask: Vec<u8>,
}

impl Case {
    fn rows(&self) -> usize {
        self.params.len()
    }
    /// The token tables as the twin builds them.
    fn tables(&self) -> (Vec<i32>, Vec<u8>) {
        let v = self.vocab;
        let (mut c, mut m) = (vec![0i32; self.slots * v], vec![0u8; self.slots * v]);
        for s in 0..self.slots {
            sample_ref::slot_init(
                &mut c[s * v..(s + 1) * v],
                &mut m[s * v..(s + 1) * v],
                &self.prompts[s],
                &self.outputs[s],
            );
        }
        (c, m)
    }
    fn twin(&self) -> Vec<Sampled> {
        let (c, m) = self.tables();
        sample_ref::sample_batch(&Batch {
            vocab: self.vocab,
            logits: &self.logits,
            params: &self.params,
            counts: (self.slots > 0).then_some(&c[..]),
            prompt_mask: (self.slots > 0).then_some(&m[..]),
            bias: (!self.bias_off.is_empty()).then_some((
                &self.bias_off[..],
                &self.bias_ids[..],
                &self.bias_vals[..],
            )),
        })
    }
    /// Slots initialized on the device, one sampling launch, then the count update.
    fn run(&self, g: &Arc<Gpu>) -> Got {
        let (r, v) = (self.rows(), self.vocab);
        let x = up(g, &logit_bytes(&self.logits, self.dt));
        let prm = up(g, &SampleParams::as_bytes(&self.params));
        let counts = poisoned(g, self.slots * v);
        let mask = poisoned(g, (self.slots * v).div_ceil(4));
        let state = TokenState {
            counts: DevPtr::new(&counts, 0),
            prompt_mask: DevPtr::new(&mask, 0),
            slots: self.slots,
        };
        let csr = |lists: &[Vec<i32>]| {
            let mut off = vec![0i32];
            let ids: Vec<i32> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            for l in lists {
                off.push(off[off.len() - 1] + l.len() as i32);
            }
            (up(g, &bytes_i32(&off)), up(g, &bytes_i32(&ids)), ids.len())
        };
        if self.slots > 0 {
            let slot_ids: Vec<i32> = (0..self.slots as i32).rev().collect();
            let order = |l: &[Vec<i32>]| -> Vec<Vec<i32>> {
                slot_ids.iter().map(|&s| l[s as usize].clone()).collect()
            };
            let (po, pi, pn) = csr(&order(&self.prompts));
            let (oo, oi, on) = csr(&order(&self.outputs));
            let sl = up(g, &bytes_i32(&slot_ids));
            let pc =
                SampleCsr { offsets: DevPtr::new(&po, 0), ids: DevPtr::new(&pi, 0), vals: None, nnz: pn };
            let oc =
                SampleCsr { offsets: DevPtr::new(&oo, 0), ids: DevPtr::new(&oi, 0), vals: None, nnz: on };
            launch::sample_slots_init(g, &state, v, DevPtr::new(&sl, 0), self.slots, &pc, Some(&oc))
                .expect("slots_init");
        }
        let (bo, bi, bv) = (
            up(g, &bytes_i32(&self.bias_off)),
            up(g, &bytes_i32(&self.bias_ids)),
            up(g, &bytes_f32(&self.bias_vals)),
        );
        let ws = poisoned(g, r * v);
        let (tok, lp, tids, tlps) =
            (poisoned(g, r), poisoned(g, r), poisoned(g, r * TOP), poisoned(g, r * TOP));
        let args = SampleArgs {
            logits: DevPtr::new(&x, 0),
            dt: self.dt,
            rows: r,
            vocab: v,
            params: DevPtr::new(&prm, 0),
            state: (self.slots > 0).then_some(state),
            bias: (!self.bias_off.is_empty()).then_some(SampleCsr {
                offsets: DevPtr::new(&bo, 0),
                ids: DevPtr::new(&bi, 0),
                vals: Some(DevPtr::new(&bv, 0)),
                nnz: self.bias_ids.len(),
            }),
            workspace: DevPtr::new(&ws, 0),
            tokens: DevPtr::new(&tok, 0),
            logprobs: Some(SampleLogprobs {
                chosen: DevPtr::new(&lp, 0),
                top: Some((DevPtr::new(&tids, 0), DevPtr::new(&tlps, 0))),
                top_stride: TOP,
            }),
        };
        launch::sample(g, &args).expect("sample");
        let (cb, mb) = if self.slots > 0 {
            (
                counts.download(0, self.slots * v * 4).expect("dl"),
                mask.download(0, self.slots * v).expect("dl"),
            )
        } else {
            (vec![], vec![])
        };
        if self.slots > 0 {
            launch::sample_count_tokens(g, &state, v, DevPtr::new(&prm, 0), DevPtr::new(&tok, 0), r)
                .expect("count");
        }
        g.synchronize().expect("sync");
        let counts_before: Vec<i32> =
            cb.chunks(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let got = Got {
            tokens: down_i32(&tok, r),
            chosen: down_f32(&lp, r),
            top_ids: down_i32(&tids, r * TOP),
            top_lps: down_f32(&tlps, r * TOP),
            counts: if self.slots > 0 { down_i32(&counts, self.slots * v) } else { vec![] },
            mask: mb,
        };
        // (f) the token-state kernels: init as the twin, then +1 per row with a slot
        if self.slots > 0 {
            let (mut c, m) = self.tables();
            assert_eq!(counts_before, c, "sample_slots_init counts");
            assert_eq!(got.mask, m, "sample_slots_init prompt_mask");
            sample_ref::count_tokens(&mut c, v, &self.params, &got.tokens);
            assert_eq!(got.counts, c, "sample_count_tokens");
        }
        got
    }
}

/// A random mix of rows: greedy, temperatures, top-k / top-p / min-p, penalties, bias, logprobs.
fn mixed_case(rng: &mut Rng, rows: usize, vocab: usize, dt: Dt) -> Case {
    let slots = rows.min(16);
    let mut c = Case {
        dt,
        vocab,
        logits: logits(rng, rows * vocab, dt),
        params: vec![],
        slots,
        prompts: (0..slots)
            .map(|_| (0..1 + rng.below(40)).map(|_| rng.below(vocab) as i32).collect())
            .collect(),
        outputs: (0..slots).map(|_| (0..rng.below(30)).map(|_| rng.below(vocab) as i32).collect()).collect(),
        bias_off: vec![0],
        bias_ids: vec![],
        bias_vals: vec![],
    };
    for r in 0..rows {
        let kind = r % 8;
        let mut p = SampleParams {
            seed: rng.next(),
            counter: rng.next() % 10_000,
            temperature: [0.0, 0.5, 1.0, 1.5][rng.below(4)],
            logprobs: [-1, 0, 3, 20][rng.below(4)],
            ..Default::default()
        };
        if kind == 0 {
            p.temperature = 0.0;
        }
        if kind >= 2 {
            p.top_k = [0, 1, 5, 50, vocab as i32 - 1][rng.below(5)];
            p.top_p = [1.0, 0.95, 0.5, 1e-6][rng.below(4)];
            p.min_p = [0.0, 0.05, 0.3][rng.below(3)];
        }
        if kind == 3 || kind == 5 {
            p.slot = rng.below(slots) as i32;
            p.repetition_penalty = [1.0, 1.3, 0.8][rng.below(3)];
            p.presence_penalty = [0.0, 0.5, -1.0][rng.below(3)];
            p.frequency_penalty = [0.0, 0.25][rng.below(2)];
        }
        if kind == 4 || kind == 5 {
            // unique ids; sometimes an EOS-style -inf (min_tokens) and a strong positive bias
            let mut ids: Vec<i32> = (0..rng.below(12)).map(|_| rng.below(vocab) as i32).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut vals: Vec<f32> = ids.iter().map(|_| (rng.f() - 0.5) * 10.0).collect();
            sample_ref::suppress(&mut ids, &mut vals, &[(vocab - 1) as i32]);
            c.bias_ids.extend(&ids);
            c.bias_vals.extend(&vals);
        }
        if kind == 6 && r % 16 == 6 {
            // everything masked: the raw argmax
            c.bias_ids.extend(0..vocab as i32);
            c.bias_vals.extend(std::iter::repeat_n(f32::NEG_INFINITY, vocab));
            p.temperature = 1.0;
        }
        if kind == 7 && r % 16 == 15 {
            // an all-NaN row: token 0
            c.logits[r * vocab..(r + 1) * vocab].fill(f32::NAN);
        }
        c.bias_off.push(c.bias_ids.len() as i32);
        c.params.push(p);
    }
    c
}

/// Counts of the twin comparison: rows compared, rows that differ, rows skipped (near a boundary).
#[derive(Default)]
struct Tally {
    compared: usize,
    differ: usize,
    near: usize,
}

/// The checks of one batch's results: tokens in range, greedy rows equal to `argmax` (the argmax
/// kernel's ids), ids as the twin's `want` (rows within 1e-5 of a boundary skipped, the others
/// counted), logprobs within 1e-3 of the raw log-softmax, top ids as the twin's, padding, and no
/// logprob written for rows without them.
fn check(c: &Case, got: &Got, want: &[Sampled], argmax: &[i32], tally: &mut Tally) {
    let (rows, vocab, dt) = (c.rows(), c.vocab, c.dt);
    let bias_rows = |r: usize| c.bias_off[r + 1] > c.bias_off[r];
    for r in 0..rows {
        let (p, t, w) = (&c.params[r], got.tokens[r], &want[r]);
        let at = format!("{dt:?} rows={rows} vocab={vocab} row {r} {p:?}");
        assert!((0..vocab as i32).contains(&t), "{at}: token {t} out of range");
        let plain = p.slot < 0
            || p.repetition_penalty == 1.0 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0;
        if p.temperature == 0.0 && plain && !bias_rows(r) {
            assert_eq!(t, argmax[r], "{at}: greedy row differs from the argmax kernel");
        }
        if w.margin < 1e-5 {
            tally.near += 1;
        } else {
            tally.compared += 1;
            if t != w.token {
                tally.differ += 1;
                eprintln!("{at}: gpu {t}, twin {} (margin {:.2e})", w.token, w.margin);
            }
        }
        if p.logprobs < 0 {
            assert_eq!(got.chosen[r].to_bits(), POISON, "{at}: logprob written for a row without logprobs");
            continue;
        }
        let row = &c.logits[r * vocab..(r + 1) * vocab];
        if row.iter().all(|v| v.is_nan()) {
            continue;
        }
        // the chosen token's logprob: the raw log-softmax at the GPU's token
        let mx = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = mx + row.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
        let (lp, want_lp) = (got.chosen[r], row[t as usize] as f64 - lse);
        assert!((lp as f64 - want_lp).abs() < 1e-3, "{at}: logprob {lp} vs {want_lp}");
        let k = (p.logprobs as usize).min(TOP).min(vocab);
        let ids = &got.top_ids[r * TOP..(r + 1) * TOP];
        let lps = &got.top_lps[r * TOP..(r + 1) * TOP];
        assert_eq!(&ids[..k], &w.top.iter().map(|t| t.0).collect::<Vec<_>>()[..], "{at}: top ids");
        for (j, &(_, wl)) in w.top.iter().enumerate() {
            assert!((lps[j] - wl).abs() < 1e-3, "{at}: top logprob {j}: {} vs {wl}", lps[j]);
        }
        assert!(
            ids[k..].iter().all(|&i| i == -1) && lps[k..].iter().all(|&l| l == f32::NEG_INFINITY),
            "{at}: top padding"
        );
    }
}

/// (a) + (b) + (e) + (f) at every shape and dtype.
#[test]
fn sampler_matches_the_cpu_twin_and_argmax() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(1);
    let mut tally = Tally::default();
    for dt in DTS {
        for &rows in &ROWS {
            for &vocab in &VOCABS {
                let c = mixed_case(&mut rng, rows, vocab, dt);
                let got = c.run(&g);
                let x = up(&g, &logit_bytes(&c.logits, dt));
                let am = poisoned(&g, rows);
                launch::argmax(&g, dt, DevPtr::new(&x, 0), DevPtr::new(&am, 0), rows, vocab).expect("argmax");
                check(&c, &got, &c.twin(), &down_i32(&am, rows), &mut tally);
            }
        }
    }
    let Tally { compared, differ, near } = tally;
    eprintln!("twin comparison: {compared} rows compared, {differ} differ, {near} within 1e-5 of a boundary (skipped)");
    assert!(differ * 100 <= compared, "{differ} of {compared} rows differ from the CPU twin");
}

/// The harness itself, on the CPU (runs without a GPU): the twin's results, laid out as the
/// kernel writes them, pass `check`, so a GPU failure is the kernel's.
#[test]
fn harness_accepts_the_twin() {
    let mut rng = Rng(3);
    for dt in DTS {
        for (rows, vocab) in [(7, 8), (16, 1000), (9, 32000)] {
            let c = mixed_case(&mut rng, rows, vocab, dt);
            let want = c.twin();
            let mut got = Got {
                tokens: want.iter().map(|s| s.token).collect(),
                chosen: vec![f32::from_bits(POISON); rows],
                top_ids: vec![POISON as i32; rows * TOP],
                top_lps: vec![f32::from_bits(POISON); rows * TOP],
                counts: vec![],
                mask: vec![],
            };
            for (r, s) in want.iter().enumerate() {
                if let Some(lp) = s.logprob {
                    got.chosen[r] = lp;
                    for j in 0..TOP {
                        let (id, l) = s.top.get(j).copied().unwrap_or((-1, f32::NEG_INFINITY));
                        (got.top_ids[r * TOP + j], got.top_lps[r * TOP + j]) = (id, l);
                    }
                }
            }
            // the argmax kernel's function: first max, NaN never wins, all NaN -> 0
            let argmax: Vec<i32> = (0..rows)
                .map(|r| {
                    let row = &c.logits[r * vocab..(r + 1) * vocab];
                    let mut b: Option<usize> = None;
                    for (i, v) in row.iter().enumerate() {
                        if !v.is_nan() && b.is_none_or(|b| *v > row[b]) {
                            b = Some(i);
                        }
                    }
                    b.unwrap_or(0) as i32
                })
                .collect();
            let mut tally = Tally::default();
            check(&c, &got, &want, &argmax, &mut tally);
            assert_eq!(tally.differ, 0);
        }
    }
}

/// (c) A row's token depends on its seed and counter, not on its index or the batch around it.
#[test]
fn same_seed_and_counter_same_token_anywhere_in_the_batch() {
    let Some(g) = gpu() else { return };
    for dt in DTS {
        let mut rng = Rng(2);
        let vocab = 32000;
        let row = logits(&mut rng, vocab, dt);
        let probe = |counter| SampleParams {
            seed: 99,
            counter,
            temperature: 1.0,
            top_p: 0.9,
            top_k: 100,
            ..Default::default()
        };
        for counter in [0u64, 1, 17, 1 << 33] {
            let mut seen = vec![];
            for (rows, at) in [(1usize, 0usize), (13, 5), (64, 63), (256, 128)] {
                let mut c = mixed_case(&mut rng, rows, vocab, dt);
                c.logits[at * vocab..(at + 1) * vocab].copy_from_slice(&row);
                c.params[at] = probe(counter);
                c.bias_ids.drain(c.bias_off[at] as usize..c.bias_off[at + 1] as usize);
                c.bias_vals.drain(c.bias_off[at] as usize..c.bias_off[at + 1] as usize);
                let removed = c.bias_off[at + 1] - c.bias_off[at];
                for o in &mut c.bias_off[at + 1..] {
                    *o -= removed;
                }
                seen.push(c.run(&g).tokens[at]);
            }
            assert!(seen.windows(2).all(|w| w[0] == w[1]), "{dt:?} counter {counter}: {seen:?}");
        }
    }
}

fn expected_probs(x: &[f32], p: &SampleParams) -> Vec<f64> {
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
        let (mut acc, mut cut) = (0.0, f32::NEG_INFINITY);
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

/// (d) 20k draws (one launch, counters 0..20000) of an 8-token row: the empirical distribution
/// is the filtered softmax (chi-square, 7 degrees of freedom at most, p = 0.001 at 24.3).
#[test]
fn gpu_draws_follow_the_filtered_softmax() {
    let Some(g) = gpu() else { return };
    let x = [1.3f32, -0.2, 0.9, 2.1, -1.7, 0.4, 1.8, -0.6];
    let base = SampleParams { seed: 5, temperature: 1.0, ..Default::default() };
    let cases = [
        base,
        SampleParams { top_k: 5, temperature: 0.8, ..base },
        SampleParams { top_p: 0.8, temperature: 1.2, ..base },
        SampleParams { min_p: 0.15, ..base },
        SampleParams { top_k: 6, top_p: 0.9, min_p: 0.05, temperature: 0.7, ..base },
    ];
    for dt in DTS {
        for p in cases {
            let n = 20_000;
            let c = Case {
                dt,
                vocab: 8,
                // The twin reads the values the kernel reads: bf16-rounded for a bf16 row.
                logits: x
                    .iter()
                    .map(|&v| if dt == Dt::BF16 { half::bf16::from_f32(v).to_f32() } else { v })
                    .cycle()
                    .take(8 * n)
                    .collect(),
                params: (0..n as u64).map(|counter| SampleParams { counter, ..p }).collect(),
                slots: 0,
                prompts: vec![],
                outputs: vec![],
                bias_off: vec![],
                bias_ids: vec![],
                bias_vals: vec![],
            };
            let got = c.run(&g);
            let mut counts = [0usize; 8];
            got.tokens.iter().for_each(|&t| counts[t as usize] += 1);
            let probs = expected_probs(&c.logits[..8], &p);
            let mut chi = 0.0;
            for (j, (&k, &pr)) in counts.iter().zip(&probs).enumerate() {
                if pr == 0.0 {
                    assert_eq!(k, 0, "{dt:?} {p:?}: filtered-out token {j} drawn");
                } else {
                    chi += (k as f64 - pr * n as f64).powi(2) / (pr * n as f64);
                }
            }
            eprintln!("{dt:?} {p:?}: chi^2 {chi:.2} counts {counts:?}");
            assert!(chi < 24.3, "{dt:?} {p:?}: chi^2 {chi:.1}, counts {counts:?}, probs {probs:?}");
            assert_eq!(
                got.tokens,
                c.twin().iter().map(|s| s.token).collect::<Vec<_>>(),
                "{dt:?} {p:?}: vs twin"
            );
        }
    }
}
