//! Quantized checkpoints on the CPU: the tiny Llamas of tests/fixtures/quant (made by
//! scripts/make_quant_fixtures.py, one per checkpoint layout) load through their
//! `quantization_config`, dequantize at load and must reproduce the logits HF transformers
//! computes from the dequantized model (NMSE <= 1e-6) and its greedy tokens, and stay within the
//! accuracy bounds of the unquantized bf16 model they were made from (KL <= 0.01 for FP8,
//! <= 0.05 for INT4).

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::runner::SamplingParams;
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::DType;
use trtllm_tests::{fixture, ids, kl, nmse};

fn engine(dir: &std::path::Path) -> Llm {
    engine_keeping(dir, None)
}

/// `keep`: `LoadOptions::keep_quantized` (`Some(true)`: the FP8 layers stay E4M3 + scales and
/// each call decodes them, the CPU twin of the GPU's FP8 kernels).
fn engine_keeping(dir: &std::path::Path, keep: Option<bool>) -> Llm {
    trtllm::init();
    let mut opts = LlmOptions { kv_block_size: 3, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    opts.load.keep_quantized = keep;
    Llm::with_options(dir, opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn check(name: &str, kl_bound: f64) {
    let dir = fixture(&format!("quant/{name}"));
    let refs = SafetensorsFiles::open_files(&[dir.join("reference.safetensors")]).expect("reference");
    let read = |n: &str| refs.read(n).unwrap_or_else(|e| panic!("{name}: {e}"));
    let input = ids(&read("input_ids"));
    let mut llm = engine(&dir);
    let logits = llm.logits_all(&input, None, &SingleRank).expect("forward");
    let got = logits.f32s().expect("f32");
    let want = read("logits");
    let e = nmse(got, want.f32s().expect("f32"));
    let vocab = want.dim(1);
    let k = kl(read("source.logits").f32s().expect("f32"), got, vocab);
    eprintln!("{name}: logits NMSE vs dequantized HF {e:.3e}, KL(bf16 || quantized) {k:.5}");
    assert!(e <= 1e-6, "{name}: logits NMSE {e:e} > 1e-6 against the dequantized model");
    assert!(k <= kl_bound, "{name}: KL(bf16 || quantized) {k} > {kl_bound}");
    assert!(k > 1e-6, "{name}: KL {k}: the quantized model is the bf16 one (nothing was quantized?)");

    let want = ids(&read("greedy"));
    let params = SamplingParams { max_new_tokens: want.len(), ignore_eos: true, ..Default::default() };
    let got = llm.generate_ids(vec![input], &params, &mut |_, _| {}).expect("generate");
    assert_eq!(got[0].token_ids, want, "{name}: greedy differs from the dequantized model");
}

#[test]
fn fp8_tensor_compressed_tensors() {
    check("fp8_tensor", 0.01);
}

#[test]
fn fp8_channel_compressed_tensors() {
    check("fp8_channel", 0.01);
}

#[test]
fn fbgemm_fp8() {
    check("fbgemm_fp8", 0.01);
}

#[test]
fn fp8_block_128() {
    check("fp8_block", 0.01);
}

#[test]
fn awq_int4() {
    check("awq", 0.05);
}

#[test]
fn gptq_int4() {
    check("gptq", 0.05);
}

/// `convert --quantize` of the bf16 source of the quantized fixtures: the written HF directory
/// loads through its `quantization_config` and stays within the KL bounds of the unquantized model.
fn convert_and_run(scheme: trtllm_core::checkpoint::QuantizeScheme, bound: f64) -> f64 {
    let src = fixture("quant/bf16");
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("q");
    let s = trtllm_core::checkpoint::quantize_hf(&src, &out, scheme, &[], false).expect("quantize");
    assert_eq!(s.quantized_linears, 2 * 7, "{scheme:?}: every decoder linear");
    let input: Vec<u32> = (3..23).collect();
    let base = engine(&src).logits_all(&input, None, &SingleRank).expect("base");
    let mut q = engine(&out);
    let ql = q.logits_all(&input, None, &SingleRank).expect("quantized");
    let k = kl(base.f32s().expect("f32"), ql.f32s().expect("f32"), base.dim(1));
    let params = SamplingParams { max_new_tokens: 16, ignore_eos: true, ..Default::default() };
    let g0 = engine(&src).generate_ids(vec![input.clone()], &params, &mut |_, _| {}).expect("gen");
    let g1 = q.generate_ids(vec![input], &params, &mut |_, _| {}).expect("gen");
    let same = g0[0].token_ids.iter().zip(&g1[0].token_ids).take_while(|(a, b)| a == b).count();
    eprintln!("convert {scheme:?}: KL(unquantized || quantized) {k:.5}, greedy prefix {same}/16 equal");
    assert!(k <= bound && k > 1e-7, "{scheme:?}: KL {k} (bound {bound})");
    k
}

/// `--keep`: the named layer's linears stay in the source dtype (written as the format's
/// ignore list), the others are quantized, and the directory loads and runs.
#[test]
fn convert_quantize_keeps_named_layers() {
    use trtllm_core::checkpoint::QuantizeScheme;
    let src = fixture("quant/bf16");
    for scheme in [QuantizeScheme::Fp8, QuantizeScheme::Fp8Block, QuantizeScheme::Int4AwqRtn { group: 128 }] {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("q");
        let keep = ["layers.1.".to_string()];
        let s = trtllm_core::checkpoint::quantize_hf(&src, &out, scheme, &keep, false).expect("quantize");
        assert_eq!(s.quantized_linears, 7, "{scheme:?}: layer 0's linears only");
        let st = safetensors_names(&out.join("model.safetensors"));
        assert!(st.iter().any(|n| n == "model.layers.1.mlp.down_proj.weight"), "{scheme:?}: layer 1 kept");
        assert!(!st.iter().any(|n| n.starts_with("model.layers.1.") && n.contains("scale")), "{scheme:?}");
        assert!(st.iter().any(|n| n.starts_with("model.layers.0.mlp.down_proj.") && !n.ends_with(".weight")));
        let input: Vec<u32> = (3..23).collect();
        let base = engine(&src).logits_all(&input, None, &SingleRank).expect("base");
        let ql = engine(&out).logits_all(&input, None, &SingleRank).expect("quantized");
        let k = kl(base.f32s().expect("f32"), ql.f32s().expect("f32"), base.dim(1));
        assert!(k > 1e-7 && k <= 0.05, "{scheme:?}: KL {k}");
    }
}

fn safetensors_names(path: &std::path::Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read");
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    meta.tensors().into_keys().collect()
}

#[test]
fn convert_quantize_fp8() {
    convert_and_run(trtllm_core::checkpoint::QuantizeScheme::Fp8, 0.01);
}

#[test]
fn convert_quantize_fp8_block() {
    convert_and_run(trtllm_core::checkpoint::QuantizeScheme::Fp8Block, 0.01);
}

#[test]
fn convert_quantize_int4_awq_rtn() {
    convert_and_run(trtllm_core::checkpoint::QuantizeScheme::Int4AwqRtn { group: 128 }, 0.05);
}

/// Layers kept quantized (FP8 as E4M3 + scales: fused q/k/v and gate/up, per-tensor scales
/// repeated per row, 128 x 128 blocks; AWQ / GPTQ repacked into the engine's INT4 layout)
/// compute the same logits as the checkpoint dequantized at load.
#[test]
fn kept_quantized_matches_dequantized() {
    for name in ["fp8_tensor", "fp8_channel", "fbgemm_fp8", "fp8_block", "awq", "gptq"] {
        let dir = fixture(&format!("quant/{name}"));
        let refs = SafetensorsFiles::open_files(&[dir.join("reference.safetensors")]).expect("reference");
        let input = ids(&refs.read("input_ids").expect("ids"));
        let run = |keep| {
            let mut llm = engine_keeping(&dir, keep);
            llm.logits_all(&input, None, &SingleRank).expect("forward").f32s().expect("f32").to_vec()
        };
        let (kept, deq) = (run(Some(true)), run(Some(false)));
        let e = nmse(&kept, &deq);
        eprintln!("{name}: kept-quantized vs dequantized logits NMSE {e:.3e}");
        assert!(e <= 1e-10, "{name}: NMSE {e}");
    }
}

/// The loader keeps each format packed when asked (fused q/k/v and gate/up): FP8 as E4M3 codes
/// `[out, in]` + f32 scales (per row, or 128 x 128 blocks), AWQ / GPTQ as one INT4 buffer.
#[test]
fn linears_load_packed() {
    use trtllm_core::layers::Stored;
    use trtllm_core::layers::{Linear, Packed};
    use trtllm_core::weights::{HfSource, VarBuilder};
    use trtllm_core::Mapping;
    for name in ["fp8_tensor", "fp8_channel", "fbgemm_fp8", "fp8_block", "awq", "gptq"] {
        let dir = fixture(&format!("quant/{name}"));
        let root: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
                .expect("json");
        let quant =
            trtllm_core::config::QuantConfig::from_hf_value(&root, &dir.join("config.json")).expect("quant");
        let files = SafetensorsFiles::open_files(&[dir.join("model.safetensors")]).expect("files");
        let resolve = |n: &str| n.to_string();
        let src = HfSource { files: &files, resolve: &resolve };
        let vb = VarBuilder::new(&src, Mapping::default(), DType::F32).with_quant(quant).keep_quantized(true);
        let attn = vb.pp("model.layers.0.self_attn");
        let qkv = Linear::heads(
            &attn,
            "qkv_proj",
            &["q_proj", "k_proj", "v_proj"],
            128,
            &[(4, 64), (2, 64), (2, 64)],
            Stored::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mlp = vb.pp("model.layers.0.mlp");
        let gate_up = Linear::column(
            &mlp,
            "gate_up_proj",
            &["gate_proj", "up_proj"],
            128,
            &[256, 256],
            Stored::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (l, rows) in [(&qkv, 512), (&gate_up, 512)] {
            assert_eq!(l.out_features(), rows, "{name}");
            match (&l.packed, name) {
                (Some(Packed::Int4(layout)), "awq" | "gptq") => assert_eq!((layout.n, layout.k), (rows, 128)),
                (Some(Packed::Fp8 { scale, .. }), n) if n.starts_with("fp8") || n == "fbgemm_fp8" => {
                    assert_eq!(l.weight.dtype(), DType::F8E4M3, "{name}");
                    assert_eq!(l.weight.shape(), &[rows, 128]);
                    let want = if name == "fp8_block" { rows / 128 } else { rows };
                    assert_eq!(scale.numel(), want, "{name} scales");
                }
                (p, _) => panic!("{name}: not packed as its format ({})", p.is_some()),
            }
        }
    }
}
