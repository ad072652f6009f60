//! Every fuzz target runs its seeds and a few hundred mutations without a crash (the longer,
//! time-bounded run is `cargo run -p trtllm-fuzz -- --secs N`, in CI).

use std::time::Duration;

use trtllm_fuzz::{corpus_dir, run, targets};

#[test]
fn every_target_survives_its_seeds_and_some_mutations() {
    for t in targets::ALL {
        let seeds = (t.seeds)(&corpus_dir().join(t.name));
        assert!(!seeds.is_empty(), "{}: no seeds", t.name);
        let r = run(t, &corpus_dir(), Duration::from_secs(20), seeds.len() as u64 + 300, 1);
        assert!(
            r.crashes.is_empty(),
            "{}: {:?}",
            t.name,
            r.crashes.first().map(|c| (&c.why, String::from_utf8_lossy(&c.input)))
        );
        assert!(r.execs >= seeds.len() as u64, "{}: ran {} of {} seeds", t.name, r.execs, seeds.len());
        assert!(
            r.outcomes >= 2,
            "{}: every input gave the same outcome; the target does not discriminate",
            t.name
        );
    }
}
