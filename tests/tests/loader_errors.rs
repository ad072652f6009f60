//! The checkpoint loader on corrupted inputs: every case is an `Err` (never a panic) whose
//! message names the file and the tensor or config field at fault. The checkpoints are tiny
//! Llamas written here (hidden 16, 2 heads, 1 KV head, 1 layer, intermediate 32, vocab 32).

use std::path::{Path, PathBuf};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use trtllm_core::config::ModelConfig;
use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::build_model;
use trtllm_core::load::LlmOptions;
use trtllm_core::model::LoadOptions;
use trtllm_core::weights::{write_safetensors, SafetensorsFiles};
use trtllm_core::{DType, Tensor};

// ---------------------------------------------------------------------------------------------
// the tiny valid checkpoint

const H: usize = 16;
const HEADS: usize = 2;
const KV_HEADS: usize = 1;
const HEAD_DIM: usize = H / HEADS;
const INTER: usize = 32;
const VOCAB: usize = 32;

fn llama_config() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": H,
        "intermediate_size": INTER,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "num_hidden_layers": 1,
        "vocab_size": VOCAB,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "torch_dtype": "float32",
        "bos_token_id": 1,
        "eos_token_id": 2
    })
}

/// The HF tensors of the tiny Llama, seeded random ~U(-1, 1) (norm weights around 1).
fn llama_tensors() -> Vec<(String, Tensor)> {
    let mut r = SmallRng::seed_from_u64(7);
    let mut t = |name: &str, shape: &[usize], base: f32| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| base + r.random_range(-1.0f32..1.0)).collect();
        (name.to_string(), Tensor::from_f32(v, shape).expect("tensor"))
    };
    let l = "model.layers.0";
    vec![
        t("model.embed_tokens.weight", &[VOCAB, H], 0.0),
        t(&format!("{l}.input_layernorm.weight"), &[H], 1.0),
        t(&format!("{l}.self_attn.q_proj.weight"), &[HEADS * HEAD_DIM, H], 0.0),
        t(&format!("{l}.self_attn.k_proj.weight"), &[KV_HEADS * HEAD_DIM, H], 0.0),
        t(&format!("{l}.self_attn.v_proj.weight"), &[KV_HEADS * HEAD_DIM, H], 0.0),
        t(&format!("{l}.self_attn.o_proj.weight"), &[H, HEADS * HEAD_DIM], 0.0),
        t(&format!("{l}.post_attention_layernorm.weight"), &[H], 1.0),
        t(&format!("{l}.mlp.gate_proj.weight"), &[INTER, H], 0.0),
        t(&format!("{l}.mlp.up_proj.weight"), &[INTER, H], 0.0),
        t(&format!("{l}.mlp.down_proj.weight"), &[H, INTER], 0.0),
        t("model.norm.weight", &[H], 1.0),
        t("lm_head.weight", &[VOCAB, H], 0.0),
    ]
}

fn write_config(dir: &Path, cfg: &Value) {
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(cfg).expect("json"))
        .expect("write config");
}

/// A tiny Llama directory: config.json + model.safetensors, each optionally tweaked.
fn llama_dir(
    tweak_cfg: impl FnOnce(&mut Value),
    tweak_tensors: impl FnOnce(&mut Vec<(String, Tensor)>),
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = llama_config();
    tweak_cfg(&mut cfg);
    write_config(dir.path(), &cfg);
    let mut tensors = llama_tensors();
    tweak_tensors(&mut tensors);
    write_safetensors(&dir.path().join("model.safetensors"), &tensors, None).expect("write safetensors");
    dir
}

fn valid_dir() -> tempfile::TempDir {
    llama_dir(|_| {}, |_| {})
}

/// Write `tensors` as shards (`groups[i]` = indices of shard i) plus the index.
fn write_sharded(dir: &Path, tensors: &[(String, Tensor)], groups: &[Vec<usize>]) {
    let n = groups.len();
    let mut weight_map = serde_json::Map::new();
    for (si, g) in groups.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", si + 1);
        let part: Vec<(String, Tensor)> = g.iter().map(|&i| tensors[i].clone()).collect();
        write_safetensors(&dir.join(&file), &part, None).expect("write shard");
        for (name, _) in &part {
            weight_map.insert(name.clone(), json!(file));
        }
    }
    write_index(dir, Value::Object(weight_map));
}

