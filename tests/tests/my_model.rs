//! The out-of-tree model of examples/my_model: a crate outside trtllm-models registers
//! `MyLlamaForCausalLM` (a parallel-residual Llama with q/k norm), and the central factory finds,
//! validates, loads and runs it by that string — no central file lists it.
//!
//! The checkpoint is made here, at test time: `config.json` + random weights whose names come
//! from the model's own weight plan.

use std::path::Path;

use my_model::{write_tiny_checkpoint, ARCH};
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::build_model;
use trtllm_core::load::LlmOptions;
use trtllm_core::model::{architectures, inspect, lookup, LoadOptions};
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::{DType, Mapping};

/// Keep both the zoo and the example crate linked (inventory only sees linked crates).
fn link() {
    trtllm::init();
    my_model::link();
}

fn checkpoint(seed: u64) -> tempfile::TempDir {
    link();
    let dir = tempfile::tempdir().expect("tempdir");
    write_tiny_checkpoint(dir.path(), seed).expect("write checkpoint");
    dir
}

fn engine(dir: &Path) -> Llm {
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    Llm::with_options(dir, opts).expect("load MyLlamaForCausalLM")
}

#[test]
fn registered_next_to_the_zoo() {
    link();
    let entry = lookup(ARCH).expect("MyLlamaForCausalLM is registered");
    assert_eq!(entry.type_name, "my_model::MyLlama");
    assert_eq!(entry.architectures, [ARCH]);
    assert_eq!(entry.layout.prefix, "model");

    let all = architectures();
    assert!(all.contains(&(ARCH, "my_model::MyLlama")), "{all:?}");
    // Next to every architecture of the zoo, each served by a type of trtllm-models.
    let zoo = [
        "GPT2LMHeadModel",
        "Gemma2ForCausalLM",
        "Gemma3ForCausalLM",
        "Gemma3ForConditionalGeneration",
        "GemmaForCausalLM",
        "LlamaForCausalLM",
        "MistralForCausalLM",
        "MixtralForCausalLM",
        "Phi3ForCausalLM",
        "Qwen2ForCausalLM",
        "Qwen3ForCausalLM",
        "Qwen3MoeForCausalLM",
    ];
    for arch in zoo {
        let ty = all.iter().find(|(a, _)| *a == arch).map(|(_, t)| *t);
        assert!(ty.is_some_and(|t| t.starts_with("trtllm_models::")), "{arch}: {ty:?}");
    }
    // The list is sorted and has each string once.
    let names: Vec<&str> = all.iter().map(|(a, _)| *a).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted);

    // A typo is answered with the nearest registered name, ours included.
    let err = lookup("MyLlamaForCasualLM").err().expect("typo is an error").to_string();
    assert!(err.contains("did you mean `MyLlamaForCausalLM`"), "{err}");
}

#[test]
fn weight_plan_is_the_layers_declarations() {
    let dir = checkpoint(1);
    let (cfg, entry, specs, report) = inspect(dir.path(), Mapping::default()).expect("inspect");
    assert_eq!(cfg.architecture, ARCH);
    assert!(cfg.arch.qk_norm, "the config adapter ran");
    assert_eq!(entry.type_name, "my_model::MyLlama");
    assert!(report.is_ok(), "{}", report.render());

    let sources: Vec<&str> = specs.iter().flat_map(|s| s.sources.iter().map(|x| x.name.as_str())).collect();
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.1.self_attn.q_norm.weight",
        "model.layers.1.self_attn.k_norm.weight",
        "model.layers.1.self_attn.o_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
    ] {
        assert!(sources.contains(&name), "{name} not in the plan: {sources:?}");
    }
    // Parallel residual: no norm between attention and MLP.
    assert!(!sources.iter().any(|s| s.contains("post_attention_layernorm")), "{sources:?}");
    // q/k/v fused into one engine tensor, gate/up into another.
    let qkv = specs.iter().find(|s| s.name == "model.layers.0.self_attn.qkv_proj.weight").expect("qkv");
    let qkv_src: Vec<&str> = qkv.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        qkv_src,
        [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.self_attn.v_proj.weight"
        ]
    );
    assert_eq!(qkv.shape, [64 + 2 * 32, 64]);

    // Every checkpoint tensor is used, and the factory loads it.
    let files = SafetensorsFiles::open_dir(dir.path()).expect("open");
    assert_eq!(files.names().count(), sources.len());
    let opts = LoadOptions { dtype: Some(DType::F32), ..Default::default() };
    let loaded = build_model(dir.path(), &opts).expect("build_model");
    assert_eq!(loaded.entry.type_name, "my_model::MyLlama");
    assert_eq!(loaded.specs.len(), specs.len());
}

