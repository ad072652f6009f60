//! Hostile sizes (issue 23): one integer in a model's files must not exhaust memory, divide by
//! zero or abort. Each case copies a fixture, sets one value, and every load path (`weights`'
//! inspect, `build_model` / `Llm` as `run` uses them, `convert`, a converted checkpoint, an
//! engine directory) must fail fast (< 1 s) with an error naming the file, the field and the
//! limit. The GGUF import's case is a unit test next to the importer (`gguf::tests_convert`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;
use trtllm_core::checkpoint::{build_engine, convert, BuildOptions, ConvertOptions, BUILD_CONFIG};
use trtllm_core::llm::Llm;
use trtllm_core::load::{build_model, LlmOptions};
use trtllm_core::model::{inspect, LoadOptions};
use trtllm_core::Mapping;
use trtllm_tests::fixture;

fn read(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json")
}

fn write(p: &Path, v: &Value) {
    std::fs::write(p, v.to_string()).expect("write");
}

/// A copy of fixture `name` (config.json copied, the other files linked) with `tweak` applied
/// to its config.json.
fn tweaked(name: &str, tweak: impl FnOnce(&mut Value)) -> TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    for e in std::fs::read_dir(fixture(name)).expect("fixture") {
        let p = e.expect("entry").path();
        let to = tmp.path().join(p.file_name().expect("name"));
        std::fs::copy(&p, &to).expect("copy");
    }
    let cfg = tmp.path().join("config.json");
    let mut v = read(&cfg);
    tweak(&mut v);
    write(&cfg, &v);
    tmp
}

/// The error of `f`, which must come within a second and mention every one of `needles`.
fn fails_fast<T>(what: &str, needles: &[&str], f: impl FnOnce() -> trtllm_core::Result<T>) -> String {
    fails_within(Duration::from_secs(1), what, needles, f)
}

fn fails_within<T>(
    limit: Duration,
    what: &str,
    needles: &[&str],
    f: impl FnOnce() -> trtllm_core::Result<T>,
) -> String {
    let t = Instant::now();
    let msg = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_)) => panic!("{what}: accepted, expected an error"),
        Ok(Err(e)) => e.to_string(),
        Err(_) => panic!("{what}: panicked"),
    };
    assert!(t.elapsed() < limit, "{what}: took {:?}", t.elapsed());
    for n in needles {
        assert!(msg.contains(n), "{what}: `{n}` not in: {msg}");
    }
    msg
}

/// Every HF-directory load path on `dir`.
fn every_hf_path(what: &str, dir: &Path, needles: &[&str]) {
    trtllm::init();
    fails_fast(&format!("{what}: weights"), needles, || inspect(dir, Mapping::default()));
    fails_fast(&format!("{what}: build_model"), needles, || build_model(dir, &LoadOptions::default()));
    fails_fast(&format!("{what}: Llm"), needles, || Llm::with_options(dir, LlmOptions::default()));
    let out = tempfile::tempdir().expect("tempdir");
    let ckpt = out.path().join("ckpt");
    fails_fast(&format!("{what}: convert"), needles, || {
        convert(dir, &ckpt, &ConvertOptions::default(), &mut |_| {})
    });
    assert!(!ckpt.exists(), "{what}: a refused convert writes nothing");
}

#[test]
fn absurd_layer_counts_fail_fast_on_every_hf_path() {
    for n in [1_000_000_000u64, 1_000_000, 1_000] {
        let dir = tweaked("llama", |c| c["num_hidden_layers"] = json!(n));
        let limit = if n > 16384 { "limit of 16384" } else { "tensors" };
        every_hf_path(&format!("{n} layers"), dir.path(), &["config.json", "num_hidden_layers", limit]);
    }
}

#[test]
fn absurd_expert_counts_fail_fast() {
    for n in [1_000_000u64, 1_000] {
        let dir = tweaked("mixtral", |c| c["num_local_experts"] = json!(n));
        let limit = if n > 16384 { "limit of 16384" } else { "model.safetensors" };
        every_hf_path(&format!("{n} experts"), dir.path(), &["num_local_experts", limit]);
    }
}

#[test]
fn vocabulary_larger_than_the_weights_fails_fast() {
    let dir = tweaked("llama", |c| c["vocab_size"] = json!(50_000_000u64));
    every_hf_path("vocab", dir.path(), &["vocab_size", "model.safetensors", "bytes"]);
}

/// convert (and build) `llama` into a temp dir; returns (tmp, checkpoint, engine).
fn converted() -> (TempDir, PathBuf, PathBuf) {
    trtllm::init();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (ckpt, eng) = (tmp.path().join("c"), tmp.path().join("e"));
    convert(&fixture("llama"), &ckpt, &ConvertOptions::default(), &mut |_| {}).expect("convert");
    build_engine(&ckpt, &eng, &BuildOptions::default()).expect("build");
    (tmp, ckpt, eng)
}

