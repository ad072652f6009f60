//! The CUDA ops of the second model zoo against their CPU oracles on random inputs: attention
//! with sinks (GPT-OSS), multi-head latent attention over a latent cache (DeepSeek; the fixture's
//! dims and DeepSeek-V3's 576-wide rows), the clamped SwiGLU. f32 relative error <= 1e-5, bf16
//! <= 2e-2. Skips without a GPU.

mod gpu_common;

use gpu_common::{gpu, rand_t, rel, tol, up, DTS};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use trtllm_core::batch::{ForwardBatch, KvLayer, SeqStep};
use trtllm_core::ops::{self, AttnParams, MlaParams, MlaWeights, QkvParams};
use trtllm_core::{DType, Tensor};
use trtllm_kernels::DevBuf;

fn slack(dt: DType) -> f64 {
    tol(dt) * if dt == DType::BF16 { 2.0 } else { 1.0 }
}

/// Two steps of two sequences (prefill 11 + 9, then decode 1 + prefill 3) over shuffled blocks.
fn steps() -> Vec<[(usize, usize); 2]> {
    vec![[(0, 11), (0, 9)], [(11, 1), (9, 3)]]
}

#[test]
fn qkv_attention_with_sinks() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(21);
    for dt in DTS {
        for (nh, nkv, hd, window) in [(4, 2, 16, None), (8, 2, 64, Some(5))] {
            let (bs, slots) = (4, 40 * 4);
            let tables: [Vec<u32>; 2] = [vec![7, 2, 30, 11], vec![5, 19, 3]];
            let kv_bytes = slots * nkv * hd * dt.size_in_bytes();
            let mut gk = KvLayer::Cuda {
                k: DevBuf::zeros(&g, kv_bytes).expect("kv"),
                v: DevBuf::zeros(&g, kv_bytes).expect("kv"),
                dtype: dt,
                fp8: None,
            };
            let mut ck =
                KvLayer::Cpu { k: vec![0f32; slots * nkv * hd], v: vec![0f32; slots * nkv * hd], fp8: None };
            let sinks = rand_t(&mut rng, &[nh], 2.0);
            let sinks_g = sinks.to_gpu(&g).expect("up");
            let inv: Vec<f32> =
                (0..hd / 4).map(|i| 1.0 / 10000f32.powf(4.0 * i as f32 / hd as f32)).collect();
            let attn = AttnParams {
                num_heads: nh,
                num_kv_heads: nkv,
                head_dim: hd,
                scale: 0.3,
                window,
                softcap: None,
            };
            for [s0, s1] in steps() {
                let toks = [1u32; 16];
                let steps = [
                    SeqStep { tokens: &toks[..s0.1], start_pos: s0.0, block_table: &tables[0] },
                    SeqStep { tokens: &toks[..s1.1], start_pos: s1.0, block_table: &tables[1] },
                ];
                let batch = ForwardBatch::new(&steps, bs, true).expect("batch");
                let t = batch.num_tokens();
                let (qkv, qkvr) = up(&g, &rand_t(&mut rng, &[t, (nh + 2 * nkv) * hd], 1.0), dt);
                let p = |s| QkvParams {
                    attn,
                    rope: Some((&inv, 1.0)),
                    rope_on_device: None,
                    qk_norm: None,
                    sinks: Some(s),
                };
                let dev = batch.to_device(&g).expect("batch to device");
                let got = ops::qkv_attention(&qkv, &mut gk, &batch, Some(&dev), &p(&sinks_g)).expect("gpu");
                let want = ops::qkv_attention(&qkvr, &mut ck, &batch, None, &p(&sinks)).expect("cpu");
                let e = rel(&got, &want);
                println!("sinks {dt} nh={nh} nkv={nkv} hd={hd} tokens={t}: rel err {e:.2e}");
                assert!(e <= slack(dt), "sinks {dt} nh={nh} hd={hd}: {e:e}");
            }
        }
    }
}

