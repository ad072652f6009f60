//! Bounded mutation fuzzing of trtllm's input parsers, on stable Rust and in CI.
//!
//! Each target ([`targets`]) takes bytes and must answer with `Ok` or a clean `Err`, never a
//! panic, and never an answer that breaks its invariant (a target returns `Err(Violation)` for
//! that). Inputs come from a seed corpus (`fuzz/corpus/<target>/`, small text and JSON files,
//! plus seeds built in code for the binary formats) through [`Mutator`]: byte edits, integer
//! overwrites with boundary values, splices between seeds and, for JSON inputs, edits of one
//! node of the parsed tree (a boundary number, another type, a deleted or duplicated key, deep
//! nesting). Inputs that reach a new outcome (a new error message shape) join the pool, so the
//! runs walk past the first check. Deterministic for a given seed.
//!
//! `cargo run -p trtllm-fuzz -- --secs 20` runs every target for 20 s (CI); a crashing input
//! is written to `target/fuzz-crashes/` and the run fails. Each crash found becomes a
//! regression test (`fuzz/tests/regressions.rs`).

pub mod mutate;
pub mod seeds;
pub mod targets;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use mutate::{Mutator, Rng};

/// What one execution found.
#[derive(Debug)]
pub enum Outcome {
    /// Parsed (or refused with this message shape: digits blanked, so values do not count).
    Fine(String),
    /// A broken invariant (a NaN from a config that parsed, a 500 for a bad request...).
    Violation(String),
}

/// A fuzz target.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&targets::Scratch, &[u8]) -> Outcome,
    /// The seeds: the corpus folder's files plus those built in code.
    pub seeds: fn(&Path) -> Vec<Vec<u8>>,
    /// Inputs are JSON text (tree mutations apply).
    pub json: bool,
}

/// A failing input and why.
#[derive(Debug)]
pub struct Crash {
    pub target: &'static str,
    pub why: String,
    pub input: Vec<u8>,
}

/// What a bounded run did.
#[derive(Debug, Default)]
pub struct Report {
    pub execs: u64,
    pub pool: usize,
    pub outcomes: usize,
    pub slowest: Duration,
    pub crashes: Vec<Crash>,
}

/// One execution, panics caught.
pub fn execute(t: &Target, scratch: &targets::Scratch, input: &[u8]) -> Result<String, String> {
    match catch_unwind(AssertUnwindSafe(|| (t.run)(scratch, input))) {
        Ok(Outcome::Fine(shape)) => Ok(shape),
        Ok(Outcome::Violation(why)) => Err(why),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(format!("panic: {msg}"))
        }
    }
}

/// Run `t` for `budget` (time) or `max_execs`, whichever ends first; stops at the first crash.
pub fn run(t: &Target, corpus: &Path, budget: Duration, max_execs: u64, seed: u64) -> Report {
    let scratch = targets::Scratch::new();
    let mut pool = (t.seeds)(&corpus.join(t.name));
    let mut report = Report::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut rng = Rng::new(seed ^ fnv(t.name.as_bytes()));
    let mutator = Mutator::new(&pool, t.json);
    let start = Instant::now();
    // Every seed once, as is.
    let mut queue: Vec<Vec<u8>> = pool.clone();
    while report.execs < max_execs && start.elapsed() < budget {
        let input = match queue.pop() {
            Some(i) => i,
            None => mutator.mutate(&mut rng, &pool),
        };
        let t0 = Instant::now();
        let r = execute(t, &scratch, &input);
        report.slowest = report.slowest.max(t0.elapsed());
        report.execs += 1;
        match r {
            Ok(shape) => {
                if seen.insert(shape) && pool.len() < 4096 {
                    pool.push(input);
                }
            }
            Err(why) => {
                report.crashes.push(Crash { target: t.name, why, input });
                break;
            }
        }
    }
    report.pool = pool.len();
    report.outcomes = seen.len();
    report
}

/// An error message with its numbers blanked: outcomes that differ only in values are one.
pub fn shape(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(200));
    let mut last_digit = false;
    for c in msg.chars().take(200) {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            out.push(c);
            last_digit = false;
        }
    }
    out
}

/// Write a crash input to `dir/<target>-<hash>.bin`; returns the path.
pub fn save_crash(dir: &Path, c: &Crash) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let p = dir.join(format!("{}-{:016x}.bin", c.target, fnv(&c.input)));
    std::fs::write(&p, &c.input)?;
    Ok(p)
}

/// FNV-1a.
pub fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

/// The repository's `fuzz/corpus` folder.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// The repository root (seeds also come from `tests/fixtures`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