fn write_index(dir: &Path, weight_map: Value) {
    let index = json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).expect("write index");
}

fn load_opts() -> LoadOptions {
    LoadOptions { dtype: Some(DType::F32), ..Default::default() }
}

// ---------------------------------------------------------------------------------------------
// error helpers

/// The error message of `f`, failing the test on `Ok` or on a panic.
fn err_msg<T>(what: &str, f: impl FnOnce() -> trtllm_core::Result<T>) -> String {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_)) => panic!("{what}: loaded, expected an error"),
        Ok(Err(e)) => e.to_string(),
        Err(p) => {
            let m = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("{what}: panicked instead of returning an error: {m:?}")
        }
    }
}

fn build_err(what: &str, dir: &Path) -> String {
    trtllm::init();
    err_msg(what, || build_model(dir, &load_opts()).map(|_| ()))
}

fn open_err(what: &str, file: &Path) -> String {
    err_msg(what, || SafetensorsFiles::open_files(&[file.to_path_buf()]).map(|_| ()))
}

fn assert_mentions(what: &str, msg: &str, needles: &[&str]) {
    for n in needles {
        assert!(msg.contains(n), "{what}: message does not mention `{n}`:\n{msg}");
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().expect("file name").to_string_lossy().into_owned()
}

/// A raw safetensors file: 8-byte little-endian header length, header, data.
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A dir with a valid config and `bytes` as model.safetensors.
fn dir_with_safetensors(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &llama_config());
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).expect("write");
    (dir, path)
}

fn valid_bytes() -> Vec<u8> {
    std::fs::read(valid_dir().path().join("model.safetensors")).expect("read")
}

// ---------------------------------------------------------------------------------------------
// positive

#[test]
fn valid_checkpoint_loads_and_runs() {
    trtllm::init();
    let dir = valid_dir();
    let loaded = build_model(dir.path(), &load_opts()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.model.config().hidden_size, H);
    assert_eq!(loaded.model.config().num_key_value_heads, KV_HEADS);
    assert!(loaded.entry.architectures.contains(&"LlamaForCausalLM"));
    let mut llm = Llm::from_model(
        loaded.model,
        None,
        LlmOptions { kv_block_size: 4, max_batch_size: 1, max_seq_len: 16, ..Default::default() },
    )
    .expect("engine");
    let logits = llm.logits_all(&[1, 5, 9, 30, 2], None, &SingleRank).expect("forward");
    assert_eq!(logits.shape(), [5, VOCAB]);
    assert!(logits.f32s().expect("f32").iter().all(|v| v.is_finite()));
}

#[test]
fn sharded_checkpoint_gives_identical_logits() {
    trtllm::init();
    let tensors = llama_tensors();
    let single = valid_dir();
    let sharded = tempfile::tempdir().expect("tempdir");
    write_config(sharded.path(), &llama_config());
    // Interleaved, so every layer's tensors span both shards.
    let groups = vec![(0..tensors.len()).step_by(2).collect(), (1..tensors.len()).step_by(2).collect()];
    write_sharded(sharded.path(), &tensors, &groups);
    assert!(!sharded.path().join("model.safetensors").exists());

    let opts = || {
        let mut o = LlmOptions { kv_block_size: 4, max_batch_size: 1, max_seq_len: 16, ..Default::default() };
        o.load.dtype = Some(DType::F32);
        o
    };
    let ids = [3u32, 1, 4, 1, 5, 9, 2, 6, 31];
    let a = Llm::with_options(single.path(), opts())
        .expect("single")
        .logits_all(&ids, None, &SingleRank)
        .expect("forward");
    let b = Llm::with_options(sharded.path(), opts())
        .expect("sharded")
        .logits_all(&ids, None, &SingleRank)
        .expect("forward");
    assert_eq!(a.shape(), [ids.len(), VOCAB]);
    assert_eq!(a.f32s().expect("f32"), b.f32s().expect("f32"), "sharded and single-file logits differ");

    let files = SafetensorsFiles::open_dir(sharded.path()).expect("open sharded");
    assert_eq!(files.names().count(), tensors.len());
    assert_eq!(
        file_name(files.file_of("lm_head.weight").expect("lm_head")),
        "model-00002-of-00002.safetensors"
    );
}

