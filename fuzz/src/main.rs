//! `trtllm-fuzz [--secs S] [--iters N] [--seed X] [TARGET...]`: run each fuzz target (all by
//! default) for S seconds or N executions, print executions per target, and fail (exit 1)
//! on the first crashing input of any, which is saved under `target/fuzz-crashes/`.
//! `trtllm-fuzz --repro TARGET FILE` runs one saved input with the panic's location shown.

use std::time::Duration;

use trtllm_fuzz::{corpus_dir, run, save_crash, targets};

fn main() {
    let mut secs = 10.0f64;
    let mut iters = u64::MAX;
    let mut seed = 0x5eed_u64;
    let mut names = vec![];
    let mut args = std::env::args().skip(1);
    let num = |v: Option<String>, flag: &str| -> f64 {
        v.and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            eprintln!("trtllm-fuzz: {flag} needs a number");
            std::process::exit(2)
        })
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--secs" => secs = num(args.next(), "--secs"),
            "--iters" => iters = num(args.next(), "--iters") as u64,
            "--seed" => seed = num(args.next(), "--seed") as u64,
            "--repro" => {
                // `--repro TARGET FILE`: run one input with the default panic hook (location and
                // backtrace of a crash).
                let (t, f) = (args.next().unwrap_or_default(), args.next().unwrap_or_default());
                let target = targets::by_name(&t).unwrap_or_else(|| {
                    eprintln!("trtllm-fuzz: unknown target `{t}`");
                    std::process::exit(2)
                });
                let input = std::fs::read(&f).unwrap_or_else(|e| {
                    eprintln!("trtllm-fuzz: {f}: {e}");
                    std::process::exit(2)
                });
                let r = trtllm_fuzz::execute(target, &targets::Scratch::new(), &input);
                println!("{t} {f}: {r:?}");
                std::process::exit(i32::from(r.is_err()));
            }
            "-h" | "--help" => {
                let all: Vec<_> = targets::ALL.iter().map(|t| t.name).collect();
                println!(
                    "trtllm-fuzz [--secs S] [--iters N] [--seed X] [TARGET...]; targets: {}",
                    all.join(", ")
                );
                return;
            }
            t if targets::by_name(t).is_some() => names.push(t.to_string()),
            other => {
                eprintln!("trtllm-fuzz: unknown argument or target `{other}`");
                std::process::exit(2);
            }
        }
    }
    // A panic is reported with its input (`execute` catches it); the default hook would also
    // print those that trtllm catches on purpose (the tokenizers crate's, in `Tokenizer`).
    std::panic::set_hook(Box::new(|_| {}));
    let chosen: Vec<_> =
        targets::ALL.iter().filter(|t| names.is_empty() || names.iter().any(|n| n == t.name)).collect();
    let crash_dir = trtllm_fuzz::repo_root().join("target").join("fuzz-crashes");
    println!(
        "{:<14} {:>9} {:>9} {:>6} {:>9} {:>11}  result",
        "target", "execs", "execs/s", "pool", "outcomes", "slowest ms"
    );
    let mut failed = false;
    for t in chosen {
        let start = std::time::Instant::now();
        let r = run(t, &corpus_dir(), Duration::from_secs_f64(secs), iters, seed);
        let rate = r.execs as f64 / start.elapsed().as_secs_f64().max(1e-9);
        let result = match r.crashes.first() {
            None => "ok".to_string(),
            Some(c) => {
                failed = true;
                let saved = save_crash(&crash_dir, c)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(not saved: {e})"));
                format!("CRASH: {} (input: {saved})", c.why)
            }
        };
        println!(
            "{:<14} {:>9} {:>9.0} {:>6} {:>9} {:>11.1}  {result}",
            t.name,
            r.execs,
            rate,
            r.pool,
            r.outcomes,
            r.slowest.as_secs_f64() * 1e3
        );
    }
    if failed {
        std::process::exit(1);
    }
}
