//! The `trtllm` binary's global allocator (`Counting`): the system allocator plus a count of
//! heap allocations, which `trtllm bench` reports per decode step, and transparent huge pages
//! for large blocks.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// The `trtllm` binary's allocator: the system allocator, plus
/// - a count of heap allocations (one relaxed atomic add per call), which `trtllm bench` reports
///   per decode step;
/// - transparent huge pages for large blocks (Linux): every allocation of at least 1 MiB (weight
///   tensors, the KV cache, long-prompt activations) gets `madvise(MADV_HUGEPAGE)` before it is
///   first touched, so its pages fault in as 2 MiB pages where the mapping covers them.
///   THP is `madvise`-only on the project's machines, and streaming the weights through 4 KiB
///   pages costs ~15% of decode speed (TLB misses; the prefetchers stop at every 4 KiB page):
///   SmolLM2-135M f32 51.5 -> 58.8 tok/s on the 2-core box (docs/perf-notes.md).
///   `TRTLLM_NO_HUGEPAGES=1` turns it off. (The library's loader could do the same for all
///   users of `Llm`; here it covers the CLI.)
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

/// Blocks at least this large are advised to use huge pages.
const HUGE_MIN: usize = 1 << 20;

#[cfg(target_os = "linux")]
fn advise_huge(p: *mut u8, size: usize) {
    use std::sync::atomic::AtomicU8;
    extern "C" {
        fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
    }
    const MADV_HUGEPAGE: i32 = 14;
    const PAGE: usize = 4096;
    // 0 = not read yet, 1 = on, 2 = off. Reading the variable allocates a small block, which
    // does not come back here.
    static STATE: AtomicU8 = AtomicU8::new(0);
    let mut st = STATE.load(Ordering::Relaxed);
    if st == 0 {
        st = if trtllm::env::knobs().hugepages { 1 } else { 2 };
        STATE.store(st, Ordering::Relaxed);
    }
    if st != 1 || p.is_null() {
        return;
    }
    // The whole block, from its first page (as glibc's `glibc.malloc.hugetlb=1` does): the
    // kernel backs each 2 MiB-aligned range that the (possibly merged) mapping covers with a
    // huge page.
    let start = p as usize / PAGE * PAGE;
    let len = (p as usize + size - start).div_ceil(PAGE) * PAGE;
    // SAFETY: the range covers the block just returned by the system allocator (and the rest of
    // its first and last pages, which that allocator owns too); the advice changes only how
    // pages are backed, never their contents or validity.
    unsafe { madvise(start as *mut std::ffi::c_void, len, MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_: *mut u8, _: usize) {}

// SAFETY: forwards every call to `System` unchanged; the counters and the paging advice have
// no effect on the memory's contents or lifetime.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(l) };
        if l.size() >= HUGE_MIN {
            advise_huge(p, l.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(l) };
        if l.size() >= HUGE_MIN {
            advise_huge(p, l.size());
        }
        p
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        let q = unsafe { System.realloc(p, l, new) };
        if new >= HUGE_MIN {
            advise_huge(q, new);
        }
        q
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap allocations so far in this process: (count, bytes requested).
pub fn counts() -> (u64, u64) {
    (ALLOCS.load(Ordering::Relaxed), ALLOC_BYTES.load(Ordering::Relaxed))
}