// ---------------------------------------------------------------------------------------------
// corrupted safetensors

#[test]
fn truncated_file() {
    let bytes = valid_bytes();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    // Inside the length prefix, inside the header, at the end of the header, inside the data, one byte short.
    for keep in [0, 4, 8 + header_len / 2, 8 + header_len, bytes.len() / 2, bytes.len() - 10, bytes.len() - 1]
    {
        let (dir, path) = dir_with_safetensors(&bytes[..keep]);
        let what = format!("truncated to {keep} of {} bytes", bytes.len());
        let msg = open_err(&what, &path);
        assert_mentions(&what, &msg, &[&path.display().to_string()]);
        let msg = build_err(&what, dir.path());
        assert_mentions(&what, &msg, &["model.safetensors"]);
    }
}

#[test]
fn header_length_prefix_larger_than_file() {
    let bytes = valid_bytes();
    for claimed in
        [bytes.len() as u64, bytes.len() as u64 * 1000, 99_000_000, 200_000_000, u64::MAX / 2, u64::MAX]
    {
        let mut b = bytes.clone();
        b[..8].copy_from_slice(&claimed.to_le_bytes());
        let (dir, path) = dir_with_safetensors(&b);
        let what = format!("header length {claimed}");
        let msg = open_err(&what, &path);
        assert_mentions(&what, &msg, &[&path.display().to_string(), "header"]);
        build_err(&what, dir.path());
    }
}

#[test]
fn bad_header_json() {
    for header in [
        r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]"#,
        "not json at all",
        r#"{"w": 5}"#,
        "\u{0}\u{0}\u{0}",
    ] {
        let (dir, path) = dir_with_safetensors(&raw_safetensors(header, &[0u8; 8]));
        let what = format!("header {header:?}");
        let msg = open_err(&what, &path);
        assert_mentions(&what, &msg, &[&path.display().to_string(), "header"]);
        build_err(&what, dir.path());
    }
    // Not UTF-8.
    let mut b = raw_safetensors("{\"a\": 1}", &[]);
    b[9] = 0xff;
    let (_dir, path) = dir_with_safetensors(&b);
    let msg = open_err("non-UTF-8 header", &path);
    assert_mentions("non-UTF-8 header", &msg, &[&path.display().to_string()]);
}

#[test]
fn header_offsets_out_of_range() {
    let data = [0u8; 16];
    let cases = [
        // Past the end of the data section.
        r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "big": {"dtype": "F32", "shape": [100], "data_offsets": [8, 408]}}"#,
        // Not starting at 0 / overlapping.
        r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}"#,
        r#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "v": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#,
        // End before start.
        r#"{"w": {"dtype": "F32", "shape": [0], "data_offsets": [16, 0]}}"#,
        // Offsets that disagree with shape x dtype.
        r#"{"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 16]}}"#,
        // Shape whose element count overflows.
        r#"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 16]}}"#,
        // Huge offsets.
        r#"{"w": {"dtype": "F32", "shape": [4], "data_offsets": [18446744073709551600, 18446744073709551615]}}"#,
    ];
    for header in cases {
        let (dir, path) = dir_with_safetensors(&raw_safetensors(header, &data));
        let what = format!("header {header}");
        let msg = open_err(&what, &path);
        assert_mentions(&what, &msg, &[&path.display().to_string()]);
        build_err(&what, dir.path());
    }
}

#[test]
fn offsets_past_data_name_the_tensor() {
    // Consistent with the header but the data section was cut: the message names the tensor
    // when it can tell which one.
    let header = r#"{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "cut_here": {"dtype": "F32", "shape": [4], "data_offsets": [16, 32]}}"#;
    let (_dir, path) = dir_with_safetensors(&raw_safetensors(header, &[0u8; 32]));
    let msg = open_err("gap before `cut_here`", &path);
    assert_mentions("gap before `cut_here`", &msg, &[&path.display().to_string(), "cut_here"]);
}

