//! `eval::perplexity` against HF transformers: the NLL of a fixture's reference input under our
//! engine equals the NLL computed from HF's own logits for the same ids (and a uniform
//! distribution gives ln(vocab) per token).

use trtllm_core::eval::perplexity::{nll_of_logits, score_ids};
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::DType;
use trtllm_tests::{fixture, ids};

#[test]
fn uniform_logits_give_ln_vocab_per_token() {
    let n = nll_of_logits(&[0.5; 3 * 7], 7, &[1, 2, 3]);
    assert_eq!(n.tokens, 2);
    assert!((n.nll / 2.0 - 7f64.ln()).abs() < 1e-9, "{n:?}");
    assert!((n.perplexity() - 7.0).abs() < 1e-9);
}

#[test]
fn fixture_nll_equals_hf_logits_nll() {
    trtllm::init();
    for name in ["llama", "qwen2", "gemma2"] {
        let refs =
            SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
        let input = ids(&refs.read("input_ids").expect("ids"));
        let hf = refs.read("logits").expect("logits");
        let want = nll_of_logits(hf.f32s().expect("f32"), hf.dim(1), &input);
        let mut opts = LlmOptions { max_batch_size: 1, max_seq_len: 64, ..Default::default() };
        opts.load.dtype = Some(DType::F32);
        let mut llm = Llm::with_options(fixture(name), opts).expect("load");
        let got = score_ids(&mut llm, &input).expect("score");
        assert_eq!(got.tokens, input.len() - 1);
        let rel = (got.nll - want.nll).abs() / want.nll;
        assert!(rel < 1e-5, "{name}: nll {} vs HF {} (rel {rel:e})", got.nll, want.nll);
        assert!(got.perplexity().is_finite() && got.perplexity() > 1.0);
    }
}
