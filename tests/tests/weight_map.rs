//! The weight map of every fixture, pinned: `plan_weights` (what `trtllm weights` prints, what
//! validation, loading and `convert` use) at tp 1, 2 and 4 against `tests/weight_maps/NAME.txt`.
//! A change to any engine name, HF source, shape, transform, split or dtype fails here, naming
//! the fixture and the first differing line. After an intended change, re-bless with
//! `TRTLLM_BLESS=1 cargo test -p trtllm-tests --test weight_map` and review the diff.
//!
//! `logits_fingerprints` (ignored) prints a hash of the f32 and bf16 logits bits of every fixture
//! at tp 1, 2 and 4 on the CPU group: run it before and after a refactor that must not change
//! the math (`-- --ignored --nocapture`) and compare. The bits depend on the CPU's ISA tier, so
//! they are not pinned in a file.

use std::fmt::Write as _;
use std::path::PathBuf;

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::LlmOptions;
use trtllm_core::model::{plan_weights, HfCheckpoint};
use trtllm_core::weights::{SafetensorsFiles, WeightSpec};
use trtllm_core::{DType, Mapping};
use trtllm_tests::{fixture, ids};

const TP: [usize; 3] = [1, 2, 4];

/// One line per field of the spec, in a stable order.
fn line(s: &WeightSpec) -> String {
    let src: Vec<String> = s.sources.iter().map(|x| format!("{} {:?}", x.name, x.shape)).collect();
    format!(
        "{} {:?} {:?} {:?} {:?} {:?} <- {}",
        s.name,
        s.shape,
        s.dtype,
        s.split,
        s.combine,
        s.transform,
        src.join(", ")
    )
}

/// The map at tp 1 with each tensor's shard shape at tp 2 and 4; the plan of every rank of every
/// tp size must be the tp 1 plan (a spec holds the full tensor and its split rule).
fn render(name: &str, dir: &std::path::Path) -> String {
    let hf = HfCheckpoint::open(dir).unwrap_or_else(|e| panic!("{name}: {e}"));
    // Planned in bf16, so the f32 norm weights stand out.
    let plan = |tp: usize, rank: usize| {
        let m = Mapping::new(tp, 1, rank).expect("mapping");
        let specs = plan_weights(hf.entry, &hf.cfg, m, DType::BF16).unwrap_or_else(|e| panic!("{name}: {e}"));
        let report = hf.validate(&specs);
        assert!(report.is_ok(), "{name} tp {tp} rank {rank}: validation failed:\n{}", report.render());
        specs
    };
    let (head, base) = (format!("{} -> {}", hf.cfg.architecture, hf.entry.type_name), plan(1, 0));
    let mut out = format!("# {name}: {head}, {} tensors\n", base.len());
    for &tp in &TP[1..] {
        for rank in 0..tp {
            let specs = plan(tp, rank);
            let (a, b): (Vec<String>, Vec<String>) =
                (base.iter().map(line).collect(), specs.iter().map(line).collect());
            assert_eq!(a, b, "{name}: the plan of tp {tp} rank {rank} differs from tp 1");
        }
    }
    for s in &base {
        let shards: Vec<String> = TP[1..]
            .iter()
            .map(|&tp| match s.shard_shape(tp) {
                Ok(sh) => format!("tp{tp} {sh:?}"),
                Err(e) => format!("tp{tp} error: {e}"),
            })
            .collect();
        let _ = writeln!(out, "{} | {}", line(s), shards.join(" "));
    }
    out
}

fn snapshot(name: &str) -> PathBuf {
    fixture("../weight_maps").join(format!("{name}.txt"))
}

fn check(name: &str) {
    trtllm::init();
    compare(name, &render(name, &fixture(name)));
}

/// The out-of-tree model, on its own tiny checkpoint.
#[test]
fn my_model() {
    my_model::link();
    let dir = tempfile::tempdir().expect("tempdir");
    my_model::write_tiny_checkpoint(dir.path(), 7).expect("checkpoint");
    compare("my_model", &render("my_model", dir.path()));
}

fn compare(name: &str, got: &str) {
    let path = snapshot(name);
    if std::env::var("TRTLLM_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, got).expect("write snapshot");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (bless with TRTLLM_BLESS=1)", path.display()));
    for (i, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "{name}: weight map line {} differs from {}", i + 1, path.display());
    }
    assert_eq!(got.lines().count(), want.lines().count(), "{name}: number of lines differs");
}

macro_rules! weight_maps {
    ($($name:ident),* $(,)?) => {
        mod weight_map { $(#[test] fn $name() { super::check(stringify!($name)); })* }
        const ALL: &[&str] = &[$(stringify!($name)),*];
    };
}
trtllm_tests::for_each_fixture!(weight_maps);

/// FNV-1a over the bits.
fn fnv(v: &[f32]) -> u64 {
    v.iter()
        .flat_map(|x| x.to_bits().to_le_bytes())
        .fold(0xcbf29ce484222325, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}

#[test]
#[ignore = "prints logits bit fingerprints to compare before/after a refactor"]
fn logits_fingerprints() {
    trtllm::init();
    for name in ALL {
        let refs =
            SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
        let input = ids(&refs.read("input_ids").expect("ids"));
        let mut row = format!("LOGITS {name:20}");
        for dt in [DType::F32, DType::BF16] {
            for tp in TP {
                let mut opts =
                    LlmOptions { kv_block_size: 4, max_batch_size: 2, max_seq_len: 64, ..Default::default() };
                opts.load.dtype = Some(dt);
                opts.tp_size = (tp > 1).then_some(tp);
                let mut llm =
                    Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name}: {e}"));
                let t = llm.logits_all(&input, None, &SingleRank).expect("forward");
                let v = t.to_cpu().expect("cpu").to_f32_vec().expect("f32");
                let _ = write!(row, " {dt}/tp{tp}={:016x}", fnv(&v));
            }
        }
        println!("{row}");
    }
}