#[test]
fn unsupported_dtype() {
    for (dtype, size) in
        // F8_E4M3 is read (quantized checkpoints, docs/quantization.md); in a layer that is not a
        // quantized linear it is refused when the layer builds (weights/quant_tests.rs).
        [("I64", 8), ("F64", 8), ("U8", 1), ("BOOL", 1), ("I8", 1), ("I16", 2)]
    {
        let name = "model.layers.0.self_attn.k_proj.weight";
        let header = format!(
            r#"{{"{name}": {{"dtype": "{dtype}", "shape": [2, 3], "data_offsets": [0, {}]}}}}"#,
            6 * size
        );
        let (dir, path) = dir_with_safetensors(&raw_safetensors(&header, &vec![1u8; 6 * size]));
        let what = format!("dtype {dtype}");
        let msg = open_err(&what, &path);
        assert_mentions(&what, &msg, &[&path.display().to_string(), name, dtype]);
        let msg = build_err(&what, dir.path());
        assert_mentions(&what, &msg, &[name, dtype]);
    }
    // An unknown dtype string is a header error.
    let header = r#"{"w": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 8]}}"#;
    let (_dir, path) = dir_with_safetensors(&raw_safetensors(header, &[0u8; 8]));
    open_err("dtype Q4_K", &path);
}

#[test]
fn empty_file_and_missing_files() {
    let (dir, path) = dir_with_safetensors(&[]);
    let msg = open_err("empty file", &path);
    assert_mentions("empty file", &msg, &[&path.display().to_string()]);
    build_err("empty file", dir.path());

    let missing = dir.path().join("nope.safetensors");
    let msg = open_err("missing file", &missing);
    assert_mentions("missing file", &msg, &["nope.safetensors"]);

    // A directory with a config but no weights at all.
    let empty = tempfile::tempdir().expect("tempdir");
    write_config(empty.path(), &llama_config());
    let msg = build_err("no weights", empty.path());
    assert_mentions("no weights", &msg, &["model.safetensors"]);
    // And one with neither.
    let bare = tempfile::tempdir().expect("tempdir");
    let msg = build_err("no config", bare.path());
    assert_mentions("no config", &msg, &["config.json"]);
}

// ---------------------------------------------------------------------------------------------
// checkpoint contents vs the architecture's weight plan

/// Build with tensor `old` renamed to `new`; the error message.
fn renamed(old: &str, new: &str) -> String {
    let dir = llama_dir(
        |_| {},
        |t| {
            let x = t.iter_mut().find(|(n, _)| n == old).expect("tensor to rename");
            x.0 = new.into();
        },
    );
    build_err(&format!("{old} renamed to {new}"), dir.path())
}

#[test]
fn missing_tensor_is_named_with_closest_name() {
    let (old, new) = ("model.embed_tokens.weight", "model.embed_token.weight");
    let msg = renamed(old, new);
    assert_mentions(
        "renamed embed_tokens",
        &msg,
        &[
            "model.safetensors",
            &format!("missing tensor `{old}`"),
            &format!("closest existing name: `{new}`"),
            &format!("unexpected tensor `{new}`"),
        ],
    );
    let (old, new) = ("model.layers.0.input_layernorm.weight", "model.layers.0.input_layer_norm.weight");
    let msg = renamed(old, new);
    assert_mentions(
        "renamed input_layernorm",
        &msg,
        &[&format!("missing tensor `{old}`"), &format!("closest existing name: `{new}`")],
    );
    // A fused source names the engine tensor it feeds.
    let msg = renamed("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.query.weight");
    assert_mentions(
        "renamed q_proj",
        &msg,
        &[
            "missing tensor `model.layers.0.self_attn.q_proj.weight` (for engine tensor `model.layers.0.self_attn.qkv_proj.weight`)",
            "closest existing name",
            "unexpected tensor `model.layers.0.self_attn.query.weight`",
        ],
    );
}

#[test]
fn missing_tensor_suggestion_prefers_unused_names() {
    // `q_proj.weight` is at distance 1 from `k_proj.weight` (present and used), so the renamed
    // tensor is never suggested, however close.
    for new in ["model.layers.0.self_attn.q_proj.weights", "model.layers.0.self_attn.q_projection.weight"] {
        let msg = renamed("model.layers.0.self_attn.q_proj.weight", new);
        assert_mentions(new, &msg, &[&format!("closest existing name: `{new}`")]);
    }
}

