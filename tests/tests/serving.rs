//! The serving scheduler and engine on the tiny Llama fixture (CPU, f32): continuous batching
//! mixes prefill and decode, chunked prefill, preemption by recompute, prefix reuse,
//! cancellation, and every KV block free at the end — each checked against `Llm::generate_ids`
//! (greedy tokens must be identical).

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use trtllm_core::batch::KvCache;

use trtllm_core::llm::Llm;

use trtllm_core::load::{load_model, LlmOptions};

use trtllm_core::runner::SamplingParams;

use trtllm_core::runner::ModelRunner;
use trtllm_core::serve::{Engine, Event, FinishReason, Scheduler, SchedulerConfig, SeqRequest};

use trtllm_core::text::Tokenizer;
use trtllm_core::{DType, Device};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("llama")
}

fn opts() -> LlmOptions {
    trtllm::init();
    let mut o = LlmOptions { kv_block_size: 4, max_batch_size: 8, max_seq_len: 128, ..Default::default() };
    o.load.dtype = Some(DType::F32);
    o
}

/// What `Llm::generate_ids` makes of each prompt alone.
fn reference(prompts: &[Vec<u32>], max_new: usize) -> Vec<Vec<u32>> {
    let mut llm = Llm::with_options(fixture(), opts()).expect("load");
    let p = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(max_new) };
    prompts
        .iter()
        .map(|pr| {
            llm.generate_ids(vec![pr.clone()], &p, &mut |_, _| {}).expect("generate")[0].token_ids.clone()
        })
        .collect()
}

fn scheduler(num_blocks: usize, cfg: SchedulerConfig) -> Scheduler {
    let o = opts();
    let model = load_model(&fixture(), &o).expect("load");
    let kv = ModelRunner::make_kv(
        model.as_ref(),
        Device::Cpu,
        DType::F32,
        Default::default(),
        o.kv_block_size,
        num_blocks,
    )
    .expect("kv");
    let runner = ModelRunner::new(model, kv, cfg.max_batch_size, cfg.max_seq_len, false);
    Scheduler::new(runner, cfg, vec![2]).expect("scheduler")
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| 3 + (i * 37 + seed * 101) % 300).collect()
}

fn req(id: u64, prompt: &[u32], max_new: usize) -> SeqRequest {
    let params = Arc::new(SamplingParams { ignore_eos: true, ..SamplingParams::greedy(max_new) });
    SeqRequest { id, prompt: prompt.to_vec(), params, seed: None }
}

/// Step until idle (bounded); returns each sequence's tokens and the step outputs' totals.
struct Run {
    tokens: Vec<Vec<u32>>,
    mixed_steps: usize,
    preempted: usize,
    steps: usize,
}

fn run(s: &mut Scheduler, n: usize, mut before_step: impl FnMut(usize, &mut Scheduler)) -> Run {
    let mut r = Run { tokens: vec![vec![]; n], mixed_steps: 0, preempted: 0, steps: 0 };
    while s.has_work() || r.steps == 0 {
        before_step(r.steps, s);
        let out = s.step().expect("step");
        if out.prefill_tokens > 0 && out.decode_tokens > 0 {
            r.mixed_steps += 1;
        }
        r.preempted += out.preempted.len();
        for t in out.tokens {
            r.tokens[t.seq as usize].push(t.token);
        }
        r.steps += 1;
        assert!(r.steps < 2000, "scheduler did not finish");
    }
    r
}

fn all_free(s: &Scheduler) {
    assert_eq!(s.blocks().num_available(), s.blocks().num_total(), "KV blocks still held");
    assert_eq!((s.num_running(), s.num_waiting()), (0, 0));
}

#[test]
fn single_request_matches_generate_ids() {
    let p = prompt(1, 20);
    let want = reference(std::slice::from_ref(&p), 24);
    let mut s = scheduler(64, SchedulerConfig::default());
    s.add(req(0, &p, 24)).expect("add");
    let r = run(&mut s, 1, |_, _| {});
    assert_eq!(r.tokens[0], want[0]);
    all_free(&s);
}

#[test]
fn batching_mixes_prefill_and_decode_with_chunked_prefill() {
    let prompts: Vec<Vec<u32>> = (0..5).map(|i| prompt(i, 9 + 4 * i as usize)).collect();
    let want = reference(&prompts, 12);
    // A 10-token budget: long prompts are prefilled in chunks, next to running decodes.
    let cfg = SchedulerConfig { max_num_tokens: 10, max_batch_size: 4, ..Default::default() };
    let mut s = scheduler(128, cfg);
    let r = run(&mut s, prompts.len(), |step, s| {
        // Arrivals while others decode.
        if step < prompts.len() {
            s.add(req(step as u64, &prompts[step], 12)).expect("add");
        }
    });
    assert!(r.mixed_steps > 0, "no step mixed prefill and decode");
    assert_eq!(r.tokens, want);
    all_free(&s);
}

