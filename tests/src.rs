//! Helpers shared by the integration tests in `tests/tests/`.

use std::path::PathBuf;

use trtllm_core::Tensor;

/// A fixture directory under `tests/fixtures`. `CARGO_MANIFEST_DIR` at run time wins (the GPU
/// machine runs test binaries built elsewhere); else the directory they were built in.
pub fn fixture(name: &str) -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("fixtures").join(name)
}

/// `||a - b||^2 / ||b||^2`, after checking lengths match and `a` is finite.
pub fn nmse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    assert!(a.iter().all(|x| x.is_finite()), "non-finite output");
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    num / den.max(1e-30)
}

/// Mean over rows of KL(softmax(p) || softmax(q)), rows of `vocab` logits.
pub fn kl(p: &[f32], q: &[f32], vocab: usize) -> f64 {
    let logsm = |r: &[f32]| {
        let m = r.iter().fold(f64::MIN, |a, &x| a.max(x as f64));
        let z: f64 = r.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
        r.iter().map(|&x| x as f64 - z).collect::<Vec<_>>()
    };
    let rows = p.len() / vocab;
    let mut total = 0.0;
    for (a, b) in p.chunks(vocab).zip(q.chunks(vocab)) {
        let (lp, lq) = (logsm(a), logsm(b));
        total += lp.iter().zip(&lq).map(|(x, y)| x.exp() * (x - y)).sum::<f64>();
    }
    total / rows as f64
}

/// Token ids stored as an int32 tensor.
pub fn ids(t: &Tensor) -> Vec<u32> {
    t.i32s().expect("int32 ids").iter().map(|&x| x as u32).collect()
}

/// Calls `$m!(llama, llama_tied, ...)` with every HF fixture under `tests/fixtures`: the one list
/// the per-fixture test files (CPU vs HF, GPU vs HF) expand into one `#[test]` each.
#[macro_export]
macro_rules! for_each_fixture {
    ($m:ident) => {
        $m!(
            llama,
            llama_tied,
            llama_rope_linear,
            llama_rope_dynamic,
            llama_rope_llama3,
            llama_rope_yarn,
            mistral_swa,
            qwen2,
            qwen2_swa,
            qwen3,
            gemma,
            gemma2,
            gemma3,
            gemma3_cond,
            phi3,
            phi3_longrope,
            gpt2,
            gpt2_noprefix,
            mixtral,
            qwen3_moe,
            olmo2,
            granite,
            starcoder2,
            gpt_neox,
            cohere,
            qwen2_moe,
            gpt_oss,
            falcon,
            falcon_mqa,
            deepseek_v2,
            deepseek_v3,
        );
    };
}
