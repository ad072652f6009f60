//! The zero-copy weight path (`WeightSource::raw`: a shard as byte ranges of the mapped
//! checkpoint) against the converting path (`WeightSource::get`: read, transform, concatenate,
//! shard), tensor by tensor, for every fixture at tp 1, 2 and 4: wherever the raw path applies it
//! must give the same bytes, and it must apply to the plain tensors (no transform, same dtype).
//! And the parallel build (parts on several threads) against the sequential one.

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::model::{plan_weights, HfCheckpoint};
use trtllm_core::weights::{HfSource, TpSplit, Transform, VarBuilder, WeightSource};
use trtllm_core::{DType, Mapping};
use trtllm_tests::fixture;

fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixture(""))
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("config.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn raw_shards_equal_converted_shards() {
    trtllm::init();
    let (mut raw_n, mut conv_n) = (0, 0);
    for name in fixtures() {
        let hf = HfCheckpoint::open(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let resolve = hf.resolver();
        let src = HfSource { files: &hf.files, resolve: &resolve };
        for tp in [1, 2, 4] {
            for rank in 0..tp {
                let mapping = Mapping::new(tp, 1, rank).expect("mapping");
                // A model whose heads do not split over `tp` is not loadable at that size.
                let Ok(specs) = plan_weights(hf.entry, &hf.cfg, mapping, DType::F32) else { continue };
                for spec in &specs {
                    let what = format!("{name} tp {tp} rank {rank} `{}`", spec.name);
                    let Ok(want) = src.get(spec, &mapping) else { continue };
                    let Some(raw) = src.raw(spec, &mapping).unwrap_or_else(|e| panic!("{what}: {e}")) else {
                        conv_n += 1;
                        continue;
                    };
                    raw_n += 1;
                    let got = raw.to_host().unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_eq!(got.shape(), want.shape(), "{what}");
                    assert_eq!(got.dtype(), want.dtype(), "{what}");
                    assert_eq!(got.host_bytes(), want.host_bytes(), "{what}: bytes differ");
                    assert!(spec.transform == Transform::default(), "{what}: raw path for a transform");
                    assert!(spec.split != TpSplit::Row || tp == 1, "{what}: raw path for a row split");
                }
            }
        }
    }
    assert!(raw_n > 100, "the raw path should cover most f32 tensors (raw {raw_n}, converted {conv_n})");
}

#[test]
fn raw_path_is_not_taken_when_a_cast_is_needed() {
    trtllm::init();
    let hf = HfCheckpoint::open(&fixture("llama")).expect("llama");
    let resolve = hf.resolver();
    let src = HfSource { files: &hf.files, resolve: &resolve };
    let mapping = Mapping::default();
    let specs = plan_weights(hf.entry, &hf.cfg, mapping, DType::BF16).expect("plan");
    for spec in specs.iter().filter(|s| s.dtype == DType::BF16) {
        assert!(src.raw(spec, &mapping).expect("raw").is_none(), "`{}` stored f32, wanted bf16", spec.name);
    }
}

/// The model built on several threads (parts claimed in any order) is the model built in order:
/// identical logits on every fixture.
#[test]
fn parallel_build_equals_sequential_build() {
    trtllm::init();
    let ids: Vec<u32> = (1..9).collect();
    for name in fixtures() {
        let hf = HfCheckpoint::open(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let resolve = hf.resolver();
        let src = HfSource { files: &hf.files, resolve: &resolve };
        let logits = |threads: usize| {
            let vb = VarBuilder::new(&src, Mapping::default(), DType::F32).with_threads(threads);
            let model =
                (hf.entry.build)(&hf.cfg, &vb, &hf.entry.layout).unwrap_or_else(|e| panic!("{name}: {e}"));
            let opts = LlmOptions { max_batch_size: 1, max_seq_len: 16, ..Default::default() };
            let mut llm = Llm::from_model(model, None, opts).expect("llm");
            let t = llm.logits_all(&ids, None, &SingleRank).unwrap_or_else(|e| panic!("{name}: {e}"));
            t.f32s().expect("f32").to_vec()
        };
        assert_eq!(logits(1), logits(4), "{name}: logits differ between 1 and 4 loading threads");
    }
}
