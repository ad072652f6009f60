//! GGUF import against HF transformers' own GGUF loader. The real-model checks convert each
//! GGUF of `$TRTLLM_MODELS_DIR` (default /tmp/trtllm-models: `gguf/*.gguf` and the HF
//! directories `out/*` that ../shared/tools/make-real-model.sh makes from them) and compare
//! with the HF directory: every tensor after rounding ours to bf16 (max difference reported in
//! bf16 ulps), the config fields, and the token ids of both tokenizer.json files on a mixed
//! text. They are skipped, with a message, where the models are absent. The synthetic test
//! needs no files: it writes a tiny llama GGUF (F32, F16, BF16, Q8_0 tensors, q/k permuted as
//! llama.cpp does), converts it, checks weights and tokenizer, and runs it in the engine.
//! (Reader, dequantization and gemma3 unit tests: trtllm-core `gguf::tests_*`.)

use std::path::{Path, PathBuf};

use half::bf16;
use serde_json::Value;
use trtllm_core::gguf::{convert_gguf, ConvertOptions, GgmlType, GgufWriter, Value as GValue, ValueType};
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::text::Tokenizer;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::DType;

fn models_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TRTLLM_MODELS_DIR")
        .map_or_else(|| PathBuf::from("/tmp/trtllm-models"), PathBuf::from);
    if dir.join("gguf").is_dir() && dir.join("out").is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: no GGUF models at {} (set TRTLLM_MODELS_DIR)", dir.display());
        None
    }
}

