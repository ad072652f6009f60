//! TensorRT-LLM's workflow: convert -> build -> run. Engines made from the tiny HF fixtures must give
//! the HF-directory path's logits (tp 1: NMSE <= 1e-10) and greedy tokens; tensor-parallel
//! engines (CPU reference: one thread per rank) the tp-1 greedy tokens and logits NMSE <= 1e-8,
//! also with fewer KV heads than ranks (llama_tied: 4 heads, 1 KV head). Plus the refusals:
//! another converter version, a non-empty output dir, pipeline stages at run time.

use std::path::{Path, PathBuf};
use trtllm_tests::{fixture, nmse};

use tempfile::TempDir;
use trtllm_core::checkpoint::{
    build_engine, convert, rank_file, BuildOptions, ConvertOptions, CONVERTER_VERSION,
};
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::build_model;
use trtllm_core::load::LlmOptions;
use trtllm_core::model::LoadOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::{write_safetensors, SafetensorsFiles};
use trtllm_core::{DType, Mapping, Tensor};

fn input_ids(name: &str) -> Vec<u32> {
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    refs.read("input_ids").expect("input_ids").i32s().expect("i32").iter().map(|&x| x as u32).collect()
}

/// `trtllm convert` then `trtllm build` of fixture `name` into a temp dir; returns (tmp, engine).
fn engine(name: &str, tp: usize, dtype: DType) -> (TempDir, PathBuf) {
    trtllm::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = tmp.path().join("ckpt");
    let opts = ConvertOptions { dtype: Some(dtype), tp_size: tp, ..Default::default() };
    convert(&fixture(name), &ckpt, &opts, &mut |_| {}).unwrap_or_else(|e| panic!("{name}: convert: {e}"));
    let eng = tmp.path().join("engine");
    build_engine(&ckpt, &eng, &BuildOptions::default()).unwrap_or_else(|e| panic!("{name}: build: {e}"));
    (tmp, eng)
}