#[test]
fn generates_deterministic_tokens() {
    let dir = checkpoint(7);
    let prompt = vec![1u32, 17, 42, 99, 7, 130, 5];
    let params = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(12) };

    let mut llm = engine(dir.path());
    let a = llm.generate_ids(vec![prompt.clone()], &params, &mut |_, _| {}).expect("generate");
    let tokens = a[0].token_ids.clone();
    assert_eq!(tokens.len(), 12);
    assert!(tokens.iter().all(|&t| t < 256));
    // Not a degenerate model: greedy does not just repeat one token.
    assert!(tokens.iter().any(|&t| t != tokens[0]), "{tokens:?}");

    // A fresh engine over the same directory: the same tokens.
    let b = engine(dir.path()).generate_ids(vec![prompt.clone()], &params, &mut |_, _| {}).expect("generate");
    assert_eq!(b[0].token_ids, tokens);

    // Two copies in one packed batch (shared prefill forward, batched decode): the same tokens.
    let c = llm.generate_ids(vec![prompt.clone(), prompt.clone()], &params, &mut |_, _| {}).expect("batched");
    assert_eq!(c[0].token_ids, tokens);
    assert_eq!(c[1].token_ids, tokens);

    // Decode through the KV cache agrees with recomputing the whole sequence: the logits of the
    // last position of one prefill over prompt + generated[..k] pick generated[k].
    let mut seq = prompt.clone();
    for &want in &tokens[..4] {
        let logits = llm.logits_all(&seq, None, &SingleRank).expect("prefill");
        let v = logits.dim(1);
        let last = &logits.f32s().expect("f32")[(seq.len() - 1) * v..];
        assert_eq!(trtllm_core::ops::argmax(last) as u32, want);
        seq.push(want);
    }

    // Another seed is another model.
    let other = checkpoint(8);
    let d = engine(other.path()).generate_ids(vec![prompt], &params, &mut |_, _| {}).expect("generate");
    assert_ne!(d[0].token_ids, tokens);
}

/// The generated wiring is the parallel residual: for one token at position 0 attention is the
/// identity on V (softmax over one key; RoPE and q/k norm do not matter), so the logits can be
/// computed by hand from the checkpoint: `x + o(v(n)) + down(silu(gate(n)) * up(n))`, n = norm(x).
#[test]
fn one_token_matches_a_hand_written_parallel_block() {
    let dir = checkpoint(3);
    let files = SafetensorsFiles::open_dir(dir.path()).expect("open");
    let w = |n: &str| files.read(n).and_then(|t| t.to_f32_vec()).expect(n);
    let (h, i, v, nh, nkv, hd) = (64usize, 128usize, 256usize, 4usize, 2usize, 16usize);
    let matvec = |m: &[f32], x: &[f32], rows: usize| -> Vec<f32> {
        (0..rows).map(|r| m[r * x.len()..(r + 1) * x.len()].iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    };
    let rms = |x: &[f32], g: &[f32]| -> Vec<f32> {
        let ms = x.iter().map(|a| a * a).sum::<f32>() / x.len() as f32;
        let r = 1.0 / (ms + 1e-6).sqrt();
        x.iter().zip(g).map(|(a, b)| a * r * b).collect()
    };
    let tok = 42usize;
    let mut x = w("model.embed_tokens.weight")[tok * h..(tok + 1) * h].to_vec();
    for l in 0..2 {
        let p = format!("model.layers.{l}");
        let n = rms(&x, &w(&format!("{p}.input_layernorm.weight")));
        let vv = matvec(&w(&format!("{p}.self_attn.v_proj.weight")), &n, nkv * hd);
        // Each query head reads its KV group's value.
        let heads: Vec<f32> = (0..nh).flat_map(|q| vv[(q / (nh / nkv)) * hd..][..hd].to_vec()).collect();
        let attn = matvec(&w(&format!("{p}.self_attn.o_proj.weight")), &heads, h);
        let g = matvec(&w(&format!("{p}.mlp.gate_proj.weight")), &n, i);
        let u = matvec(&w(&format!("{p}.mlp.up_proj.weight")), &n, i);
        let act: Vec<f32> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
        let mlp = matvec(&w(&format!("{p}.mlp.down_proj.weight")), &act, h);
        x = (0..h).map(|j| x[j] + attn[j] + mlp[j]).collect();
    }
    let n = rms(&x, &w("model.norm.weight"));
    let want = matvec(&w("lm_head.weight"), &n, v);

    let mut llm = engine(dir.path());
    let got = llm.logits_all(&[tok as u32], None, &SingleRank).expect("forward");
    assert_eq!(got.shape(), [1, v]);
    let got = got.f32s().expect("f32");
    let err = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum::<f32>()
        / want.iter().map(|b| b * b).sum::<f32>();
    assert!(err < 1e-10, "NMSE {err:e} between the engine and the hand-written parallel block");
}
