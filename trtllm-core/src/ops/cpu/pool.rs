//! A persistent CPU thread pool for the ops: `nthreads - 1` workers plus the calling thread,
//! one synchronization per op. Rayon's fork-join costs several microseconds per op and wakes
//! sleeping workers through the OS; at SmolLM2-135M's size a decode step is ~300 ops of
//! 5-50 us each, so that overhead is a large share of the step. Here the workers spin on a
//! job word while ops keep coming (a few hundred microseconds), then park.
//!
//! `run_parts(p, f)` calls `f(i, p)` once for each part `i` in `0..p` and returns when all have
//! returned. Parts are claimed dynamically (a CAS on one word) by whichever threads are
//! running, the caller included: when a worker is descheduled (an oversubscribed machine, a
//! test suite running beside us) the caller does its parts instead of waiting a scheduler
//! tick for it. Only one caller uses the workers at a time: a concurrent caller (another test
//! thread, a tensor-parallel rank, a nested call from inside a part) runs its parts itself.
//!
//! Threads: `TRTLLM_NUM_THREADS`, else `std::thread::available_parallelism()`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_micros(500);
/// Most parts of one job (the part index and count share the job word with the epoch).
pub const MAX_PARTS: usize = 0xffff;

type JobFn<'a> = dyn Fn(usize, usize) + Sync + 'a;

struct Job<'a> {
    f: &'a JobFn<'a>,
}

struct Slot {
    sleeping: AtomicBool,
    thread: OnceLock<Thread>,
}

struct Pool {
    nthreads: usize,
    /// Serializes users of the workers.
    lock: Mutex<()>,
    /// `epoch << 32 | next part << 16 | parts`.
    state: AtomicU64,
    /// The current job (valid while some part of it is unfinished).
    job: AtomicPtr<Job<'static>>,
    /// Finished parts of the current job.
    done: AtomicUsize,
    panicked: AtomicBool,
    slots: Vec<Slot>,
}

thread_local! {
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
}

fn new_pool(n: usize) -> Pool {
    Pool {
        nthreads: n,
        lock: Mutex::new(()),
        state: AtomicU64::new(0),
        job: AtomicPtr::new(std::ptr::null_mut()),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
        slots: (1..n).map(|_| Slot { sleeping: AtomicBool::new(false), thread: OnceLock::new() }).collect(),
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<&'static Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let n = crate::env::knobs()
            .num_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(256));
        let p: &'static Pool = Box::leak(Box::new(new_pool(n)));
        for id in 1..n {
            match std::thread::Builder::new().name(format!("trtllm-cpu-{id}")).spawn(move || worker(p, id)) {
                Ok(h) => {
                    let _ = p.slots[id - 1].thread.set(h.thread().clone());
                }
                // No thread: a pool of one (workers already started find no parts).
                Err(_) => return Box::leak(Box::new(new_pool(1))),
            }
        }
        p
    })
}

/// Claim and run parts of the job of `epoch` until none is left (or another job started).
fn work(p: &Pool, epoch: u64) {
    loop {
        let v = p.state.load(Ordering::Acquire);
        let (e, next, parts) = (v >> 32, (v >> 16) & 0xffff, v & 0xffff);
        if e != epoch || next >= parts {
            return;
        }
        if p.state.compare_exchange_weak(v, v + (1 << 16), Ordering::AcqRel, Ordering::Relaxed).is_err() {
            continue;
        }
        // SAFETY: a part of the job of `epoch` was claimed and is not finished, so `run_parts`
        // is still waiting (it returns only when every part is done): the `Job` on its stack
        // and the closure it borrows are alive. The Acquire CAS orders the read after the
        // caller's store of the pointer.
        let job = unsafe { &*p.job.load(Ordering::Acquire) };
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (job.f)(next as usize, parts as usize)));
        if r.is_err() {
            p.panicked.store(true, Ordering::Relaxed);
        }
        p.done.fetch_add(1, Ordering::AcqRel);
    }
}

