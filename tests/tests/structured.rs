//! Structured outputs through `Llm` on the tiny Llama fixture (CPU, f32): batches of sampled
//! sequences under a JSON schema and a choice, every output inside its grammar, and plain
//! greedy output unchanged by the constrained runs before it (mixed batches of constrained and
//! plain requests: tests/server/test_structured.py). And the
//! CPU benchmark of constrained decoding (ignored; `TRTLLM_BENCH_MODEL` names a model dir):
//!
//! ```text
//! TRTLLM_BENCH_MODEL=/path/to/SmolLM2-135M-Instruct cargo test --release -p trtllm-tests \
//!     --test structured -- --ignored --nocapture constrained_decode_overhead
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::text::{GrammarCompiler, GrammarSpec};
use trtllm_core::DType;

fn opts(batch: usize, max_seq_len: usize) -> LlmOptions {
    trtllm::init();
    let mut o = LlmOptions { kv_block_size: 16, max_batch_size: batch, max_seq_len, ..Default::default() };
    o.load.dtype = Some(DType::F32);
    o
}

fn compiler(llm: &Llm) -> GrammarCompiler {
    GrammarCompiler::new(llm.tokenizer().expect("tokenizer"), llm.model().config().vocab_size)
        .expect("compiler")
}

#[test]
fn constrained_batches_stay_in_their_grammars() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("llama");
    let mut llm = Llm::with_options(&dir, opts(16, 256)).expect("load");
    let c = compiler(&llm);
    let tok = llm.tokenizer().expect("tokenizer");
    let prompts: Vec<Vec<u32>> =
        ["hello", "a b c", "The quick brown fox"].iter().map(|p| tok.encode(p).expect("encode")).collect();
    let plain = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(12) };
    let alone = llm.generate_ids(prompts.clone(), &plain, &mut |_, _| {}).expect("plain");
    let schema = json!({"type": "object", "properties": {"k": {"enum": ["x", "y", "z"]}, "n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["k", "n"], "additionalProperties": false});
    let g = Arc::new(c.compile(&GrammarSpec::JsonSchema(schema)).expect("schema"));
    let choice =
        Arc::new(c.compile(&GrammarSpec::Choice(vec!["alpha".into(), "beta".into()])).expect("choice"));
    // Six sampled sequences in one batch, each walking its own copy of the grammar.
    let json_params =
        SamplingParams { temperature: 1.0, seed: Some(1), grammar: Some(g), ..SamplingParams::greedy(120) };
    let mut many = prompts.clone();
    many.extend(prompts.iter().cloned());
    let outs = llm.generate_ids(many, &json_params, &mut |_, _| {}).expect("json");
    for o in &outs {
        let v: Value = serde_json::from_str(&o.text).unwrap_or_else(|e| panic!("{:?}: {e}", o.text));
        assert!(["x", "y", "z"].contains(&v["k"].as_str().expect("k")), "{}", o.text);
        assert!(v["n"].as_u64().is_some_and(|n| n <= 9), "{}", o.text);
    }
    let choice_params = SamplingParams {
        temperature: 1.0,
        seed: Some(2),
        grammar: Some(choice),
        ..SamplingParams::greedy(20)
    };
    let outs = llm.generate_ids(prompts.clone(), &choice_params, &mut |_, _| {}).expect("choice");
    for o in &outs {
        assert!(o.text == "alpha" || o.text == "beta", "{:?}", o.text);
    }
    let again = llm.generate_ids(prompts, &plain, &mut |_, _| {}).expect("plain again");
    for (a, b) in alone.iter().zip(&again) {
        assert_eq!(a.token_ids, b.token_ids, "plain greedy output changed after constrained runs");
    }
}

/// Decode-step time at batch 32 with and without a JSON-schema grammar on every row (a schema
/// the model cannot finish within the budget, so both runs decode the same number of steps).
#[test]
#[ignore]
fn constrained_decode_overhead() {
    let dir = std::env::var("TRTLLM_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("llama"));
    let batch = 32;
    let new = 48;
    let mut llm = Llm::with_options(&dir, opts(batch, 512)).expect("load");
    let c = compiler(&llm);
    let schema = json!({
        "type": "object",
        "properties": {"items": {"type": "array", "minItems": 100, "items": {"type": "object",
            "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}},
            "required": ["name", "qty", "tags"], "additionalProperties": false}}},
        "required": ["items"], "additionalProperties": false
    });
    let g = Arc::new(c.compile(&GrammarSpec::JsonSchema(schema)).expect("schema"));
    let tok = llm.tokenizer().expect("tokenizer");
    let prompts: Vec<Vec<u32>> = (0..batch)
        .map(|i| tok.encode(&format!("List {i} items in a shopping cart as JSON:")).expect("encode"))
        .collect();
    for temperature in [0.0, 0.7] {
        let plain =
            SamplingParams { ignore_eos: true, temperature, seed: Some(1), ..SamplingParams::greedy(new) };
        let guided = SamplingParams { grammar: Some(g.clone()), ..plain.clone() };
        let mut best = [f64::MAX; 2];
        let mut outs = vec![];
        for round in 0..5 {
            for (k, p) in [&plain, &guided].into_iter().enumerate() {
                let out = llm.generate_ids(prompts.clone(), p, &mut |_, _| {}).expect("generate");
                assert!(
                    out.iter().all(|o| o.token_ids.len() == new),
                    "round {round}: every row decodes {new} tokens"
                );
                best[k] = best[k].min(out[0].decode_time.as_secs_f64() / (new - 1) as f64);
                if k == 1 {
                    outs = out;
                }
            }
        }
        // The masks alone: the guided outputs replayed through fresh matchers, one row after
        // another (the engine spreads them over the cores, beside the forward).
        let t0 = std::time::Instant::now();
        for o in &outs {
            let mut m = g.matcher();
            for &t in &o.token_ids {
                m.mask().expect("mask");
                m.accept(t).expect("accept");
            }
        }
        let masks = t0.elapsed().as_secs_f64() / new as f64;
        println!(
            "batch {batch}, {new} tokens, temperature {temperature}: decode step {:.2} ms plain, {:.2} ms with a JSON-schema grammar on every row: {:+.1}%; the {batch} masks of a step computed serially: {:.2} ms",
            best[0] * 1e3,
            best[1] * 1e3,
            (best[1] / best[0] - 1.0) * 100.0,
            masks * 1e3
        );
    }
}
