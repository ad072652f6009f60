//! The f32 kernels give every row of y the same bits whatever m is (speculative verification
//! relies on it), and the timing of the small-m path on a SmolLM2-135M-shaped step.

use super::*;

fn data(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| (((i + seed) * 7919) % 1009) as f32 * 1e-3 - 0.5).collect()
}

/// Rows 0..m of a batched product equal the products of each row alone, bit for bit, for
/// every m of the decode / verification path and past it (the prefill tiles), at shapes with
/// tails along k and n (and several pool parts). The AVX-512 f32 kernels promise it; every
/// tier is checked against an f64 reference.
#[test]
fn rows_bitwise_independent_of_m() {
    #[cfg(target_arch = "x86_64")]
    let bitwise = super::super::isa() == super::super::Isa::Avx512;
    #[cfg(not(target_arch = "x86_64"))]
    let bitwise = false;
    for &(n, k) in &[(37, 21), (130, 576), (1000, 100)] {
        let w = data(n * k, 3);
        let x = data(16 * k, 11);
        let mut alone = vec![0f32; 16 * n];
        for i in 0..16 {
            matmul(&x[i * k..(i + 1) * k], 1, k, Weights::F32(&w), n, &mut alone[i * n..(i + 1) * n]);
        }
        for i in 0..16 {
            for j in 0..n {
                let r: f64 = (0..k).map(|p| x[i * k + p] as f64 * w[j * k + p] as f64).sum();
                assert!((alone[i * n + j] as f64 - r).abs() < 1e-3, "n {n} k {k} row {i} col {j}");
            }
        }
        for m in (2..=16).filter(|_| bitwise) {
            let mut y = vec![0f32; m * n];
            matmul(&x, m, k, Weights::F32(&w), n, &mut y);
            for (i, (a, b)) in y.iter().zip(&alone).enumerate() {
                assert_eq!(a.to_bits(), b.to_bits(), "n {n} k {k} m {m}: row {} col {}", i / n, i % n);
            }
        }
    }
}

/// The f32 matmuls of one SmolLM2-135M step: 30 layers of qkv, o, gate_up, down, then the head.
fn shapes() -> Vec<(usize, usize)> {
    let mut v = vec![];
    for _ in 0..30 {
        v.extend([(960, 576), (576, 576), (3072, 576), (576, 1536)]);
    }
    v.push((49152, 576));
    v
}

/// Milliseconds of one step's matmuls (538 MB of f32 weights) at m = 1..=8.
/// `cargo test --release -p trtllm-core --lib small_m_step -- --ignored --nocapture`
#[test]
#[ignore]
fn small_m_step() {
    let sh = shapes();
    let ws: Vec<Vec<f32>> = sh.iter().enumerate().map(|(i, &(n, k))| data(n * k, i)).collect();
    let x = data(8 * 1536, 1);
    let mut y = vec![0f32; 8 * 49152];
    for round in 0..2 {
        for m in 1..=8 {
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = std::time::Instant::now();
                for (w, &(n, k)) in ws.iter().zip(&sh) {
                    matmul(&x, m, k, Weights::F32(w), n, &mut y);
                }
                best = best.min(t.elapsed().as_secs_f64());
            }
            println!("round {round} m={m} step {:.2} ms", best * 1e3);
        }
    }
}