fn load(dir: &Path, dtype: Option<DType>, tp: Option<usize>) -> Llm {
    trtllm::init();
    let mut opts = LlmOptions {
        kv_block_size: 3,
        max_batch_size: 2,
        max_seq_len: 64,
        tp_size: tp,
        ..Default::default()
    };
    opts.load.dtype = dtype;
    Llm::with_options(dir, opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn logits(llm: &mut Llm, ids: &[u32]) -> Vec<f32> {
    llm.logits_all(ids, None, &SingleRank).expect("forward").to_f32_vec().expect("f32")
}

fn greedy(llm: &mut Llm, ids: &[u32]) -> Vec<u32> {
    let params = SamplingParams { max_new_tokens: 12, ignore_eos: true, ..Default::default() };
    let out = llm
        .generate_ids(vec![ids.to_vec(), ids[..ids.len() / 2].to_vec()], &params, &mut |_, _| {})
        .expect("generate");
    out.into_iter().flat_map(|g| g.token_ids).collect()
}

/// tp 1 engine == HF dir (f32); tp 2 and 4 engines == tp 1 (greedy) and close (logits).
fn check(name: &str) {
    let ids = input_ids(name);
    let mut hf = load(&fixture(name), Some(DType::F32), None);
    let (want_logits, want_tokens) = (logits(&mut hf, &ids), greedy(&mut hf, &ids));

    let (_tmp, eng) = engine(name, 1, DType::F32);
    let mut llm = load(&eng, None, None);
    let e = nmse(&logits(&mut llm, &ids), &want_logits);
    assert!(e <= 1e-10, "{name}: engine logits NMSE {e:e} vs the HF directory");
    assert_eq!(
        greedy(&mut llm, &ids),
        want_tokens,
        "{name}: engine greedy tokens differ from the HF directory"
    );

    for tp in [2, 4] {
        let (_tmp, eng) = engine(name, tp, DType::F32);
        let mut llm = load(&eng, None, None);
        let e = nmse(&logits(&mut llm, &ids), &want_logits);
        assert!(e <= 1e-8, "{name}: tp {tp} logits NMSE {e:e} vs tp 1");
        assert_eq!(greedy(&mut llm, &ids), want_tokens, "{name}: tp {tp} greedy tokens differ from tp 1");
    }
}

#[test]
fn llama() {
    check("llama");
}
#[test]
fn llama_tied_fewer_kv_heads_than_ranks() {
    check("llama_tied");
}
#[test]
fn qwen2() {
    check("qwen2");
}
#[test]
fn gemma3() {
    check("gemma3");
}
#[test]
fn phi3() {
    check("phi3");
}

#[test]
fn hf_dir_sharded_in_memory() {
    let ids = input_ids("llama_tied");
    let mut one = load(&fixture("llama_tied"), Some(DType::F32), None);
    let mut two = load(&fixture("llama_tied"), Some(DType::F32), Some(2));
    let e = nmse(&logits(&mut two, &ids), &logits(&mut one, &ids));
    assert!(e <= 1e-8, "HF dir tp 2 logits NMSE {e:e}");
    assert_eq!(greedy(&mut two, &ids), greedy(&mut one, &ids));
}

#[test]
fn bf16_checkpoint_loads_and_runs() {
    let ids = input_ids("qwen2");
    let (_tmp, eng) = engine("qwen2", 2, DType::BF16);
    let files = SafetensorsFiles::open_files(&[rank_file(&eng, 0)]).expect("rank file");
    let qkv = "model.layers.0.self_attn.qkv_proj.weight";
    assert_eq!(files.info(qkv).expect("qkv").dtype, DType::BF16);
    assert_eq!(files.info("model.norm.weight").expect("norm").dtype, DType::F32, "norms stay f32");
    let mut llm = load(&eng, None, None);
    let mut hf = load(&fixture("qwen2"), Some(DType::BF16), Some(2));
    let e = nmse(&logits(&mut llm, &ids), &logits(&mut hf, &ids));
    assert!(e <= 1e-10, "bf16 engine vs bf16 HF dir at tp 2: NMSE {e:e}");
    assert_eq!(greedy(&mut llm, &ids), greedy(&mut hf, &ids));
}

#[test]
fn engine_options_come_from_the_build_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ckpt, eng) = (tmp.path().join("c"), tmp.path().join("e"));
    trtllm::init();
    convert(&fixture("llama"), &ckpt, &ConvertOptions::default(), &mut |_| {}).expect("convert");
    let b = BuildOptions {
        kv_block_size: Some(8),
        max_batch_size: Some(3),
        max_seq_len: Some(40),
        ..Default::default()
    };
    build_engine(&ckpt, &eng, &b).expect("build");
    let o = LlmOptions::for_dir(&eng).expect("options");
    assert_eq!((o.kv_block_size, o.max_batch_size, o.max_seq_len), (8, 3, 40));
    let mut llm = Llm::new(&eng).expect("load with the engine's limits");
    assert_eq!(greedy(&mut llm, &input_ids("llama")).len(), 24);
    // The checkpoint itself loads too, and tokenizer files came along.
    assert!(ckpt.join("tokenizer.json").exists() && eng.join("tokenizer.json").exists());
    assert!(Llm::new(&ckpt).expect("checkpoint").tokenizer.is_some());
}

#[test]
fn other_converter_version_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = tmp.path().join("c");
    trtllm::init();
    convert(&fixture("llama"), &ckpt, &ConvertOptions::default(), &mut |_| {}).expect("convert");
    let path = ckpt.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    v["converter_version"] = serde_json::json!(CONVERTER_VERSION + 41);
    std::fs::write(&path, v.to_string()).expect("write");
    let err = build_engine(&ckpt, &tmp.path().join("e"), &BuildOptions::default())
        .expect_err("refused")
        .to_string();
    let (theirs, ours) =
        (format!("version {}", CONVERTER_VERSION + 41), format!("version {CONVERTER_VERSION}"));
    assert!(err.contains(&theirs) && err.contains(&ours) && err.contains("config.json"), "{err}");
    assert!(!tmp.path().join("e").exists(), "nothing written on refusal");
    let err = Llm::new(&ckpt).err().expect("load refused").to_string();
    assert!(err.contains(&theirs), "{err}");
}

