//! Every architecture against HF transformers: the tiny random checkpoints in tests/fixtures
//! (made by scripts/make_fixtures.py) run on the CPU in f32 and must reproduce HF's logits at
//! every position (NMSE <= 1e-6), its hidden states layer by layer, and its 16 greedy tokens.

use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::DType;

fn engine(name: &str, block_size: usize) -> Llm {
    trtllm::init();
    let mut opts =
        LlmOptions { kv_block_size: block_size, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(name: &str) {
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let read = |n: &str| refs.read(n).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = ids(&read("input_ids"));
    // Block size 3: every sequence spans several non-trivially aligned blocks.
    let mut llm = engine(name, 3);
    let mut hidden = vec![];
    let logits = llm.logits_all(&input, Some(&mut hidden), &SingleRank).expect("forward");
    let e = nmse(logits.f32s().expect("f32"), read("logits").f32s().expect("f32"));
    assert!(e <= 1e-6, "{name}: logits NMSE {e:e} > 1e-6");

    let layers = hidden.len() - 2;
    let mut worst = 0f64;
    for (i, h) in hidden.iter().enumerate().take(layers) {
        let e = nmse(h.f32s().expect("f32"), read(&format!("hidden.{i}")).f32s().expect("f32"));
        assert!(e <= 1e-6, "{name}: hidden state {i} NMSE {e:e}");
        worst = worst.max(e);
    }
    println!(
        "{name}: logits NMSE {:.2e}, worst hidden-state NMSE {worst:.2e}",
        nmse(logits.f32s().expect("f32"), read("logits").f32s().expect("f32"))
    );
    let e = nmse(hidden[layers].f32s().expect("f32"), read("final_norm_input").f32s().expect("f32"));
    assert!(e <= 1e-6, "{name}: last layer output NMSE {e:e}");
    let e =
        nmse(hidden[layers + 1].f32s().expect("f32"), read(&format!("hidden.{layers}")).f32s().expect("f32"));
    assert!(e <= 1e-6, "{name}: final norm output NMSE {e:e}");

    if refs.contains("prefix.input_ids") {
        let prefix = ids(&read("prefix.input_ids"));
        let pl = llm.logits_all(&prefix, None, &SingleRank).expect("prefix forward");
        let e = nmse(pl.f32s().expect("f32"), read("prefix.logits").f32s().expect("f32"));
        assert!(e <= 1e-6, "{name}: prefix logits NMSE {e:e}");
    }

    let want = ids(&read("greedy"));
    let params = SamplingParams { max_new_tokens: want.len(), ignore_eos: true, ..Default::default() };
    let got = llm.generate_ids(vec![input.clone()], &params, &mut |_, _| {}).expect("generate");
    assert_eq!(got[0].token_ids, want, "{name}: greedy tokens differ from HF");

    // The same prompt twice in one batch (packed prefill, batched decode) gives the same tokens.
    let got = llm.generate_ids(vec![input.clone(), input], &params, &mut |_, _| {}).expect("generate x2");
    assert_eq!(got[0].token_ids, want, "{name}: batched greedy differs");
    assert_eq!(got[1].token_ids, want, "{name}: batched greedy differs");
}

macro_rules! fixtures {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { check(stringify!($name)); })*
    };
}

trtllm_tests::for_each_fixture!(fixtures);