#[test]
fn missing_tensor_dropped_entirely() {
    let dir = llama_dir(|_| {}, |t| t.retain(|(n, _)| !n.ends_with("mlp.down_proj.weight")));
    let msg = build_err("no down_proj", dir.path());
    assert_mentions(
        "no down_proj",
        &msg,
        &["missing tensor `model.layers.0.mlp.down_proj.weight`", "closest existing name"],
    );
}

#[test]
fn extra_tensor_is_unexpected() {
    let dir = llama_dir(
        |_| {},
        |t| {
            t.push((
                "model.layers.0.self_attn.extra_proj.weight".into(),
                Tensor::from_f32(vec![0.5; 4], &[2, 2]).expect("t"),
            ))
        },
    );
    let msg = build_err("extra tensor", dir.path());
    assert_mentions(
        "extra tensor",
        &msg,
        &["model.safetensors", "unexpected tensor `model.layers.0.self_attn.extra_proj.weight`"],
    );
    // A second layer's worth of tensors in a 1-layer config is unexpected too.
    let dir = llama_dir(
        |_| {},
        |t| {
            let extra: Vec<_> = t
                .iter()
                .filter(|(n, _)| n.starts_with("model.layers.0."))
                .map(|(n, x)| (n.replace("layers.0.", "layers.1."), x.clone()))
                .collect();
            t.extend(extra);
        },
    );
    let msg = build_err("extra layer", dir.path());
    assert_mentions("extra layer", &msg, &["unexpected tensor `model.layers.1.self_attn.q_proj.weight`"]);
}

#[test]
fn wrong_shape_is_reported() {
    let dir = llama_dir(
        |_| {},
        |t| {
            let k = t.iter_mut().find(|(n, _)| n.ends_with("k_proj.weight")).expect("k_proj");
            k.1 = Tensor::from_f32(vec![0.25; H * H], &[H, H]).expect("t");
        },
    );
    let msg = build_err("wide k_proj", dir.path());
    assert_mentions(
        "wide k_proj",
        &msg,
        &[
            "model.safetensors",
            "model.layers.0.self_attn.k_proj.weight",
            &format!("{:?}", [HEAD_DIM, H]),
            &format!("{:?}", [H, H]),
        ],
    );
    // The vocabulary in config.json disagreeing with the embedding.
    let dir = llama_dir(|c| c["vocab_size"] = json!(40), |_| {});
    let msg = build_err("vocab 40", dir.path());
    assert_mentions(
        "vocab 40",
        &msg,
        &["model.embed_tokens.weight", "lm_head.weight", "[40, 16]", "[32, 16]"],
    );
    // A 1-D tensor where a matrix is expected.
    let dir = llama_dir(
        |_| {},
        |t| {
            let o = t.iter_mut().find(|(n, _)| n.ends_with("o_proj.weight")).expect("o_proj");
            o.1 = Tensor::from_f32(vec![0.25; H * H], &[H * H]).expect("t");
        },
    );
    let msg = build_err("1-D o_proj", dir.path());
    assert_mentions("1-D o_proj", &msg, &["model.layers.0.self_attn.o_proj.weight", "[256]"]);
}