#[test]
fn preemption_gives_the_same_greedy_tokens() {
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| prompt(i + 10, 10 + i as usize)).collect();
    let want = reference(&prompts, 30);
    // 24 blocks of 4 = 96 slots for 6 sequences that grow to ~45 tokens each.
    let mut s = scheduler(24, SchedulerConfig { prefix_caching: false, ..Default::default() });
    for (i, p) in prompts.iter().enumerate() {
        s.add(req(i as u64, p, 30)).expect("add");
    }
    let r = run(&mut s, prompts.len(), |_, _| {});
    assert!(r.preempted > 0, "nothing was preempted");
    assert_eq!(r.tokens, want);
    all_free(&s);
    // The same with prefix caching on: recompute takes the victim's blocks back from the cache.
    let mut s = scheduler(24, SchedulerConfig::default());
    for (i, p) in prompts.iter().enumerate() {
        s.add(req(i as u64, p, 30)).expect("add");
    }
    let r = run(&mut s, prompts.len(), |_, _| {});
    assert!(r.preempted > 0);
    assert_eq!(r.tokens, want);
    assert_eq!(s.blocks().num_available(), s.blocks().num_total());
}

#[test]
fn prefix_reuse_hits_and_gives_identical_tokens() {
    let system = prompt(7, 18);
    let prompts: Vec<Vec<u32>> = (0..3).map(|i| [system.clone(), prompt(20 + i, 5)].concat()).collect();
    let want = reference(&prompts, 10);
    let mut s = scheduler(64, SchedulerConfig::default());
    s.add(req(0, &prompts[0], 10)).expect("add");
    let first = run(&mut s, 3, |_, _| {});
    assert_eq!(s.blocks().hit_tokens, 0);
    s.add(req(1, &prompts[1], 10)).expect("add");
    s.add(req(2, &prompts[2], 10)).expect("add");
    let mut hits = 0;
    let rest = run(&mut s, 3, |step, s| {
        if step == 0 {
            hits = s.blocks().num_cached();
        }
    });
    assert!(hits >= 4, "the shared 18-token prefix should be 4 cached blocks of 4, found {hits}");
    // Both later prompts reuse the 16 tokens of the 4 full shared blocks.
    assert_eq!(s.blocks().hit_tokens, 32);
    assert_eq!(first.tokens[0], want[0]);
    assert_eq!(rest.tokens[1], want[1]);
    assert_eq!(rest.tokens[2], want[2]);
    all_free(&s);
}

#[test]
fn cancellation_frees_blocks() {
    let mut s = scheduler(64, SchedulerConfig::default());
    s.add(req(0, &prompt(3, 30), 50)).expect("add");
    s.add(req(1, &prompt(4, 12), 50)).expect("add");
    for _ in 0..4 {
        s.step().expect("step");
    }
    assert!(s.blocks().num_available() < s.blocks().num_total());
    assert!(s.abort(0));
    assert!(s.abort(1));
    assert!(!s.abort(7));
    all_free(&s);
}

#[test]
fn invalid_requests_are_rejected_with_their_reason() {
    let mut s = scheduler(8, SchedulerConfig::default());
    let e = s.add(req(5, &prompt(1, 30), 10)).expect_err("too long for 8 blocks of 4");
    assert!(e.to_string().contains("sequence 5"), "{e}");
    assert!(s.add(req(6, &[], 1)).is_err());
    assert!(s.add(req(7, &[9999], 1)).is_err());
    assert!(!s.has_work());
}

fn engine(max_queue: usize) -> (Engine, Arc<Tokenizer>) {
    let o = opts();
    let model = load_model(&fixture(), &o).expect("load");
    let kv: KvCache =
        ModelRunner::make_kv(model.as_ref(), Device::Cpu, DType::F32, Default::default(), 4, 64).expect("kv");
    let runner = ModelRunner::new(model, kv, 64, 4096, false);
    let sched = Scheduler::new(runner, SchedulerConfig::default(), vec![2]).expect("scheduler");
    let tok = Arc::new(Tokenizer::from_dir(&fixture()).expect("tokenizer"));
    (Engine::start(sched, Some(tok.clone()), max_queue).expect("engine"), tok)
}

type Collected = (Vec<Vec<u32>>, Vec<String>, Vec<Option<FinishReason>>, Option<trtllm_core::serve::Usage>);

fn collect(rx: &mpsc::Receiver<Event>) -> Collected {
    let (mut ids, mut text, mut fin) = (vec![], vec![], vec![]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("engine event") {
            Event::Delta(d) => {
                if ids.len() <= d.index {
                    ids.resize(d.index + 1, vec![]);
                    text.resize(d.index + 1, String::new());
                    fin.resize(d.index + 1, None);
                }
                ids[d.index].extend(d.token_ids);
                text[d.index].push_str(&d.text);
                fin[d.index] = d.finish;
            }
            Event::Done(u) => return (ids, text, fin, Some(u)),
            Event::Error(e) => panic!("engine error: {e}"),
        }
    }
}