#[test]
fn existing_output_dir_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    trtllm::init();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(out.join("notes.txt"), "mine").expect("write");
    let mut opts = ConvertOptions::default();
    let err = convert(&fixture("llama"), &out, &opts, &mut |_| {}).expect_err("refused").to_string();
    assert!(err.contains("not empty") && err.contains("--force"), "{err}");
    opts.force = true;
    let err = convert(&fixture("llama"), &out, &opts, &mut |_| {}).expect_err("not ours").to_string();
    assert!(err.contains("not a trtllm checkpoint"), "{err}");
    assert!(out.join("notes.txt").exists(), "a foreign dir is never deleted");
    // Our own checkpoint is replaced with --force, and no temp dir is left behind.
    let ckpt = tmp.path().join("ckpt");
    convert(&fixture("llama"), &ckpt, &ConvertOptions::default(), &mut |_| {}).expect("first");
    assert!(convert(&fixture("llama"), &ckpt, &ConvertOptions::default(), &mut |_| {}).is_err());
    convert(&fixture("llama"), &ckpt, &opts, &mut |_| {}).expect("--force");
    let left: Vec<_> =
        std::fs::read_dir(tmp.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(left.len(), 2, "{left:?}");
}

#[test]
fn pipeline_stages_hold_their_layers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ckpt = tmp.path().join("c");
    trtllm::init();
    let opts = ConvertOptions { pp_size: 2, tp_size: 2, ..Default::default() };
    convert(&fixture("gemma3"), &ckpt, &opts, &mut |_| {}).expect("convert");
    for rank in 0..4 {
        let f = SafetensorsFiles::open_files(&[rank_file(&ckpt, rank)]).expect("rank file");
        let layers: std::collections::BTreeSet<usize> = f
            .names()
            .filter_map(|n| n.strip_prefix("model.layers.")?.split('.').next()?.parse().ok())
            .collect();
        let want: Vec<usize> = if rank < 2 { vec![0, 1, 2] } else { vec![3, 4, 5] };
        assert_eq!(layers.into_iter().collect::<Vec<_>>(), want, "rank {rank}");
    }
    let err = Llm::new(&ckpt).err().expect("pp refused").to_string();
    assert!(err.contains("pp_size 2"), "{err}");
}

#[test]
fn tp_size_mismatch_is_refused() {
    let (_tmp, eng) = engine("llama", 2, DType::F32);
    let opts = LlmOptions { tp_size: Some(4), ..Default::default() };
    let err = Llm::with_options(&eng, opts).err().expect("refused").to_string();
    assert!(err.contains("tp_size 2") && err.contains("tp_size 4"), "{err}");
    // One rank's shard run without its group is an error, not partial sums passed off as logits.
    let load = LoadOptions { mapping: Mapping::new(2, 1, 1).expect("mapping"), ..Default::default() };
    let shard = build_model(&eng, &load).expect("rank 1");
    let mut llm = Llm::from_model(shard.model, None, LlmOptions::default()).expect("llm");
    let err = llm.logits_all(&input_ids("llama"), None, &SingleRank).expect_err("refused").to_string();
    assert!(err.contains("sharded for tp_size 2"), "{err}");
}

#[test]
fn bad_rank_file_reports_every_problem() {
    let (_tmp, eng) = engine("llama", 1, DType::F32);
    let path = rank_file(&eng, 0);
    let files = SafetensorsFiles::open_files(std::slice::from_ref(&path)).expect("open");
    let mut tensors: Vec<(String, Tensor)> =
        files.names().map(|n| (n.clone(), files.read(n).expect("read"))).collect();
    drop(files);
    tensors.retain(|(n, _)| n != "model.norm.weight");
    for (n, t) in &mut tensors {
        if n == "model.layers.1.mlp.down_proj.weight" {
            *t = t.narrow0(0, 10).expect("narrow");
        }
    }
    tensors.push(("model.layers.9.extra.weight".into(), Tensor::zeros(&[2])));
    std::fs::remove_file(&path).expect("rm (the engine file is a hard link)");
    write_safetensors(&path, &tensors, None).expect("write");
    let err = Llm::new(&eng).err().expect("refused").to_string();
    for want in [
        "rank0.safetensors",
        "missing tensor `model.norm.weight`",
        "model.layers.1.mlp.down_proj.weight",
        "model.layers.9.extra.weight",
    ] {
        assert!(err.contains(want), "`{want}` not in:\n{err}");
    }
}
