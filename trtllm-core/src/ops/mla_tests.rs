//! The absorbed MLA of `mla_attention` against the non-absorbed formulation: every head's keys
//! `[W_UK c; k_pe]` and values `W_UV c` expanded from the cached latent rows, then plain
//! attention in f64. A prefill of 7 tokens then 3 decode steps, on a paged latent cache.

use super::*;
use crate::batch::SeqStep;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

/// Non-absorbed attention of this step's queries over the latent cache: expand every cached
/// position's key and value per head from `kv_b` `[heads * (nope + v), lora]`.
fn expanded(q: &[f32], kc: &[f32], kv_b: &[f32], batch: &ForwardBatch, p: &MlaParams<'_>) -> Vec<f64> {
    let (d, half, qh, kb) = (p.row(), p.rope / 2, p.nope + p.rope, p.nope + p.v);
    let (cos, sin) = crate::ops::rope_tables(&batch.positions, p.freq.0, p.freq.1);
    let mut out = vec![0f64; batch.num_tokens() * p.heads * p.v];
    for ti in 0..batch.num_tokens() {
        let seq = &batch.seqs[batch.token_seq[ti]];
        let pos = batch.positions[ti];
        for h in 0..p.heads {
            let mut qv = q[(ti * p.heads + h) * qh..(ti * p.heads + h + 1) * qh].to_vec();
            rotate(&mut qv[p.nope..], &cos[ti * half..(ti + 1) * half], &sin[ti * half..(ti + 1) * half]);
            let row = |r: usize, c: &[f32]| -> f64 {
                kv_b[r * p.lora..(r + 1) * p.lora].iter().zip(c).map(|(a, b)| *a as f64 * *b as f64).sum()
            };
            let mut scores = vec![];
            let mut values = vec![];
            for j in 0..=pos {
                let slot =
                    seq.block_table[j / batch.block_size] as usize * batch.block_size + j % batch.block_size;
                let (c, pe) = kc[slot * d..(slot + 1) * d].split_at(p.lora);
                let k_nope: Vec<f64> = (0..p.nope).map(|i| row(h * kb + i, c)).collect();
                let s: f64 = k_nope.iter().zip(&qv[..p.nope]).map(|(k, q)| k * *q as f64).sum::<f64>()
                    + pe.iter().zip(&qv[p.nope..]).map(|(k, q)| *k as f64 * *q as f64).sum::<f64>();
                scores.push(s * p.scale as f64);
                values.push((0..p.v).map(|i| row(h * kb + p.nope + i, c)).collect::<Vec<f64>>());
            }
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            for (s, v) in scores.iter().zip(&values) {
                let w = (s - m).exp() / z;
                for (o, x) in out[(ti * p.heads + h) * p.v..(ti * p.heads + h + 1) * p.v].iter_mut().zip(v) {
                    *o += w * x;
                }
            }
        }
    }
    out
}

#[test]
fn absorbed_decode_matches_the_expanded_formulation() {
    let (heads, nope, rope, lora, v) = (3usize, 8usize, 4usize, 12usize, 6usize);
    let mut rng = Rng(7);
    let inv = vec![1.0f32, 0.1];
    let p = MlaParams {
        heads,
        nope,
        rope,
        lora,
        v,
        scale: 0.3,
        eps: 1e-6,
        freq: (&inv, 1.2),
        freq_on_device: None,
    };
    let kv_b = rng.vec(heads * (nope + v) * lora);
    // W_UK^T [heads, lora, nope] and W_UV [heads, v, lora] from kv_b's per-head rows.
    let mut w_uk = vec![0f32; heads * lora * nope];
    let mut w_uv = vec![0f32; heads * v * lora];
    for h in 0..heads {
        for i in 0..nope {
            for l in 0..lora {
                w_uk[(h * lora + l) * nope + i] = kv_b[(h * (nope + v) + i) * lora + l];
            }
        }
        let src = &kv_b[(h * (nope + v) + nope) * lora..(h + 1) * (nope + v) * lora];
        w_uv[h * v * lora..(h + 1) * v * lora].copy_from_slice(src);
    }
    let norm: Vec<f32> = rng.vec(lora).iter().map(|x| 1.0 + 0.2 * x).collect();
    let t = |v: Vec<f32>, s: &[usize]| Tensor::from_f32(v, s).expect("tensor");
    let (norm, w_uk, w_uv) = (t(norm, &[lora]), t(w_uk, &[heads, lora, nope]), t(w_uv, &[heads, v, lora]));
    let w = MlaWeights { kv_norm: &norm, w_uk: &w_uk, w_uv: &w_uv };
    let bs = 4;
    let blocks = vec![2u32, 0, 3];
    let mut cache = KvLayer::Cpu { k: vec![0.0; 4 * bs * p.row()], v: vec![], fp8: None };
    let toks = [1u32; 7];
    for (start, len) in [(0usize, 7usize), (7, 1), (8, 1), (9, 1)] {
        let step = [SeqStep { tokens: &toks[..len], start_pos: start, block_table: &blocks }];
        let batch = ForwardBatch::new(&step, bs, true).expect("batch");
        let q = rng.vec(len * heads * (nope + rope));
        let kv_a = rng.vec(len * p.row());
        let got = mla_attention(
            &t(q.clone(), &[len, heads * (nope + rope)]),
            &t(kv_a, &[len, p.row()]),
            &w,
            &mut cache,
            &batch,
            None,
            &p,
        )
        .expect("mla");
        let KvLayer::Cpu { k, .. } = &cache else { panic!("cpu cache") };
        let want = expanded(&q, k, &kv_b, &batch, &p);
        let got = got.f32s().expect("f32");
        let num: f64 = got.iter().zip(&want).map(|(a, b)| (*a as f64 - b).powi(2)).sum();
        let den: f64 = want.iter().map(|b| b * b).sum();
        println!("MLA absorbed vs expanded, step at {start} ({len} tokens): NMSE {:.2e}", num / den);
        assert!(num / den <= 1e-10, "step at {start} ({len} tokens): NMSE {:e}", num / den);
    }
}