#[test]
fn engine_streams_n_choices_stop_strings_and_cancels() {
    let (eng, tok) = engine(4);
    let h = eng.handle();
    let ids = tok.encode("The quick brown fox").expect("encode");
    let want = reference(std::slice::from_ref(&ids), 16)[0].clone();
    let (tx, rx) = mpsc::channel();
    let p = SamplingParams { n: 2, ignore_eos: true, ..SamplingParams::greedy(16) };
    h.submit(ids.clone(), p, Box::new(tx)).expect("submit");
    let (got, text, fin, usage) = collect(&rx);
    assert_eq!(got, vec![want.clone(), want.clone()]);
    assert_eq!(fin, vec![Some(FinishReason::Length); 2]);
    assert_eq!(usage.map(|u| (u.prompt_tokens, u.completion_tokens)), Some((ids.len(), 32)));
    let full = tok.decode(&want, true).expect("decode");
    assert_eq!(text[0], full);

    // A stop string cuts the text before it and ends the choice.
    if let Some(stop) = full.get(3..5).filter(|s| !s.trim().is_empty()) {
        let (tx, rx) = mpsc::channel();
        let p =
            SamplingParams { stop: vec![stop.to_string()], ignore_eos: true, ..SamplingParams::greedy(16) };
        h.submit(ids.clone(), p, Box::new(tx)).expect("submit");
        let (_, text, fin, _) = collect(&rx);
        assert_eq!(fin[0], Some(FinishReason::Stop));
        assert_eq!(text[0], full[..full.find(stop).unwrap_or(0)]);
    }

    // Cancel mid-generation: every block comes back.
    let (tx, rx) = mpsc::channel();
    let long = 256 - ids.len();
    let p = SamplingParams { ignore_eos: true, ..SamplingParams::greedy(long) };
    let r = h.submit(ids.clone(), p, Box::new(tx)).expect("submit");
    assert!(matches!(rx.recv_timeout(Duration::from_secs(30)), Ok(Event::Delta(_))));
    r.cancel();
    let m = h.metrics();
    let deadline = Instant::now() + Duration::from_secs(30);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    // The gauges are published after each step: wait for the abort, then for them.
    while load(&m.requests_aborted) != 1 || load(&m.kv_blocks_free) != 64 || load(&m.running_seqs) != 0 {
        assert!(Instant::now() < deadline, "blocks not freed after cancel");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(rx.try_iter().count() < long - 1, "the request ran to the end before the cancel");
    let prom = m.render_prometheus();
    assert!(prom.contains("trtllm_requests_total{outcome=\"aborted\"} 1"), "{prom}");
    // Invalid input is refused at submit, naming the field.
    let e =
        h.submit(vec![], SamplingParams::default(), Box::new(mpsc::channel().0)).err().expect("empty prompt");
    assert!(e.to_string().contains("prompt"), "{e}");
    let e = h.submit(ids, SamplingParams::greedy(1000), Box::new(mpsc::channel().0)).err().expect("too long");
    assert!(e.to_string().contains("max_tokens"), "{e}");
    eng.shutdown();
}

/// `Llm::generate_ids` is the scheduler driven to completion: the engine thread (what
/// `trtllm serve` runs) gives the same tokens for the same greedy and seeded-sampled requests,
/// penalties and the `n` choices' seeds (`seed + i`) included.
#[test]
fn llm_generate_and_the_serving_engine_give_identical_tokens() {
    let (eng, tok) = engine(4);
    let h = eng.handle();
    let ids = tok.encode("The quick brown fox").expect("encode");
    let sampled = SamplingParams {
        temperature: 0.8,
        top_p: 0.95,
        top_k: 50,
        repetition_penalty: 1.1,
        seed: Some(1234),
        ignore_eos: true,
        ..SamplingParams::greedy(16)
    };
    let cases = [SamplingParams { ignore_eos: true, ..SamplingParams::greedy(16) }, sampled];
    let mut llm = Llm::with_options(fixture(), opts()).expect("load");
    for p in cases {
        let n = 2;
        let from_llm: Vec<Vec<u32>> = llm
            .generate_ids(vec![ids.clone(); n], &p, &mut |_, _| {})
            .expect("generate")
            .into_iter()
            .map(|g| g.token_ids)
            .collect();
        let (tx, rx) = mpsc::channel();
        h.submit(ids.clone(), SamplingParams { n, ..p.clone() }, Box::new(tx)).expect("submit");
        let (from_engine, ..) = collect(&rx);
        assert_eq!(from_llm, from_engine, "temperature {}", p.temperature);
        assert_eq!(from_llm[0].len(), 16);
        if p.temperature > 0.0 {
            assert_ne!(from_llm[0], from_llm[1], "the two choices sample with different seeds");
        }
    }
    eng.shutdown();
}
