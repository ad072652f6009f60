//! `trtllm verify`: a fixture passes against its HF reference (HF directory and built engine);
//! the same fixture with one norm weight perturbed (`model.layers.1.input_layernorm.weight`
//! scaled) fails, and layer 1 is named as the first divergence.

use std::path::{Path, PathBuf};

use trtllm_core::checkpoint::{build_engine, convert, BuildOptions, ConvertOptions};
use trtllm_core::eval::verify::{nmse, verify, Reference, Stage, VerifyOptions};
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::weights::{write_safetensors, SafetensorsFiles};
use trtllm_core::DType;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn llm(dir: &Path) -> Llm {
    trtllm::init();
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 1, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    Llm::with_options(dir, opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn reference() -> Reference {
    Reference::open(&fixture("llama").join("reference.safetensors")).expect("reference")
}

#[test]
fn fixture_passes() {
    let refs = reference();
    let report = verify(&mut llm(&fixture("llama")), &refs, &VerifyOptions::default()).expect("verify");
    let text = report.render();
    assert!(report.passed(), "{text}");
    // embedding, 2 layers, final norm, logits: every stage is compared.
    let stages: Vec<Stage> = report.rows.iter().map(|r| r.stage.clone()).collect();
    assert_eq!(stages, [Stage::Embedding, Stage::Layer(0), Stage::Layer(1), Stage::FinalNorm, Stage::Logits]);
    assert!(report.kl_mean < 1e-8, "{text}");
    assert!(
        report.greedy.as_ref().is_some_and(|g| g.first_mismatch.is_none() && g.ours.len() == 16),
        "{text}"
    );
    assert!(text.contains("first divergence: none") && text.ends_with("PASS\n"), "{text}");

    // The same model converted and built into an engine directory.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ckpt, eng) = (tmp.path().join("ckpt"), tmp.path().join("engine"));
    let opts = ConvertOptions { dtype: Some(DType::F32), ..Default::default() };
    convert(&fixture("llama"), &ckpt, &opts, &mut |_| {}).expect("convert");
    build_engine(&ckpt, &eng, &BuildOptions::default()).expect("build");
    let report = verify(&mut llm(&eng), &refs, &VerifyOptions::default()).expect("verify engine");
    assert!(report.passed(), "{}", report.render());
}

/// A copy of fixture `llama` whose layer-1 input norm weight is scaled by `factor`.
fn perturbed(factor: f32) -> tempfile::TempDir {
    let src = fixture("llama");
    let tmp = tempfile::tempdir().expect("tempdir");
    for f in ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).expect("copy");
    }
    let files = SafetensorsFiles::open_dir(&src).expect("open");
    let target = "model.layers.1.input_layernorm.weight";
    let tensors: Vec<(String, trtllm_core::Tensor)> = files
        .names()
        .map(|n| {
            let t = files.read(n).expect("read");
            let t = if n == target { t.map_f32(|x| x * factor).expect("scale") } else { t };
            (n.clone(), t)
        })
        .collect();
    assert!(tensors.iter().any(|(n, _)| n == target));
    write_safetensors(&tmp.path().join("model.safetensors"), &tensors, None).expect("write");
    tmp
}

#[test]
fn perturbed_norm_names_layer_1() {
    let refs = reference();
    let tmp = perturbed(1.5);
    let report = verify(&mut llm(tmp.path()), &refs, &VerifyOptions::default()).expect("verify");
    let text = report.render();
    assert!(!report.passed(), "{text}");
    let first = report.first_divergence().expect("a divergence");
    assert_eq!(first.stage, Stage::Layer(1), "{text}");
    assert_eq!(first.reference, "final_norm_input", "{text}");
    // Everything before layer 1 still matches.
    assert!(report.rows[..2].iter().all(|r| r.nmse <= 1e-6), "{text}");
    assert!(text.contains("first divergence: layer 1 ") && text.ends_with("FAIL\n"), "{text}");
}

#[test]
fn metrics() {
    assert_eq!(nmse(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
    assert!((nmse(&[0.0, 2.0], &[1.0, 2.0]) - 0.2).abs() < 1e-12);
    assert_eq!(nmse(&[f32::NAN], &[1.0]), f64::INFINITY);
    let kl = trtllm_core::eval::verify::kl_rows(&[0.0, 0.0, 1.0, 1.0], &[0.0, 0.0, 0.0, 2f32.ln()], 2);
    assert!(kl[0].abs() < 1e-15);
    // p = (1/3, 2/3), q = (1/2, 1/2): KL = 1/3 ln(2/3) + 2/3 ln(4/3).
    let want = (1.0f64 / 3.0) * (2.0f64 / 3.0).ln() + (2.0f64 / 3.0) * (4.0f64 / 3.0).ln();
    assert!((kl[1] - want).abs() < 1e-7, "{} vs {want}", kl[1]); // ln 2 rounded to f32
}

#[test]
fn bad_reference_is_an_error_naming_the_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("ref.safetensors");
    let t = trtllm_core::Tensor::from_f32(vec![0.0; 4], &[2, 2]).expect("tensor");
    write_safetensors(&path, &[("logits".into(), t)], None).expect("write");
    let refs = Reference::open(&path).expect("open");
    let err = verify(&mut llm(&fixture("llama")), &refs, &VerifyOptions::default()).expect_err("error");
    let msg = err.to_string();
    assert!(msg.contains("ref.safetensors") && msg.contains("input_ids"), "{msg}");
    let err = Reference::open(&tmp.path().join("missing.safetensors")).err().expect("error");
    assert!(err.to_string().contains("missing.safetensors"));
}
