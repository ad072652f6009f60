//! Per-op wall-clock timers for the CPU ops, on when `TRTLLM_PROFILE=1` (otherwise one relaxed
//! load per op). `trtllm bench` prints [`report`] after its timed runs.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

fn enabled() -> bool {
    crate::env::knobs().profile
}

/// (calls, total ns) per op label.
fn table() -> &'static Mutex<BTreeMap<String, (u64, u64)>> {
    static T: OnceLock<Mutex<BTreeMap<String, (u64, u64)>>> = OnceLock::new();
    T.get_or_init(Default::default)
}

/// Times until dropped.
pub struct Scope<F: FnOnce() -> String> {
    start: Option<(Instant, F)>,
}

impl<F: FnOnce() -> String> Drop for Scope<F> {
    fn drop(&mut self) {
        if let Some((t0, label)) = self.start.take() {
            let ns = t0.elapsed().as_nanos() as u64;
            if let Ok(mut t) = table().lock() {
                let e = t.entry(label()).or_insert((0, 0));
                e.0 += 1;
                e.1 += ns;
            }
        }
    }
}

/// A timer for the op named by `label` (built only when profiling is on).
pub fn scope<F: FnOnce() -> String>(label: F) -> Scope<F> {
    Scope { start: enabled().then(|| (Instant::now(), label)) }
}

/// Whether the timers are on.
pub fn is_enabled() -> bool {
    enabled()
}

/// Clear all timers.
pub fn reset() {
    if let Ok(mut t) = table().lock() {
        t.clear();
    }
}

/// (label, calls, total seconds), largest total first.
pub fn report() -> Vec<(String, u64, f64)> {
    let mut v: Vec<(String, u64, f64)> = match table().lock() {
        Ok(t) => t.iter().map(|(k, (c, ns))| (k.clone(), *c, *ns as f64 * 1e-9)).collect(),
        Err(_) => vec![],
    };
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}
