//! Multi-process ranks on the CPU (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, the TCP mesh):
//! tp 2, pp 2 and tp 2 x pp 2 launched as separate processes — this test binary re-run as each
//! rank — against one in-process rank on the fixtures: f32 logits NMSE <= 1e-8 and identical
//! greedy tokens for a batch of three prompts (pp splits it into micro-batches). Two shapes:
//! every rank running the same loop (`run`, `bench`), and rank 0 leading workers that only
//! follow its steps (`serve`: `LlmOptions::lead_workers`, `CausalLM::follow`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use trtllm_tests::{fixture, ids, nmse};

use trtllm_core::dist::SingleRank;
use trtllm_core::llm::Llm;
use trtllm_core::load::{load_model, LlmOptions};
use trtllm_core::runner::{ModelRunner, SamplingParams};
use trtllm_core::weights::SafetensorsFiles;
use trtllm_core::DType;

const CHILD: &str = "TRTLLM_MP_TEST_CHILD";

fn prompts(name: &str) -> Vec<Vec<u32>> {
    let refs =
        SafetensorsFiles::open_files(&[fixture(name).join("reference.safetensors")]).expect("reference");
    let input = ids(&refs.read("input_ids").expect("ids"));
    let other: Vec<u32> = input.iter().rev().map(|&t| (t * 7 + 3) % 384).collect();
    let third: Vec<u32> = input.iter().take(3).map(|&t| (t * 5 + 1) % 384).collect();
    vec![input, other, third]
}

fn options(pp: usize, lead: bool) -> LlmOptions {
    let mut opts = LlmOptions { kv_block_size: 4, max_batch_size: 4, max_seq_len: 64, ..Default::default() };
    opts.load.dtype = Some(DType::F32);
    opts.pp_size = pp;
    opts.apply_dist_env().expect("launch environment");
    opts.lead_workers = lead;
    opts
}

/// Logits of the first prompt and greedy tokens of all three, from a model loaded as `pp` says
/// (and, in a child, as the launch environment says; `lead`: rank 0 leading workers).
fn run(name: &str, pp: usize, lead: bool) -> (Vec<f32>, Vec<Vec<u32>>) {
    trtllm::init();
    let opts = options(pp, lead);
    let mut llm = Llm::with_options(fixture(name), opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let p = prompts(name);
    let logits = llm.logits_all(&p[0], None, &SingleRank).expect("forward");
    let logits = logits.to_f32_vec().expect("f32");
    let params = SamplingParams { max_new_tokens: 12, ignore_eos: true, ..Default::default() };
    let got = llm.generate_ids(p, &params, &mut |_, _| {}).expect("generate");
    (logits, got.into_iter().map(|g| g.token_ids).collect())
}

/// A rank of a launch: runs only when the parent test started this binary as one.
#[test]
fn child() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let parts: Vec<&str> = spec.split(':').collect();
    let (name, pp, lead) = (parts[0], parts[1].parse().expect("pp"), parts[2] == "lead");
    let rank: usize = std::env::var("RANK").expect("RANK").parse().expect("rank");
    if lead && rank != 0 {
        trtllm::init();
        let opts = options(pp, true);
        let model = load_model(&fixture(name), &opts).expect("worker load");
        let dtype = opts.load.weight_dtype(model.config());
        model
            .follow(&mut |blocks, bs| {
                ModelRunner::make_kv(&*model, opts.load.device, dtype, opts.kv_cache_dtype, bs, blocks)
            })
            .expect("worker");
        println!("MP-RESULT {}", serde_json::json!({ "logits": [], "tokens": [] }));
        return;
    }
    let (logits, tokens) = run(name, pp, lead);
    println!("MP-RESULT {}", serde_json::json!({ "logits": logits, "tokens": tokens }));
}

/// `world` processes of this binary as the ranks of one launch; each rank's logits and tokens.
fn launch(name: &str, world: usize, pp: usize, lead: bool) -> Vec<(Vec<f32>, Vec<Vec<u32>>)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let exe = std::env::current_exe().expect("test binary");
    // outputs to files: a rank blocked on a full pipe would never finish
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |r: usize, what: &str| dir.path().join(format!("rank{r}.{what}"));
    let kids: Vec<_> = (0..world)
        .map(|r| {
            Command::new(&exe)
                .args(["child", "--exact", "--nocapture", "--test-threads=1"])
                .env(CHILD, format!("{name}:{pp}:{}", if lead { "lead" } else { "spmd" }))
                .env("RANK", r.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", port.to_string())
                .env("TRTLLM_RENDEZVOUS_TIMEOUT", "60")
                .env("TRTLLM_NUM_THREADS", "1")
                .stdout(Stdio::from(std::fs::File::create(file(r, "out")).expect("stdout file")))
                .stderr(Stdio::from(std::fs::File::create(file(r, "err")).expect("stderr file")))
                .spawn()
                .expect("start a rank")
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut out = vec![];
    for (r, mut kid) in kids.into_iter().enumerate() {
        while kid.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = kid.kill();
                panic!("{name} world {world} pp {pp}: rank {r} did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(file(r, "out")).expect("rank stdout");
        // the harness prints "test child ... " on the same line
        let line =
            text.lines().find_map(|l| l.split_once("MP-RESULT ").map(|(_, r)| r)).unwrap_or_else(|| {
                let err = std::fs::read_to_string(file(r, "err")).unwrap_or_default();
                panic!("{name} world {world} pp {pp}: rank {r} printed no result:\n{text}\n{err}")
            });
        let v: serde_json::Value = serde_json::from_str(line).expect("result json");
        out.push(serde_json::from_value(serde_json::json!([v["logits"], v["tokens"]])).expect("result"));
    }
    out
}

fn check(name: &str) {
    let (want_logits, want_tokens) = run(name, 1, false);
    for (tp, pp, lead) in [(2, 1, false), (1, 2, false), (2, 2, false), (2, 1, true), (2, 2, true)] {
        let how = if lead { "leader + workers" } else { "every rank" };
        // workers return nothing: only rank 0 of a led launch has results
        let ranks = launch(name, tp * pp, pp, lead).into_iter().enumerate().filter(|(r, _)| !lead || *r == 0);
        for (r, (logits, tokens)) in ranks {
            let e = nmse(&logits, &want_logits);
            println!("MP {name:10} tp {tp} pp {pp} ({how}) rank {r}: logits NMSE vs one rank {e:.2e}");
            assert!(e <= 1e-8, "{name} tp {tp} pp {pp} ({how}) rank {r}: logits NMSE {e:e}");
            assert_eq!(tokens, want_tokens, "{name} tp {tp} pp {pp} ({how}) rank {r}: greedy tokens differ");
        }
    }
}

#[test]
fn llama() {
    check("llama");
}

#[test]
fn mixtral() {
    check("mixtral");
}

#[test]
fn gpt_oss() {
    check("gpt_oss");
}