fn worker(p: &'static Pool, id: usize) {
    IN_POOL.with(|c| c.set(true));
    let slot = &p.slots[id - 1];
    let mut seen = 0u64;
    loop {
        // Wait for a new epoch: spin, then park.
        let mut since: Option<Instant> = None;
        let mut spins = 0u32;
        loop {
            let e = p.state.load(Ordering::Acquire) >> 32;
            if e != seen {
                seen = e;
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(1024) {
                std::hint::spin_loop();
                continue;
            }
            let t0 = *since.get_or_insert_with(Instant::now);
            if t0.elapsed() < SPIN {
                continue;
            }
            // Dekker-style handshake with `run_parts`: announce, re-check, park.
            slot.sleeping.store(true, Ordering::SeqCst);
            if p.state.load(Ordering::SeqCst) >> 32 == seen {
                std::thread::park();
            }
            slot.sleeping.store(false, Ordering::SeqCst);
            since = None;
        }
        work(p, seen);
    }
}

/// Threads that may run parts (1 when there are no workers).
pub fn num_threads() -> usize {
    pool().nthreads
}

/// `f(tid, n)` once on each of `n = num_threads()` parts (see [`run_parts`]).
pub fn run(f: &(dyn Fn(usize, usize) + Sync)) {
    run_parts(num_threads(), f)
}

/// `f(i, parts)` for every `i` in `0..parts` (at most [`MAX_PARTS`]), spread over the pool's
/// threads and the caller. Returns when every call has returned; a panic in any is re-raised.
pub fn run_parts(parts: usize, f: &(dyn Fn(usize, usize) + Sync)) {
    assert!(parts <= MAX_PARTS, "run_parts: {parts} parts");
    let p = pool();
    let serial = |f: &(dyn Fn(usize, usize) + Sync)| (0..parts).for_each(|i| f(i, parts));
    if parts <= 1 || p.nthreads <= 1 || IN_POOL.with(|c| c.get()) {
        return serial(f);
    }
    let guard = match p.lock.try_lock() {
        Ok(g) => g,
        Err(TryLockError::Poisoned(e)) => e.into_inner(),
        Err(TryLockError::WouldBlock) => return serial(f),
    };
    let job = Job { f };
    // Lifetime erased for the workers; see the SAFETY note in `work`.
    p.job.store((&job as *const Job<'_>).cast_mut().cast::<Job<'static>>(), Ordering::Relaxed);
    p.done.store(0, Ordering::Relaxed);
    let epoch = ((p.state.load(Ordering::Relaxed) >> 32) + 1) & 0xffff_ffff;
    p.state.store(epoch << 32 | parts as u64, Ordering::SeqCst);
    for s in &p.slots {
        if s.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = s.thread.get() {
                t.unpark();
            }
        }
    }
    IN_POOL.with(|c| c.set(true));
    work(p, epoch);
    IN_POOL.with(|c| c.set(false));
    let mut spins = 0u32;
    while p.done.load(Ordering::Acquire) < parts {
        // Only parts a worker has claimed and not finished are left: spin (microseconds); if
        // that worker was descheduled, yield so it gets the core back.
        spins = spins.wrapping_add(1);
        if spins < 1 << 14 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    let panicked = p.panicked.swap(false, Ordering::Relaxed);
    drop(guard);
    if panicked {
        panic!("a part of a CPU pool job panicked");
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
            run_parts(7, &|i, n| {
                assert!(i < n);
                calls.fetch_add(1 << (4 * i), Ordering::Relaxed);
                seen_n.store(n as u64, Ordering::Relaxed);
                // A nested call runs inline, all parts.
                let inner = AtomicU64::new(0);
                run_parts(3, &|_, _| {
                    inner.fetch_add(1, Ordering::Relaxed);
                });
                assert_eq!(inner.load(Ordering::Relaxed), 3);
            });
            assert_eq!(calls.load(Ordering::Relaxed), 0x111_1111);
            assert_eq!(seen_n.load(Ordering::Relaxed), 7);
        }
    }
}
