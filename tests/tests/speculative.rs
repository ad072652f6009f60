//! Speculative decoding (prompt lookup and draft models) on the tiny fixtures, CPU f32: greedy
//! output identical to plain decoding for several architectures, batched, with prefix caching,
//! with a self-draft and a different draft model; seeded sampling, penalties, logprobs, stop ids
//! and `max_new_tokens` behave as without speculation; blocks all come back.

use std::sync::Arc;

use trtllm_core::llm::Llm;
use trtllm_core::load::{load_model, LlmOptions, SpecOptions};
use trtllm_core::runner::{ModelRunner, SamplingParams};
use trtllm_core::serve::{Scheduler, SchedulerConfig, SeqRequest, SpecStats};
use trtllm_core::{DType, Device};
use trtllm_tests::fixture;

fn opts(spec: Option<SpecOptions>) -> LlmOptions {
    trtllm::init();
    let mut o = LlmOptions { kv_block_size: 4, max_batch_size: 8, max_seq_len: 160, ..Default::default() };
    o.load.dtype = Some(DType::F32);
    o.speculative = spec;
    o
}

/// Prompts that repeat themselves (prompt lookup finds drafts in them) and one that does not.
fn prompts() -> Vec<Vec<u32>> {
    let rep = |p: &[u32], n: usize| p.iter().cycle().take(n).copied().collect::<Vec<u32>>();
    vec![
        rep(&[11, 45, 97, 23, 150, 7], 27),
        rep(&[301, 5, 77, 5, 12], 18),
        (0..21u32).map(|i| 3 + (i * 37) % 300).collect(),
        rep(&[200, 201, 202], 10),
    ]
}

fn generate(model: &str, spec: Option<SpecOptions>, p: &SamplingParams) -> (Vec<Vec<u32>>, SpecStats) {
    let mut llm = Llm::with_options(fixture(model), opts(spec)).expect("load");
    let g = llm.generate_ids(prompts(), p, &mut |_, _| {}).expect("generate");
    (g.into_iter().map(|g| g.token_ids).collect(), llm.take_spec_stats())
}

fn greedy(n: usize) -> SamplingParams {
    SamplingParams { ignore_eos: true, ..SamplingParams::greedy(n) }
}

#[test]
fn ngram_greedy_is_identical_across_models() {
    let mut total = SpecStats::default();
    for model in ["llama", "qwen2", "gemma2", "gpt2", "phi3", "mistral_swa", "qwen3"] {
        let (plain, none) = generate(model, None, &greedy(40));
        assert_eq!(none, SpecStats::default(), "{model}: no speculation without options");
        for k in [1, 3, 5] {
            let (spec, st) = generate(model, Some(SpecOptions::ngram(k)), &greedy(40));
            assert_eq!(spec, plain, "{model}, K = {k}: speculative greedy output differs");
            // Random weights: how much is accepted depends on the model, drafting does not.
            assert!(st.draft_tokens > 0 && st.accepted_tokens <= st.draft_tokens, "{model}, K = {k}: {st:?}");
            assert!(st.verify_rows <= st.emitted_tokens, "{model}: {st:?}");
            total.add(&st);
        }
    }
    assert!(total.accepted_tokens > 20 && total.tokens_per_step() > 1.2, "{total:?}");
}

#[test]
fn draft_models_greedy_is_identical() {
    let (plain, _) = generate("llama", None, &greedy(32));
    // A self-draft accepts everything; another model of the same vocabulary much less.
    let (own, st) = generate("llama", Some(SpecOptions::draft(fixture("llama"), 4)), &greedy(32));
    assert_eq!(own, plain);
    assert!(st.acceptance_rate() > 0.95, "self-draft: {st:?}");
    assert!(st.tokens_per_step() > 4.0, "self-draft: {st:?}");
    let (other, st) = generate("llama", Some(SpecOptions::draft(fixture("llama_tied"), 3)), &greedy(32));
    assert_eq!(other, plain);
    assert!(st.draft_tokens > 0, "{st:?}");
    let (plain, _) = generate("qwen2", None, &greedy(32));
    let (other, _) = generate("qwen2", Some(SpecOptions::draft(fixture("llama"), 5)), &greedy(32));
    assert_eq!(other, plain);
}

