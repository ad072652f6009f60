//! The engine and its output thread against a fake runner that generates a fixed text (the
//! fixture Llama tokenizer's ids of `SCRIPT`, one per step): stop strings found on the output
//! thread, cancellation while the output thread is busy, and a slow sink that must not hold
//! the engine beyond the bounded output queue.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::engine::{Engine, Event, EventSink, Usage};
use super::output::OUTPUT_QUEUE_STEPS;
use super::scheduler::{Scheduler, SchedulerConfig};
use crate::runner::{Executor, RunnerOutput, Sampled, SamplingParams, SchedulerOutput};
use crate::serve::FinishReason;
use crate::text::Tokenizer;
use crate::Result;

const SCRIPT: &str = " one two three stop four five six seven eight nine ten eleven twelve";

/// Samples `script[generated so far % len]` for every row; counts the tokens it sampled.
struct ScriptRunner {
    script: Vec<u32>,
    sampled: Arc<AtomicUsize>,
}

impl Executor for ScriptRunner {
    fn execute(&mut self, step: SchedulerOutput<'_>) -> Result<RunnerOutput> {
        let mut out = RunnerOutput::default();
        for s in step.seqs {
            let tok = s.sample.map(|x| self.script[x.output.len() % self.script.len()]);
            self.sampled.fetch_add(tok.is_some() as usize, Relaxed);
            out.sampled.push(tok.map(|token| Sampled { token, logprob: None }));
        }
        Ok(out)
    }
    fn kv_blocks(&self) -> (usize, usize) {
        (64, 4)
    }
    fn vocab_size(&self) -> usize {
        1 << 16
    }
}

struct Setup {
    eng: Engine,
    tok: Arc<Tokenizer>,
    script: Vec<u32>,
    sampled: Arc<AtomicUsize>,
}

fn setup() -> Setup {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/llama");
    let tok = Arc::new(Tokenizer::from_dir(&dir).expect("fixture tokenizer"));
    let script = tok.encode_raw(SCRIPT).expect("encode");
    let sampled = Arc::new(AtomicUsize::new(0));
    let runner = ScriptRunner { script: script.clone(), sampled: sampled.clone() };
    let sched = Scheduler::new(runner, SchedulerConfig::default(), vec![]).expect("scheduler");
    let eng = Engine::start(sched, Some(tok.clone()), 8).expect("engine");
    Setup { eng, tok, script, sampled }
}

fn params(max_new: usize, stop: &[&str]) -> SamplingParams {
    let stop = stop.iter().map(|s| s.to_string()).collect();
    SamplingParams { stop, ignore_eos: true, ..SamplingParams::greedy(max_new) }
}

/// A sink that blocks every send while its gate is closed.
struct GatedSink {
    tx: Sender<Event>,
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl EventSink for GatedSink {
    fn send(&self, ev: Event) -> bool {
        let (open, cv) = &*self.gate;
        let mut g = open.lock().expect("gate");
        while !*g {
            g = cv.wait(g).expect("gate");
        }
        self.tx.send(ev).is_ok()
    }
}

fn open_gate(gate: &(Mutex<bool>, Condvar)) {
    *gate.0.lock().expect("gate") = true;
    gate.1.notify_all();
}

/// Every event up to `Done`: the deltas' (text, finish) and the usage.
fn collect(rx: &Receiver<Event>) -> (Vec<(String, Option<FinishReason>)>, Usage) {
    let mut deltas = vec![];
    loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("engine event") {
            Event::Delta(d) => deltas.push((d.text, d.finish)),
            Event::Done(u) => return (deltas, u),
            Event::Error(e) => panic!("engine error: {e}"),
        }
    }
}

/// Poll `cond` until it holds (a generous deadline: a hang fails, a slow machine does not).
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Relaxed)
}