/// Convert `gguf/{file}` into a temporary directory; `None` (skip) when the files are absent.
fn convert(file: &str, hf: &str) -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    let dir = models_dir()?;
    let (src, hf) = (dir.join("gguf").join(file), dir.join("out").join(hf));
    if !src.exists() || !hf.join("model.safetensors").exists() {
        eprintln!("skipping: {} or {} is absent", src.display(), hf.display());
        return None;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("hf");
    let t = std::time::Instant::now();
    let report = convert_gguf(&src, &out, &ConvertOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{file}: {} tensors converted in {:.1?}", report.tensors, t.elapsed());
    Some((tmp, out, hf))
}

/// Position of a bf16 on a line where adjacent floats differ by one.
fn ordered(b: bf16) -> i32 {
    let x = b.to_bits() as i16 as i32;
    if x < 0 {
        i16::MIN as i32 - x
    } else {
        x
    }
}

/// Every tensor of ours, rounded to bf16, against the HF directory's; returns the max ulp diff.
fn compare_tensors(ours: &Path, hf: &Path) -> u32 {
    let a = SafetensorsFiles::open_dir(ours).expect("ours");
    let b = SafetensorsFiles::open_dir(hf).expect("hf");
    let mut na: Vec<&String> = a.names().collect();
    let mut nb: Vec<&String> = b.names().collect();
    na.sort();
    nb.sort();
    assert_eq!(na, nb, "tensor names differ");
    let (mut max_ulp, mut differing, mut total) = (0u32, 0usize, 0usize);
    for n in na {
        let (ta, tb) = (a.read(n).expect("read ours"), b.read(n).expect("read hf"));
        assert_eq!(ta.shape(), tb.shape(), "{n}: shape");
        let (va, vb) = (ta.f32s().expect("ours f32"), tb.bf16s().expect("hf bf16"));
        let mut worst = 0u32;
        for (x, y) in va.iter().zip(vb) {
            let d = ordered(bf16::from_f32(*x)).abs_diff(ordered(*y));
            worst = worst.max(d);
            differing += (d != 0) as usize;
        }
        total += va.len();
        if worst > 0 {
            eprintln!("  {n}: max {worst} bf16 ulp");
        }
        max_ulp = max_ulp.max(worst);
        a.release(n);
        b.release(n);
    }
    eprintln!("tensors: {total} values, {differing} differ after bf16 rounding, max {max_ulp} ulp");
    max_ulp
}

/// JSON equality with numbers compared as f64 (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

/// Every key of HF's config.json (but its dtype and version stamps, and `skip`) is in ours
/// with the same value.
fn compare_config(ours: &Path, hf: &Path, skip: &[&str]) {
    let (a, b) = (json(&ours.join("config.json")), json(&hf.join("config.json")));
    let ignore = ["transformers_version", "dtype", "torch_dtype"];
    let mut bad = vec![];
    for (k, v) in b.as_object().expect("object") {
        if ignore.contains(&k.as_str()) || skip.contains(&k.as_str()) {
            continue;
        }
        match a.get(k) {
            Some(w) if same(v, w) => {}
            other => {
                bad.push(format!("{k}: hf {v}, ours {}", other.map_or("absent".into(), |w| w.to_string())))
            }
        }
    }
    assert!(bad.is_empty(), "config.json differs:\n{}", bad.join("\n"));
    let (ga, gb) = (json(&ours.join("generation_config.json")), json(&hf.join("generation_config.json")));
    for k in ["bos_token_id", "eos_token_id", "pad_token_id"] {
        assert!(same(&ga[k], &gb[k]), "generation_config {k}: ours {} hf {}", ga[k], gb[k]);
    }
}

const TEXT: &str =
    "Hello, world! 12345 apples cost $3.50 (or 1,000,000.75€).\n\n\tTabs\t\tand   spaces    here.  \
Größe café naïve — 日本語のテキスト、中文测试。 Привет, мир! مرحبا بالعالم 🙂🚀\u{00a0}x \
<|im_start|>user\nWhat's 2+2? I'll say it's 4; we've DONE it<|im_end|>\n<|endoftext|>\
<bos><start_of_turn>model\n<eos> <tool_call>{\"a\": [1, 22, 333]}</tool_call>   \n  \r\n end   ";

/// Both tokenizer.json files give the same ids (and decode to the same text); the pieces of
/// the two files are compared too and the differences listed.
fn compare_tokenizers(ours: &Path, hf: &Path) {
    let (a, b) = (Tokenizer::from_dir(ours).expect("ours"), Tokenizer::from_dir(hf).expect("hf"));
    for text in
        [TEXT, "Born in north-east France, Soyer trained as a", "", " ", "  leading spaces", "x\n\n\n\ny"]
    {
        let (ia, ib) = (a.encode(text).expect("encode"), b.encode(text).expect("encode"));
        assert_eq!(ia, ib, "token ids differ for {text:?}");
        assert_eq!(a.decode(&ia, false).expect("decode"), b.decode(&ib, false).expect("decode"));
    }
    eprintln!("tokenizer: {} ids identical on the mixed text", a.encode(TEXT).map(|v| v.len()).unwrap_or(0));
    let (ja, jb) = (json(&ours.join("tokenizer.json")), json(&hf.join("tokenizer.json")));
    for k in ["added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder", "model"] {
        assert!(same(&ja[k], &jb[k]), "tokenizer.json `{k}` differs");
    }
    let (ta, tb) = (json(&ours.join("tokenizer_config.json")), json(&hf.join("tokenizer_config.json")));
    for k in ["bos_token", "eos_token", "unk_token", "pad_token", "chat_template"] {
        assert_eq!(
            ta.get(k).unwrap_or(&Value::Null),
            tb.get(k).unwrap_or(&Value::Null),
            "tokenizer_config {k}"
        );
    }
}

fn check_model(file: &str, hf: &str, skip_config: &[&str]) -> Option<(tempfile::TempDir, PathBuf)> {
    let (tmp, ours, hf) = convert(file, hf)?;
    compare_config(&ours, &hf, skip_config);
    compare_tokenizers(&ours, &hf);
    let ulp = compare_tensors(&ours, &hf);
    assert_eq!(ulp, 0, "{file}: tensors differ from HF's after bf16 rounding");
    Some((tmp, ours))
}

#[test]
fn smollm2_q4_1_matches_hf_and_generates() {
    let Some((_tmp, ours)) = check_model("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct", &[])
    else {
        return;
    };
    trtllm::init();
    let mut opts = LlmOptions::default();
    opts.load.dtype = Some(DType::F32);
    let mut llm = Llm::with_options(&ours, opts).expect("load converted model");
    let params = SamplingParams { max_new_tokens: 30, ..Default::default() };
    let g = llm.generate(&["Born in north-east France, Soyer trained as a"], &params).expect("generate");
    let want = " cartographer and later became a cartographer of the French Empire. He was born in 1782 in the town of Saint-Sé";
    assert_eq!(g[0].text, want);
}

#[test]
fn gemma3_q4_k_m_matches_hf() {
    check_model("gemma-3-270m-q4_k_m.gguf", "gemma3-270m", &[]);
}

#[test]
fn qwen2_q4_k_m_matches_hf() {
    // HF writes Qwen2Config's default max_window_layers (28) for a 24-layer model; ours is the
    // layer count. It only matters with use_sliding_window, which is false.
    check_model(
        "qwen2.5-coder-0.5b-instruct.q4_k_m.gguf",
        "qwen2.5-coder-0.5b-instruct",
        &["max_window_layers"],
    );
}

// ---------------------------------------------------------------------------------------------
// Synthetic GGUFs (no external files).

fn s(x: &str) -> GValue {
    GValue::String(x.into())
}

fn strs(v: &[String]) -> GValue {
    GValue::Array(ValueType::String, v.iter().map(|x| GValue::String(x.clone())).collect())
}

/// Deterministic values in (-0.5, 0.5).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

/// Q8_0-encode `v` (a multiple of 32 values); returns the bytes and the values they decode to.
fn q8_0(v: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let (mut bytes, mut dec) = (vec![], vec![]);
    for b in v.chunks(32) {
        let amax = b.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = half::f16::from_f32(amax / 127.0);
        bytes.extend_from_slice(&d.to_le_bytes());
        for x in b {
            let q = (x / d.to_f32()).round().clamp(-127.0, 127.0) as i8;
            bytes.push(q as u8);
            dec.push(q as f32 * d.to_f32());
        }
    }
    (bytes, dec)
}

/// llama.cpp's q/k permutation (convert_hf_to_gguf `LlamaModel.permute`) of `rows` x `cols`.
fn permute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let hd = rows / heads;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for two in 0..2 {
            for i in 0..hd / 2 {
                let src = (h * hd + two * hd / 2 + i) * cols;
                let dst = (h * hd + 2 * i + two) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

/// GPT-2's byte alphabet.
fn byte_chars() -> Vec<String> {
    let printable =
        |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut n = 0;
    (0..256u32)
        .map(|b| {
            let c = if printable(b) {
                b
            } else {
                n += 1;
                255 + n
            };
            char::from_u32(c).expect("char").to_string()
        })
        .collect()
}

const H: usize = 32;
const FF: usize = 64;

/// A 2-layer llama GGUF; returns the writer and the HF-layout weights it encodes.
fn tiny_llama() -> (GgufWriter, Vec<(String, Vec<f32>)>) {
    let mut tokens: Vec<String> = vec!["<|begin|>".into(), "<|end|>".into()];
    tokens.extend(byte_chars());
    tokens.extend(["Ġt", "he", "Ġthe"].map(String::from));
    let vocab = tokens.len();
    let mut types = vec![GValue::I32(3), GValue::I32(3)];
    types.extend((2..vocab).map(|_| GValue::I32(1)));
    let mut w = GgufWriter::new();
    w.kv("general.architecture", s("llama"))
        .kv("llama.context_length", GValue::U32(128))
        .kv("llama.embedding_length", GValue::U32(H as u32))
        .kv("llama.block_count", GValue::U32(2))
        .kv("llama.feed_forward_length", GValue::U32(FF as u32))
        .kv("llama.attention.head_count", GValue::U32(4))
        .kv("llama.attention.head_count_kv", GValue::U32(2))
        .kv("llama.rope.freq_base", GValue::F32(10000.0))
        .kv("llama.rope.dimension_count", GValue::U32(8))
        .kv("llama.attention.layer_norm_rms_epsilon", GValue::F32(1e-5))
        .kv("tokenizer.ggml.model", s("gpt2"))
        .kv("tokenizer.ggml.pre", s("llama-bpe"))
        .kv("tokenizer.ggml.tokens", strs(&tokens))
        .kv("tokenizer.ggml.token_type", GValue::Array(ValueType::I32, types))
        .kv("tokenizer.ggml.merges", strs(&["Ġ t", "h e", "Ġt he"].map(String::from)))
        .kv("tokenizer.ggml.bos_token_id", GValue::U32(0))
        .kv("tokenizer.ggml.eos_token_id", GValue::U32(1))
        .kv("tokenizer.ggml.add_bos_token", GValue::Bool(true))
        .kv("tokenizer.chat_template", s("{% for m in messages %}{{ m['content'] }}{% endfor %}"));
    let mut hf = vec![];
    let mut seed = 1;
    let mut next = |n| {
        seed += 1;
        values(n, seed)
    };
    let emb = next(vocab * H);
    w.tensor_f32("token_embd.weight", &[H as u64, vocab as u64], &emb);
    hf.push(("model.embed_tokens.weight".to_string(), emb));
    let norm: Vec<f32> = next(H).iter().map(|x| 1.0 + x).collect();
    w.tensor_f32("output_norm.weight", &[H as u64], &norm);
    hf.push(("model.norm.weight".into(), norm));
    for l in 0..2 {
        let p = |n: &str| format!("model.layers.{l}.{n}.weight");
        let g = |n: &str| format!("blk.{l}.{n}.weight");
        for (gn, hn) in [("attn_norm", "input_layernorm"), ("ffn_norm", "post_attention_layernorm")] {
            let v = next(H);
            w.tensor_f32(&g(gn), &[H as u64], &v);
            hf.push((p(hn), v));
        }
        for (gn, hn, rows, heads) in
            [("attn_q", "self_attn.q_proj", H, 4), ("attn_k", "self_attn.k_proj", H / 2, 2)]
        {
            let v = next(rows * H);
            w.tensor_f32(&g(gn), &[H as u64, rows as u64], &permute(&v, rows, H, heads));
            hf.push((p(hn), v));
        }
        let (b, v) = q8_0(&next(H / 2 * H));
        w.tensor(&g("attn_v"), &[H as u64, (H / 2) as u64], GgmlType::Q8_0, b);
        hf.push((p("self_attn.v_proj"), v));
        let o: Vec<half::f16> = next(H * H).iter().map(|x| half::f16::from_f32(*x)).collect();
        w.tensor(
            &g("attn_output"),
            &[H as u64, H as u64],
            GgmlType::F16,
            o.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
        hf.push((p("self_attn.o_proj"), o.iter().map(|x| x.to_f32()).collect()));
        let up: Vec<bf16> = next(FF * H).iter().map(|x| bf16::from_f32(*x)).collect();
        w.tensor(
            &g("ffn_up"),
            &[H as u64, FF as u64],
            GgmlType::BF16,
            up.iter().flat_map(|x| x.to_le_bytes()).collect(),
        );
        hf.push((p("mlp.up_proj"), up.iter().map(|x| x.to_f32()).collect()));
        let (b, v) = q8_0(&next(FF * H));
        w.tensor(&g("ffn_gate"), &[H as u64, FF as u64], GgmlType::Q8_0, b);
        hf.push((p("mlp.gate_proj"), v));
        let (b, v) = q8_0(&next(H * FF));
        w.tensor(&g("ffn_down"), &[FF as u64, H as u64], GgmlType::Q8_0, b);
        hf.push((p("mlp.down_proj"), v));
    }
    (w, hf)
}

fn convert_synthetic(w: &GgufWriter) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("m.gguf");
    w.write(&src).expect("write gguf");
    let out = tmp.path().join("hf");
    convert_gguf(&src, &out, &ConvertOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    (tmp, out)
}

fn assert_weights(out: &Path, want: &[(String, Vec<f32>)]) {
    let st = SafetensorsFiles::open_dir(out).expect("safetensors");
    assert_eq!(st.names().count(), want.len(), "tensor count");
    for (name, v) in want {
        let t = st.read(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.f32s().expect("f32"), &v[..], "{name}");
    }
}

#[test]
fn synthetic_llama_converts_and_runs() {
    let (w, hf) = tiny_llama();
    let (_tmp, out) = convert_synthetic(&w);
    assert_weights(&out, &hf);
    let c = json(&out.join("config.json"));
    assert_eq!(c["architectures"][0], "LlamaForCausalLM");
    assert_eq!((c["head_dim"].as_u64(), c["num_key_value_heads"].as_u64()), (Some(8), Some(2)));
    assert_eq!(c["tie_word_embeddings"], true);
    let tok = Tokenizer::from_dir(&out).expect("tokenizer");
    // "the the": llama-3 split -> "the", " the" -> t|he, Ġthe; with BOS.
    assert_eq!(tok.encode("the the").expect("encode"), [0, 2 + b't' as u32, 2 + 256 + 1, 2 + 256 + 2]);
    assert_eq!(tok.encode("<|end|>x").expect("encode"), [0, 1, 2 + b'x' as u32]);
    assert!(tok.chat_template.is_some());
    trtllm::init();
    let mut opts = LlmOptions::default();
    opts.load.dtype = Some(DType::F32);
    let mut llm = Llm::with_options(&out, opts).expect("engine loads the converted directory");
    let params = SamplingParams { max_new_tokens: 4, ignore_eos: true, ..Default::default() };
    let a = llm.generate(&["the the"], &params).expect("generate");
    assert_eq!(a[0].token_ids.len(), 4);
}
