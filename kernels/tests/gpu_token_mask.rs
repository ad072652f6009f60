//! The structured-output mask kernel (`launch::token_mask`, `token_mask_*` in sampling.cu)
//! against its CPU twin (`sample_ref::token_mask`), then the GPU argmax of the masked logits
//! against the host argmax: rows 1, 5, 64 x vocab 8, 1000, 49152, 128256 (a partial last mask
//! word, masks shorter than the vocabulary), f32 and bf16. Skips without a GPU.
//!
//! ```text
//! cargo test -p trtllm-kernels --test gpu_token_mask -- --nocapture
//! ```

use std::sync::Arc;

use trtllm_kernels::launch::{self, DevPtr};
use trtllm_kernels::{sample_ref, DevBuf, Dt, Gpu};

fn gpu() -> Option<Arc<Gpu>> {
    if !Gpu::available() {
        eprintln!("SKIPPED: no CUDA GPU on this machine (run on the device: cargo test -p trtllm-kernels --test gpu_token_mask)");
        return None;
    }
    Some(Gpu::new(0).expect("open GPU 0"))
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
}

fn as_dt(v: f32, dt: Dt) -> f32 {
    match dt {
        Dt::F32 => v,
        Dt::BF16 => half::bf16::from_f32(v).to_f32(),
    }
}

fn bytes(v: &[f32], dt: Dt) -> Vec<u8> {
    match dt {
        Dt::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Dt::BF16 => v.iter().flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes()).collect(),
    }
}

fn floats(b: &[u8], dt: Dt) -> Vec<f32> {
    match dt {
        Dt::F32 => b.chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dt::BF16 => {
            b.chunks(2).map(|c| half::bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()).collect()
        }
    }
}

#[test]
fn token_mask_matches_the_cpu_twin_and_argmax_respects_it() {
    let Some(g) = gpu() else { return };
    let mut rng = Rng(7);
    let mut cases = 0;
    for dt in [Dt::F32, Dt::BF16] {
        for rows in [1usize, 5, 64] {
            for vocab in [8usize, 1000, 49152, 128256] {
                // Masks one word short of the vocabulary on odd rows of the last shape.
                let words = if vocab == 128256 { vocab / 32 - 1 } else { vocab.div_ceil(32) };
                let x: Vec<f32> = (0..rows * vocab)
                    .map(|_| as_dt(((rng.next() >> 40) as f32 / 16777216.0) * 8.0 - 4.0, dt))
                    .collect();
                let mut mask = vec![0u32; rows * words];
                for (r, m) in mask.chunks_mut(words).enumerate() {
                    // Row r allows about 1 token in 2^(r % 6): dense to very sparse, never none.
                    for w in m.iter_mut() {
                        let mut v = u32::MAX;
                        for _ in 0..(r % 6) {
                            v &= rng.next() as u32;
                        }
                        *w = v;
                    }
                    m[0] |= 1 << (r % 8);
                }
                let mut want = x.clone();
                for (row, m) in want.chunks_mut(vocab).zip(mask.chunks(words)) {
                    sample_ref::token_mask(row, m);
                }
                let lb = DevBuf::upload(&g, &bytes(&x, dt)).expect("upload logits");
                let mb = DevBuf::upload(&g, &mask.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>())
                    .expect("upload mask");
                launch::token_mask(&g, DevPtr::new(&lb, 0), dt, rows, vocab, DevPtr::new(&mb, 0), words)
                    .expect("token_mask");
                let got = floats(&lb.download(0, rows * vocab * dt.size()).expect("download"), dt);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        a == b || (a.is_infinite() && b.is_infinite() && a < &0.0 && b < &0.0),
                        "{dt:?} rows {rows} vocab {vocab}: element {i}: gpu {a} cpu {b}"
                    );
                }
                let ob = DevBuf::zeros(&g, rows * 4).expect("out");
                launch::argmax(&g, dt, DevPtr::new(&lb, 0), DevPtr::new(&ob, 0), rows, vocab)
                    .expect("argmax");
                let ids: Vec<i32> = ob
                    .download(0, rows * 4)
                    .expect("download ids")
                    .chunks(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                for (r, &t) in ids.iter().enumerate() {
                    let m = &mask[r * words..(r + 1) * words];
                    let t = t as usize;
                    assert!(t < vocab && (m[t / 32] >> (t % 32)) & 1 == 1, "row {r}: argmax {t} is masked");
                    let row = &want[r * vocab..(r + 1) * vocab];
                    let best = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                    assert_eq!(row[t], best, "row {r}: argmax {t} is not the best allowed");
                }
                cases += 1;
            }
        }
    }
    eprintln!("token_mask: {cases} cases match the CPU twin");
}
