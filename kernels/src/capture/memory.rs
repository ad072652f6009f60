//! Device memory and the capture: which capture a buffer belongs to, where its memory comes
//! from, how its free is handled (module docs of `capture`), and the peak tracker of
//! [`Gpu::peak_alloc`].

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use cudarc::driver::CudaSlice;

use super::gate::current_thread_id;
use crate::{Arena, Gpu};

impl Gpu {
    /// The capture a buffer allocated now belongs to (0: none), counted as live.
    pub(crate) fn alloc_epoch(&self) -> u64 {
        if !self.gate.owned_here() {
            return 0;
        }
        self.gate.live.fetch_add(1, SeqCst);
        self.gate.epoch.load(SeqCst)
    }

    /// The arena of the capture the calling thread runs, if any.
    pub(crate) fn capture_arena(&self) -> Option<Arc<Arena>> {
        if !self.gate.owned_here() {
            return None;
        }
        self.gate.arena.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Count a fresh allocation in the peak tracker when this thread runs `peak_alloc`: the
    /// bytes to untrack at its free (0: not tracked).
    pub(crate) fn track(&self, bytes: usize) -> usize {
        let g = &self.gate;
        if g.tracker.load(SeqCst) != current_thread_id() {
            return 0;
        }
        let bytes = Arena::round(bytes);
        let live = g.tracked_live.fetch_add(bytes as i64, SeqCst) + bytes as i64;
        g.tracked_peak.fetch_max(live, SeqCst);
        bytes
    }

    pub(crate) fn untrack(&self, bytes: usize) {
        if bytes > 0 {
            self.gate.tracked_live.fetch_sub(bytes as i64, SeqCst);
        }
    }

    /// Run `f` and measure the most device memory its allocations (by this thread, rounded as
    /// an [`Arena`] rounds them) held at once.
    pub fn peak_alloc<T>(&self, f: impl FnOnce() -> T) -> (T, usize) {
        let g = &self.gate;
        g.tracked_live.store(0, SeqCst);
        g.tracked_peak.store(0, SeqCst);
        g.tracker.store(current_thread_id(), SeqCst);
        let out = f();
        g.tracker.store(0, SeqCst);
        (out, g.tracked_peak.load(SeqCst).max(0) as usize)
    }

    /// Free a buffer's memory (from `DevBuf::drop`), per the rules in the `capture` module docs.
    pub(crate) fn release(&self, data: CudaSlice<u8>, epoch: u64) {
        let g = &self.gate;
        let _a = self.enter();
        if g.owned_here() {
            if epoch == g.epoch.load(SeqCst) {
                g.live.fetch_sub(1, SeqCst);
                drop(data); // a free node of this graph
            } else {
                g.failure.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| {
                    "a buffer allocated before the capture was freed inside it".into()
                });
                g.deferred.lock().unwrap_or_else(|p| p.into_inner()).push(data);
            }
        } else if epoch != 0 {
            // Graph memory outliving its capture (which failed for it): not ours to free.
            let _ = data.leak();
        } else {
            drop(data);
        }
    }
}