#[test]
fn a_stop_string_found_on_the_output_thread_aborts_the_sequence() {
    let s = setup();
    let h = s.eng.handle();
    let prompt = s.tok.encode_raw("Count:").expect("encode");
    let (tx, rx) = mpsc::channel();
    h.submit(prompt, params(64, &["stop"]), Box::new(tx)).expect("submit");
    let (deltas, usage) = collect(&rx);
    let full = s.tok.decode(&s.script, true).expect("decode");
    let text: String = deltas.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(text, full[..full.find("stop").expect("stop in the script")]);
    // The finishing delta is the last one: nothing the engine ran after the stop came out.
    assert_eq!(deltas.last().map(|d| d.1), Some(Some(FinishReason::Stop)));
    assert!(deltas[..deltas.len() - 1].iter().all(|d| d.1.is_none()));
    assert_eq!(usage.completion_tokens, deltas.len());
    let m = h.metrics();
    assert_eq!(load(&m.generation_tokens), deltas.len() as u64, "only emitted tokens are counted");
    // The engine dropped the sequence: its blocks are back, and it ran at most the output
    // queue's depth of steps past the stop, not to max_tokens.
    wait_for("the stopped sequence's blocks", || load(&m.running_seqs) == 0 && load(&m.kv_blocks_free) == 64);
    let ran = s.sampled.load(Relaxed);
    assert!(
        ran <= deltas.len() + OUTPUT_QUEUE_STEPS + 2,
        "{ran} tokens sampled for {} emitted",
        deltas.len()
    );
    assert_eq!(load(&m.requests_ok), 1);
    s.eng.shutdown();
}

#[test]
fn cancel_while_the_output_thread_is_in_the_request_ends_it_without_done() {
    let s = setup();
    let h = s.eng.handle();
    let prompt = s.tok.encode_raw("Count:").expect("encode");
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    let sink = GatedSink { tx, gate: gate.clone() };
    let r = h.submit(prompt.clone(), params(200, &[]), Box::new(sink)).expect("submit");
    let m = h.metrics();
    // The output thread is inside this request (its first delta's send) when it is cancelled:
    // the engine has filled the output queue behind it.
    let full = OUTPUT_QUEUE_STEPS as u64 + 2;
    wait_for("the engine to fill the output queue", || load(&m.steps) == full);
    r.cancel();
    open_gate(&gate);
    wait_for("the abort", || load(&m.requests_aborted) == 1 && load(&m.kv_blocks_free) == 64);
    let events: Vec<Event> = rx.try_iter().collect();
    assert!(!events.iter().any(|e| matches!(e, Event::Done(_))), "a cancelled request got Done");
    assert!(events.len() < 200, "the request ran to the end");
    assert_eq!(load(&m.requests_ok), 0);
    // The engine goes on with the next request.
    let (tx, rx) = mpsc::channel();
    h.submit(prompt, params(5, &[]), Box::new(tx)).expect("submit");
    assert_eq!(collect(&rx).1.completion_tokens, 5);
    s.eng.shutdown();
}

#[test]
fn a_slow_sink_holds_the_engine_only_past_the_bounded_queue() {
    let s = setup();
    let h = s.eng.handle();
    let prompt = s.tok.encode_raw("Count:").expect("encode");
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (tx, rx) = mpsc::channel();
    h.submit(prompt, params(40, &[]), Box::new(GatedSink { tx, gate: gate.clone() })).expect("submit");
    let m = h.metrics();
    // The output thread blocks in the first delta's send (step 1); the engine keeps stepping
    // until the queue is full (steps 2..=1 + OUTPUT_QUEUE_STEPS) and one more step waits to go.
    let bound = OUTPUT_QUEUE_STEPS as u64 + 2;
    wait_for("the engine to run ahead of the output thread", || load(&m.steps) == bound);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(load(&m.steps), bound, "the engine ran past the bounded output queue");
    assert!(rx.try_recv().is_err(), "the gate is closed: nothing was delivered yet");
    open_gate(&gate);
    let (deltas, usage) = collect(&rx);
    assert_eq!((deltas.len(), usage.completion_tokens), (40, 40));
    s.eng.shutdown();
}