#[test]
fn mla_attention_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(22);
    for dt in DTS {
        // (heads, nope, rope, lora, v): the fixture's dims; DeepSeek-V3's per-head dims.
        for (heads, nope, rope, lora, v) in [(4, 16, 8, 32, 16), (8, 128, 64, 512, 128)] {
            let (bs, slots, d) = (4, 40 * 4, lora + rope);
            let tables: [Vec<u32>; 2] = [vec![7, 2, 30, 11], vec![5, 19, 3]];
            let mut gk = KvLayer::Cuda {
                k: DevBuf::zeros(&g, slots * d * dt.size_in_bytes()).expect("kv"),
                v: DevBuf::zeros(&g, 0).expect("no values"),
                dtype: dt,
                fp8: None,
            };
            let mut ck = KvLayer::Cpu { k: vec![0f32; slots * d], v: vec![], fp8: None };
            let inv: Vec<f32> =
                (0..rope / 2).map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / rope as f32)).collect();
            let inv_g = Tensor::from_f32(inv.clone(), &[inv.len()]).expect("t").to_gpu(&g).expect("up");
            let norm = rand_t(&mut rng, &[lora], 1.0).map_f32(|x| 1.0 + 0.3 * x).expect("w");
            let norm_g = norm.to_gpu(&g).expect("up");
            let (w_uk, w_uk_r) = up(&g, &rand_t(&mut rng, &[heads, lora, nope], 0.2), dt);
            let (w_uv, w_uv_r) = up(&g, &rand_t(&mut rng, &[heads, v, lora], 0.2), dt);
            let p = |f| MlaParams {
                heads,
                nope,
                rope,
                lora,
                v,
                scale: 0.1,
                eps: 1e-6,
                freq: (&inv, 1.1),
                freq_on_device: f,
            };
            for [s0, s1] in steps() {
                let toks = [1u32; 16];
                let steps = [
                    SeqStep { tokens: &toks[..s0.1], start_pos: s0.0, block_table: &tables[0] },
                    SeqStep { tokens: &toks[..s1.1], start_pos: s1.0, block_table: &tables[1] },
                ];
                let batch = ForwardBatch::new(&steps, bs, true).expect("batch");
                let t = batch.num_tokens();
                let (q, qr) = up(&g, &rand_t(&mut rng, &[t, heads * (nope + rope)], 1.0), dt);
                let (kv_a, kv_ar) = up(&g, &rand_t(&mut rng, &[t, d], 1.0), dt);
                let dev = batch.to_device(&g).expect("batch to device");
                let wg = MlaWeights { kv_norm: &norm_g, w_uk: &w_uk, w_uv: &w_uv };
                let wc = MlaWeights { kv_norm: &norm, w_uk: &w_uk_r, w_uv: &w_uv_r };
                let got = ops::mla_attention(&q, &kv_a, &wg, &mut gk, &batch, Some(&dev), &p(Some(&inv_g)))
                    .expect("gpu");
                let want =
                    ops::mla_attention(&qr, &kv_ar, &wc, &mut ck, &batch, None, &p(None)).expect("cpu");
                let e = rel(&got, &want);
                println!("mla {dt} heads={heads} lora={lora} rope={rope} tokens={t}: rel err {e:.2e}");
                assert!(e <= slack(dt), "mla {dt} heads={heads} lora={lora}: {e:e}");
            }
        }
    }
}

#[test]
fn clamped_swiglu() {
    let Some(g) = gpu() else { return };
    let mut rng = SmallRng::seed_from_u64(23);
    for dt in DTS {
        for (m, i) in [(1, 8), (7, 33), (64, 256)] {
            let (x, xr) = up(&g, &rand_t(&mut rng, &[m, 2 * i], 3.0), dt);
            let got = ops::clamped_swiglu(&x, 1.702, 1.5).expect("gpu");
            let want = ops::clamped_swiglu(&xr, 1.702, 1.5).expect("cpu");
            let e = rel(&got, &want);
            assert!(e <= tol(dt), "clamped_swiglu {dt} m={m} i={i}: {e:e}");
        }
    }
}
