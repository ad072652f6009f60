//! A persistent CPU thread pool for the ops: `nthreads - 1` workers plus the calling thread,
//! one synchronization per op. Rayon's fork-join costs several microseconds per op and wakes
//! sleeping workers through the OS; at SmolLM2-135M's size a decode step is ~300 ops of
//! 5-50 us each, so that overhead is a large share of the step. Here the workers spin on an
//! epoch counter while ops keep coming (a few hundred microseconds), then park.
//!
//! `run(f)` calls `f(tid, n)` once on each of the `n` threads (the caller is `tid` 0) and
//! returns when all have finished; the op partitions its work by `(tid, n)` (see [`split`]).
//! Only one `run` uses the workers at a time: a concurrent caller (another test thread, a
//! tensor-parallel rank, a nested call from inside a job) runs `f(0, 1)` on its own thread.
//!
//! Threads: `TRTLLM_NUM_THREADS`, else `std::thread::available_parallelism()`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_micros(500);

type JobFn<'a> = dyn Fn(usize, usize) + Sync + 'a;

struct Job<'a> {
    f: &'a JobFn<'a>,
    n: usize,
}

struct Slot {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

struct Pool {
    nthreads: usize,
    /// Serializes users of the workers.
    lock: Mutex<()>,
    epoch: AtomicUsize,
    /// The current job (valid while `pending > 0`).
    job: AtomicPtr<Job<'static>>,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    panicked: AtomicBool,
    slots: Vec<Slot>,
}

thread_local! {
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = std::env::var("TRTLLM_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .min(256);
        let p: &'static Pool = Box::leak(Box::new(Pool {
            nthreads: n,
            lock: Mutex::new(()),
            epoch: AtomicUsize::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            slots: (1..n).map(|_| Slot { sleeping: AtomicBool::new(false), thread: OnceLock::new() }).collect(),
        }));
        for id in 1..n {
            let spawned = std::thread::Builder::new().name(format!("trtllm-cpu-{id}")).spawn(move || worker(p, id));
            match spawned {
                Ok(h) => {
                    let _ = p.slots[id - 1].thread.set(h.thread().clone());
                }
                Err(_) => {
                    // No thread: run single-threaded from here on.
                    // (Workers already started stay idle: nthreads is only read under `lock`.)
                    return Box::leak(Box::new(Pool {
                        nthreads: 1,
                        lock: Mutex::new(()),
                        epoch: AtomicUsize::new(0),
                        job: AtomicPtr::new(std::ptr::null_mut()),
                        pending: AtomicUsize::new(0),
                        panicked: AtomicBool::new(false),
                        slots: vec![],
                    }));
                }
            }
        }
        p
    })
}

fn worker(p: &'static Pool, id: usize) {
    IN_POOL.with(|c| c.set(true));
    let slot = &p.slots[id - 1];
    let mut seen = 0usize;
    loop {
        // Wait for a new epoch: spin, then park.
        let mut since: Option<Instant> = None;
        let mut spins = 0u32;
        loop {
            let e = p.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 != 0 {
                std::hint::spin_loop();
                continue;
            }
            let t0 = *since.get_or_insert_with(Instant::now);
            if t0.elapsed() < SPIN {
                continue;
            }
            // Dekker-style handshake with `run`: announce, re-check, park.
            slot.sleeping.store(true, Ordering::SeqCst);
            if p.epoch.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            slot.sleeping.store(false, Ordering::SeqCst);
            since = None;
        }
        let job = p.job.load(Ordering::Acquire);
        // SAFETY: `run` stores a pointer to a `Job` on its stack before bumping the epoch and
        // does not return (so the job and the closure it borrows stay alive) until `pending`
        // reaches zero, which happens only after this worker's decrement below.
        let job = unsafe { &*job };
        if id < job.n {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.f)(id, job.n)));
            if r.is_err() {
                p.panicked.store(true, Ordering::Relaxed);
            }
        }
        p.pending.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Threads a `run` may use (1 when there are no workers).
pub fn num_threads() -> usize {
    pool().nthreads
}

/// `f(tid, n)` on each of `n` threads (`n` = the pool size, or 1 when the workers are busy
/// with another caller). Returns when every call has returned; a panic in any is re-raised.
pub fn run(f: &(dyn Fn(usize, usize) + Sync)) {
    run_max(usize::MAX, f)
}

/// As [`run`], with at most `max` threads (small ops: less synchronization than work).
pub fn run_max(max: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    let p = pool();
    if max <= 1 || p.nthreads <= 1 || IN_POOL.with(|c| c.get()) {
        f(0, 1);
        return;
    }
    let guard = match p.lock.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => {
            f(0, 1);
            return;
        }
    };
    let n = max.min(p.nthreads);
    let job = Job { f, n };
    // Lifetime erased for the workers; see the SAFETY note in `worker`.
    p.job.store((&job as *const Job<'_>).cast_mut().cast::<Job<'static>>(), Ordering::Release);
    p.pending.store(p.slots.len(), Ordering::Release);
    p.epoch.fetch_add(1, Ordering::SeqCst);
    for s in &p.slots {
        if s.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = s.thread.get() {
                t.unpark();
            }
        }
    }
    IN_POOL.with(|c| c.set(true));
    let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(0, n)));
    IN_POOL.with(|c| c.set(false));
    while p.pending.load(Ordering::Acquire) != 0 {
        std::hint::spin_loop();
    }
    let theirs = p.panicked.swap(false, Ordering::Relaxed);
    drop(guard);
    if let Err(e) = mine {
        std::panic::resume_unwind(e);
    }
    if theirs {
        panic!("a CPU pool worker panicked");
    }
}

/// Part `tid` of `0..len` split into `n` near-equal contiguous ranges whose boundaries are
/// multiples of `align` (the last range takes the remainder).
pub fn split(len: usize, tid: usize, n: usize, align: usize) -> std::ops::Range<usize> {
    let align = align.max(1);
    let units = len.div_ceil(align);
    let (q, r) = (units / n, units % n);
    let start = tid * q + tid.min(r);
    let end = start + q + usize::from(tid < r);
    (start * align).min(len)..(end * align).min(len)
}

/// A raw pointer that may cross to the pool's threads. Each thread writes a disjoint part of
/// what it points to (the op that builds it guarantees that).
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: used only to hand disjoint output ranges to the pool's threads, which all finish
// before `run` returns (the pointee outlives every use).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn split_covers_everything_once() {
        for len in [0, 1, 5, 64, 65, 1000] {
            for n in 1..5 {
                for align in [1, 4, 8] {
                    let mut next = 0;
                    for t in 0..n {
                        let r = split(len, t, n, align);
                        assert_eq!(r.start, next.min(len));
                        next = r.end;
                    }
                    assert_eq!(next, len);
                }
            }
        }
    }

    #[test]
    fn run_visits_each_thread_and_nests() {
        for _ in 0..1000 {
            let calls = AtomicU64::new(0);
            let seen_n = AtomicU64::new(0);
            run(&|tid, n| {
                assert!(tid < n);
                calls.fetch_add(1, Ordering::Relaxed);
                seen_n.store(n as u64, Ordering::Relaxed);
                // A nested call runs inline.
                run(&|t2, n2| assert_eq!((t2, n2), (0, 1)));
            });
            assert_eq!(calls.load(Ordering::Relaxed), seen_n.load(Ordering::Relaxed));
        }
    }
}