#[test]
fn checkpoint_and_engine_configs_are_checked_at_load() {
    let (_tmp, ckpt, eng) = converted();
    for (n, limit) in [(1_000_000_000u64, "limit of 16384"), (1_000, "rank0.safetensors")] {
        for dir in [&ckpt, &eng] {
            let cfg = dir.join("config.json");
            let mut v = read(&cfg);
            v["model_config"]["num_hidden_layers"] = json!(n);
            if n < 1_000_000 {
                // A consistent config (one layer type a layer), so the weights are what refuse it.
                v["model_config"]["layer_types"] = json!(vec!["Full"; n as usize]);
            }
            write(&cfg, &v);
            let what = format!("{n} layers in {}", dir.display());
            fails_fast(&what, &["config.json", "num_hidden_layers", limit], || {
                Llm::with_options(dir, LlmOptions::default())
            });
            fails_fast(&what, &["num_hidden_layers"], || build_model(dir, &LoadOptions::default()));
        }
    }
}

#[test]
fn engine_build_config_limits_are_checked_at_load() {
    for (field, value, needle) in [
        ("kv_block_size", json!(0), "must be positive"),
        ("max_seq_len", json!(1_000_000_000_000u64), "limit of 16777216"),
        ("max_batch_size", json!(1_000_000_000u64), "limit of 65536"),
        ("max_num_tokens", json!(0), "must be positive"),
    ] {
        let (_tmp, _ckpt, eng) = converted();
        let file = eng.join(BUILD_CONFIG);
        let mut v = read(&file);
        v[field] = value;
        write(&file, &v);
        let needles = [BUILD_CONFIG, field, needle];
        fails_fast(field, &needles, || LlmOptions::for_dir(&eng));
        fails_fast(field, &needles, || Llm::new(&eng));
    }
}

#[test]
fn impossible_kv_and_batch_sizes_are_errors_before_allocating() {
    trtllm::init();
    let dir = fixture("llama");
    let with = |f: fn(&mut LlmOptions)| {
        let mut o = LlmOptions::default();
        f(&mut o);
        o
    };
    let cases: [(&str, LlmOptions, &str); 4] = [
        ("kv_block_size 0", with(|o| o.kv_block_size = 0), "kv_block_size"),
        ("max_batch_size 1e9", with(|o| o.max_batch_size = 1_000_000_000), "max_batch_size"),
        ("kv blocks 1e12", with(|o| o.kv_num_blocks = Some(1_000_000_000_000)), "GiB"),
        ("kv blocks usize::MAX", with(|o| o.kv_num_blocks = Some(usize::MAX)), "overflows"),
    ];
    for (what, opts, needle) in cases {
        // These load the (tiny) model first: the cache is sized from its layout.
        fails_within(Duration::from_secs(3), what, &[needle], || Llm::with_options(&dir, opts));
    }
}

#[test]
fn a_head_missing_from_an_untied_config_is_reported_as_tied_by_absence() {
    trtllm::init();
    let tmp = tweaked("llama", |_| {});
    // Rewrite the weights without the head; the config still says tie_word_embeddings: false.
    let files = trtllm_core::weights::SafetensorsFiles::open_dir(tmp.path()).expect("open");
    let kept: Vec<_> = files
        .names()
        .filter(|n| *n != "lm_head.weight")
        .map(|n| (n.clone(), files.read(n).expect("read")))
        .collect();
    drop(files);
    trtllm_core::weights::write_safetensors(&tmp.path().join("model.safetensors"), &kept, None)
        .expect("write");
    assert_eq!(read(&tmp.path().join("config.json"))["tie_word_embeddings"], json!(false));
    let (cfg, _, _, report) = inspect(tmp.path(), Mapping::default()).expect("inspect");
    assert!(report.is_ok() && cfg.tie_word_embeddings);
    assert_eq!(report.tied_by_absence.as_deref(), Some("lm_head.weight"));
    let (_, _, _, report) = inspect(&fixture("llama"), Mapping::default()).expect("inspect");
    assert_eq!(report.tied_by_absence, None, "a stored head is not tied by absence");
}

#[test]
fn a_fifo_or_a_huge_header_is_refused_without_reading_it() {
    trtllm::init();
    let tmp = tweaked("llama", |_| {});
    let st = tmp.path().join("model.safetensors");
    std::fs::remove_file(&st).expect("rm");
    let ok = std::process::Command::new("mkfifo").arg(&st).status().map(|s| s.success()).unwrap_or(false);
    if ok {
        fails_fast("fifo", &["model.safetensors", "not a regular file"], || {
            inspect(tmp.path(), Mapping::default())
        });
        std::fs::remove_file(&st).expect("rm fifo");
    }
    // A 200 MB header in a (sparse) 300 MB file: refused from its first 8 bytes.
    let f = std::fs::File::create(&st).expect("create");
    std::io::Write::write_all(&mut &f, &(200u64 << 20).to_le_bytes()).expect("len");
    f.set_len(300 << 20).expect("sparse");
    fails_fast("huge header", &["model.safetensors", "exceeds the limit of 104857600 bytes"], || {
        inspect(tmp.path(), Mapping::default())
    });
}