#[test]
fn all_problems_are_reported_at_once() {
    let dir = llama_dir(
        |_| {},
        |t| {
            t.retain(|(n, _)| n != "model.norm.weight");
            t.push(("model.final_norm.weight".into(), Tensor::from_f32(vec![1.0; H], &[H]).expect("t")));
            let k = t.iter_mut().find(|(n, _)| n.ends_with("v_proj.weight")).expect("v_proj");
            k.1 = Tensor::from_f32(vec![0.25; 2 * H], &[2, H]).expect("t");
        },
    );
    let msg = build_err("three problems", dir.path());
    assert_mentions(
        "three problems",
        &msg,
        &[
            "missing tensor `model.norm.weight`",
            "closest existing name: `model.final_norm.weight`",
            "unexpected tensor `model.final_norm.weight`",
            "wrong shape for `model.layers.0.self_attn.v_proj.weight`",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// config.json

/// Both `ModelConfig::from_hf_dir` and `build_model` fail, naming config.json and every needle.
fn config_err(what: &str, tweak: impl FnOnce(&mut Value), needles: &[&str]) {
    let dir = llama_dir(tweak, |_| {});
    let msg = err_msg(what, || ModelConfig::from_hf_dir(dir.path()));
    assert_mentions(what, &msg, &["config.json"]);
    assert_mentions(what, &msg, needles);
    let msg = build_err(what, dir.path());
    assert_mentions(what, &msg, &["config.json"]);
    assert_mentions(what, &msg, needles);
}

#[test]
fn config_invalid_json() {
    let dir = valid_dir();
    for text in ["{\"hidden_size\": 16,", "", "[1, 2", "{'single': 'quotes'}"] {
        std::fs::write(dir.path().join("config.json"), text).expect("write");
        let what = format!("config {text:?}");
        let msg = err_msg(&what, || ModelConfig::from_hf_dir(dir.path()));
        assert_mentions(&what, &msg, &["config.json", "invalid JSON"]);
        build_err(&what, dir.path());
    }
    // Valid JSON, but not an object.
    std::fs::write(dir.path().join("config.json"), "[1, 2]").expect("write");
    let msg = build_err("array config", dir.path());
    assert_mentions("array config", &msg, &["config.json"]);
}

#[test]
fn config_missing_hidden_size() {
    config_err(
        "no hidden_size",
        |c| drop(c.as_object_mut().expect("obj").remove("hidden_size")),
        &["hidden_size", "missing"],
    );
    config_err("hidden_size 0", |c| c["hidden_size"] = json!(0), &["hidden_size"]);
    config_err(
        "no vocab_size",
        |c| drop(c.as_object_mut().expect("obj").remove("vocab_size")),
        &["vocab_size"],
    );
    config_err(
        "no num_hidden_layers",
        |c| drop(c.as_object_mut().expect("obj").remove("num_hidden_layers")),
        &["num_hidden_layers"],
    );
    config_err(
        "no architectures",
        |c| drop(c.as_object_mut().expect("obj").remove("architectures")),
        &["architectures"],
    );
    // A value of the wrong JSON type: an error naming the file and the bad value (see
    // `config_wrong_type_names_the_field` for the field).
    config_err("hidden_size a string", |c| c["hidden_size"] = json!("sixteen"), &["sixteen"]);
    config_err("hidden_size negative", |c| c["hidden_size"] = json!(-16), &["-16"]);
}

#[test]

fn config_wrong_type_names_the_field() {
    config_err("hidden_size a string", |c| c["hidden_size"] = json!("sixteen"), &["hidden_size"]);
    config_err("rms_norm_eps a string", |c| c["rms_norm_eps"] = json!("1e-6"), &["rms_norm_eps"]);
}

#[test]
fn config_unknown_hidden_act() {
    config_err("hidden_act swiglu", |c| c["hidden_act"] = json!("swiglu"), &["hidden_act", "swiglu"]);
    // The aliases are checked as strictly as the canonical key.
    config_err(
        "hidden_activation xielu",
        |c| {
            c.as_object_mut().expect("obj").remove("hidden_act");
            c["hidden_activation"] = json!("xielu");
        },
        &["hidden_act", "xielu"],
    );
}

#[test]
fn config_unknown_rope_type() {
    config_err(
        "rope_scaling banana",
        |c| c["rope_scaling"] = json!({"rope_type": "banana", "factor": 2.0}),
        &["rope_type", "banana"],
    );
    config_err(
        "rope_scaling legacy type",
        |c| c["rope_scaling"] = json!({"type": "su2", "factor": 2.0}),
        &["rope_type", "su2"],
    );
    config_err(
        "rope_parameters banana",
        |c| c["rope_parameters"] = json!({"rope_type": "banana", "rope_theta": 10000.0}),
        &["rope_type", "banana"],
    );
    // Known type, required key missing: names the key.
    config_err(
        "linear without factor",
        |c| c["rope_scaling"] = json!({"rope_type": "linear"}),
        &["rope_scaling.factor", "missing"],
    );
    config_err("rope_scaling not an object", |c| c["rope_scaling"] = json!("linear"), &["rope_scaling"]);
}

#[test]
fn config_kv_heads_not_dividing_heads() {
    config_err(
        "3 kv heads for 2 heads",
        |c| c["num_key_value_heads"] = json!(3),
        &["num_key_value_heads", "3", "2"],
    );
    config_err("0 kv heads", |c| c["num_key_value_heads"] = json!(0), &["num_key_value_heads"]);
}

#[test]
fn config_unknown_architecture_suggests_nearest() {
    let dir = llama_dir(|c| c["architectures"] = json!(["LlamaForCasualLM"]), |_| {});
    let msg = build_err("typo in architecture", dir.path());
    assert_mentions("typo in architecture", &msg, &["LlamaForCasualLM", "did you mean `LlamaForCausalLM`"]);
}

// ---------------------------------------------------------------------------------------------
// sharded checkpoints

#[test]
fn index_names_a_missing_shard_file() {
    let dir = valid_dir();
    std::fs::remove_file(dir.path().join("model.safetensors")).expect("rm");
    let tensors = llama_tensors();
    let groups = vec![(0..6).collect(), (6..tensors.len()).collect()];
    write_sharded(dir.path(), &tensors, &groups);
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).expect("rm shard");
    let msg = err_msg("missing shard", || SafetensorsFiles::open_dir(dir.path()));
    assert_mentions("missing shard", &msg, &["model-00002-of-00002.safetensors"]);
    let msg = build_err("missing shard", dir.path());
    assert_mentions("missing shard", &msg, &["model-00002-of-00002.safetensors"]);
}

#[test]
fn index_lists_a_tensor_no_shard_holds() {
    let dir = valid_dir();
    let names: Vec<String> = llama_tensors().into_iter().map(|(n, _)| n).collect();
    let mut map = serde_json::Map::new();
    for n in &names {
        map.insert(n.clone(), json!("model.safetensors"));
    }
    map.insert("model.layers.0.self_attn.ghost.weight".into(), json!("model.safetensors"));
    write_index(dir.path(), Value::Object(map));
    let msg = err_msg("ghost tensor", || SafetensorsFiles::open_dir(dir.path()));
    assert_mentions(
        "ghost tensor",
        &msg,
        &["model.safetensors.index.json", "model.layers.0.self_attn.ghost.weight"],
    );
    let msg = build_err("ghost tensor", dir.path());
    assert_mentions(
        "ghost tensor",
        &msg,
        &["model.safetensors.index.json", "model.layers.0.self_attn.ghost.weight"],
    );
}

#[test]
fn index_malformed() {
    let dir = valid_dir();
    let index = dir.path().join("model.safetensors.index.json");
    for (text, needle) in [
        ("{\"weight_map\": ", "invalid JSON"),
        ("{\"metadata\": {}}", "weight_map"),
        ("{\"weight_map\": [1, 2]}", "weight_map"),
        ("{\"weight_map\": {\"lm_head.weight\": 7}}", "lm_head.weight"),
    ] {
        std::fs::write(&index, text).expect("write");
        let what = format!("index {text}");
        let msg = err_msg(&what, || SafetensorsFiles::open_dir(dir.path()));
        assert_mentions(&what, &msg, &["model.safetensors.index.json", needle]);
        build_err(&what, dir.path());
    }
}

#[test]
fn tensor_in_two_shards() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), &llama_config());
    let tensors = llama_tensors();
    write_sharded(dir.path(), &tensors, &[(0..7).collect(), (6..tensors.len()).collect()]);
    let msg = build_err("duplicate tensor", dir.path());
    assert_mentions("duplicate tensor", &msg, &[&tensors[6].0, "two shards"]);
}

#[test]
fn shard_path_escaping_is_just_a_missing_file() {
    // A shard name pointing outside the directory that does not exist: an I/O error naming it.
    let dir = valid_dir();
    let mut map = serde_json::Map::new();
    map.insert("lm_head.weight".into(), json!("../definitely-not-here/x.safetensors"));
    write_index(dir.path(), Value::Object(map));
    let msg = build_err("escaping shard", dir.path());
    assert_mentions("escaping shard", &msg, &["definitely-not-here"]);
}