#[test]
fn seeded_sampling_penalties_and_logprobs_match_plain() {
    let p = SamplingParams {
        temperature: 0.9,
        top_k: 40,
        top_p: 0.95,
        seed: Some(7),
        ignore_eos: true,
        ..SamplingParams::greedy(36)
    };
    let pen = SamplingParams {
        repetition_penalty: 1.3,
        frequency_penalty: 0.4,
        presence_penalty: 0.2,
        ..p.clone()
    };
    let low = SamplingParams { temperature: 0.3, ..p.clone() };
    for params in [p, pen, low] {
        let (plain, _) = generate("llama", None, &params);
        let (spec, st) = generate("llama", Some(SpecOptions::ngram(4)), &params);
        assert_eq!(spec, plain, "{params:?}");
        assert!(st.draft_tokens > 0, "{params:?}: {st:?}");
        let (draft, _) = generate("llama", Some(SpecOptions::draft(fixture("llama"), 3)), &params);
        assert_eq!(draft, plain, "{params:?}");
    }
}

/// Every sequence's tokens and logprobs from a scheduler over `model` (prefix caching on), the
/// requests added in two waves (the second reuses the first's cached prefixes); all blocks must
/// be free at the end.
fn serve(
    model: &str,
    spec: Option<SpecOptions>,
    params: &SamplingParams,
) -> (Vec<Vec<u32>>, Vec<Vec<f32>>, SpecStats) {
    let o = opts(spec.clone());
    let m = load_model(&fixture(model), &o).expect("load");
    let kv =
        ModelRunner::make_kv(m.as_ref(), Device::Cpu, DType::F32, Default::default(), o.kv_block_size, 64)
            .expect("kv");
    let mut runner = ModelRunner::new(m, kv, 8, 160, false);
    if let Some(sp) = &spec {
        runner.load_draft(sp, &fixture(model), &o).expect("draft");
    }
    let cfg = SchedulerConfig {
        max_batch_size: 4,
        max_num_tokens: 64,
        max_seq_len: 160,
        prefix_caching: true,
        speculative: spec,
    };
    let mut s = Scheduler::new(runner, cfg, vec![2]).expect("scheduler");
    let ps = prompts();
    let n = 2 * ps.len();
    let (mut toks, mut lps) = (vec![vec![]; n], vec![vec![]; n]);
    let mut stats = SpecStats::default();
    let params = Arc::new(params.clone());
    let add = |s: &mut Scheduler, wave: usize| {
        for (i, p) in ps.iter().enumerate() {
            let id = (wave * ps.len() + i) as u64;
            let r = SeqRequest { id, prompt: p.clone(), params: params.clone(), seed: Some(id) };
            s.add(r).expect("add");
        }
    };
    add(&mut s, 0);
    let mut steps = 0;
    while s.has_work() {
        let out = s.step().expect("step");
        stats.add(&out.spec);
        for t in out.tokens {
            toks[t.seq as usize].push(t.token);
            if let Some(l) = t.logprob {
                lps[t.seq as usize].push(l.logprob);
            }
        }
        steps += 1;
        if steps == 3 {
            add(&mut s, 1);
        }
        assert!(steps < 2000, "no progress");
    }
    assert_eq!(s.blocks().num_available(), s.blocks().num_total(), "blocks leaked");
    (toks, lps, stats)
}

#[test]
fn batched_with_prefix_caching_logprobs_and_stops() {
    for model in ["llama", "gemma2"] {
        let p = SamplingParams { logprobs: Some(3), ignore_eos: true, ..SamplingParams::greedy(30) };
        let (plain, plp, _) = serve(model, None, &p);
        for spec in [SpecOptions::ngram(4), SpecOptions::draft(fixture(model), 3)] {
            let (toks, lps, st) = serve(model, Some(spec.clone()), &p);
            assert_eq!(toks, plain, "{model} {spec:?}");
            assert!(st.accepted_tokens > 0, "{model} {spec:?}: {st:?}");
            for (a, b) in lps.iter().flatten().zip(plp.iter().flatten()) {
                assert!((a - b).abs() < 1e-3, "{model}: logprob {a} vs {b}");
            }
            assert_eq!(lps.iter().map(Vec::len).sum::<usize>(), plp.iter().map(Vec::len).sum::<usize>());
        }
        // A stop id inside what would be accepted drafts, and max_new_tokens: same cut.
        let stop = plain[0][12];
        let p = SamplingParams { stop_token_ids: vec![stop], ignore_eos: true, ..SamplingParams::greedy(25) };
        let (plain, _, _) = serve(model, None, &p);
        let (spec, _, _) = serve(model, Some(SpecOptions::ngram(6)), &p);
        assert_eq!(spec, plain, "{model}: stop id {stop}");
        assert!(plain.iter().all(|t| t.len() <= 25) && plain[0].len() <= 13);
    }
}
