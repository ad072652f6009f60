//! The gate of one `Gpu`'s stream: every enqueue enters it, and while a thread captures, the
//! other threads wait in it instead of landing in the capturing thread's graph.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};

use cudarc::driver::CudaSlice;

use crate::{Arena, Gpu, GpuError};

/// A process-unique id of the calling thread (0 is never used).
pub(super) fn current_thread_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ID: u64 = NEXT.fetch_add(1, SeqCst));
    ID.with(|id| *id)
}

/// Capture bookkeeping of one `Gpu`.
#[derive(Default)]
pub(crate) struct Gate {
    pub(super) capturing: AtomicBool,
    /// Thread doing the capture (0: none).
    pub(super) owner: AtomicU64,
    /// Id of the current (or last) capture; buffers remember the one they were allocated in.
    pub(super) epoch: AtomicU64,
    /// Enqueues in flight from threads other than the capturing one.
    pub(super) active: AtomicUsize,
    /// Buffers allocated in the current capture and not yet freed.
    pub(super) live: AtomicI64,
    /// Enqueues so far (all threads): lets a caller see whether a forward touched this GPU.
    enqueues: AtomicU64,
    pub(super) failure: Mutex<Option<String>>,
    pub(super) deferred: Mutex<Vec<CudaSlice<u8>>>,
    /// Where the current capture's buffers come from (else graph allocation nodes).
    pub(super) arena: Mutex<Option<Arc<Arena>>>,
    /// Peak tracking (`Gpu::peak_alloc`): the thread, live and peak bytes it allocated.
    pub(super) tracker: AtomicU64,
    pub(super) tracked_live: AtomicI64,
    pub(super) tracked_peak: AtomicI64,
    /// One capture at a time.
    pub(super) one: Mutex<()>,
    pub(super) done: Mutex<()>,
    pub(super) cv: Condvar,
}

/// An enqueue in flight (dropped when it has been issued).
pub(crate) struct Active<'a>(Option<&'a Gate>);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            g.active.fetch_sub(1, SeqCst);
        }
    }
}

impl Gate {
    /// True while the calling thread captures.
    pub(super) fn owned_here(&self) -> bool {
        self.capturing.load(SeqCst) && self.owner.load(SeqCst) == current_thread_id()
    }
}

impl Gpu {
    /// Enter the gate before enqueuing work: waits while another thread captures this stream.
    pub(crate) fn enter(&self) -> Active<'_> {
        let g = &self.gate;
        g.enqueues.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        loop {
            g.active.fetch_add(1, SeqCst);
            if !g.capturing.load(SeqCst) {
                return Active(Some(g));
            }
            g.active.fetch_sub(1, SeqCst);
            if g.owner.load(SeqCst) == current_thread_id() {
                return Active(None);
            }
            let mut lock = g.done.lock().unwrap_or_else(|p| p.into_inner());
            while g.capturing.load(SeqCst) {
                lock = g.cv.wait(lock).unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// Fails when the calling thread is capturing: `what` would bake host data into the graph
    /// or synchronize inside it.
    pub(crate) fn no_host_sync(&self, what: &str) -> Result<(), GpuError> {
        if self.gate.owned_here() {
            return Err(GpuError::Capture(format!("{what} during CUDA-graph capture")));
        }
        Ok(())
    }

    /// True while the calling thread captures this GPU's stream.
    pub fn capturing_here(&self) -> bool {
        self.gate.owned_here()
    }

    /// Work enqueued on this GPU so far, by any thread (a cheap counter).
    pub fn enqueue_count(&self) -> u64 {
        self.gate.enqueues.load(std::sync::atomic::Ordering::Relaxed)
    }
}
