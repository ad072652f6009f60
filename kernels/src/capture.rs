//! CUDA-graph capture of one `Gpu`'s stream, and what makes it safe in a process whose other
//! threads may use the same GPU (every `Gpu` of an ordinal shares one stream).
//!
//! - **The gate.** Everything that enqueues work on the stream (launchers, cuBLAS, copies,
//!   allocations and frees of `DevBuf`s, graph launches) runs inside [`Gpu::enter`]. While a
//!   thread captures, other threads wait there instead of landing in its graph; the capture starts
//!   only once their in-flight enqueues are done.
//! - **Host transfers** (upload, download, synchronize) by the capturing thread are errors: a
//!   graph cannot depend on host data that changes (the capture then fails and the caller runs
//!   eagerly).
//! - **Memory.** Buffers allocated during the capture become graph allocation nodes and must be
//!   freed inside it (`live` counts them); a buffer allocated before the capture and dropped
//!   inside it is not freed by the graph (that would free it again at every replay): its free is
//!   deferred to the end of the capture, which then fails.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};

use cudarc::driver::sys::{self, CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{result, CudaEvent, CudaSlice};

use crate::{Arena, DevBuf, Gpu, GpuError};

/// A process-unique id of the calling thread (0 is never used).
fn me() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static ID: u64 = NEXT.fetch_add(1, SeqCst));
    ID.with(|id| *id)
}

/// Capture bookkeeping of one `Gpu`.
#[derive(Default)]
pub(crate) struct Gate {
    capturing: AtomicBool,
    /// Thread doing the capture (0: none).
    owner: AtomicU64,
    /// Id of the current (or last) capture; buffers remember the one they were allocated in.
    epoch: AtomicU64,
    /// Enqueues in flight from threads other than the capturing one.
    active: AtomicUsize,
    /// Buffers allocated in the current capture and not yet freed.
    live: AtomicI64,
    /// Enqueues so far (all threads): lets a caller see whether a forward touched this GPU.
    enqueues: AtomicU64,
    failure: Mutex<Option<String>>,
    deferred: Mutex<Vec<CudaSlice<u8>>>,
    /// Where the current capture's buffers come from (else graph allocation nodes).
    arena: Mutex<Option<Arc<Arena>>>,
    /// Peak tracking (`Gpu::peak_alloc`): the thread, live and peak bytes it allocated.
    tracker: AtomicU64,
    tracked_live: AtomicI64,
    tracked_peak: AtomicI64,
    /// One capture at a time.
    one: Mutex<()>,
    done: Mutex<()>,
    cv: Condvar,
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
    fn owned_here(&self) -> bool {
        self.capturing.load(SeqCst) && self.owner.load(SeqCst) == me()
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
            if g.owner.load(SeqCst) == me() {
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
        if g.tracker.load(SeqCst) != me() {
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
        g.tracker.store(me(), SeqCst);
        let out = f();
        g.tracker.store(0, SeqCst);
        (out, g.tracked_peak.load(SeqCst).max(0) as usize)
    }

    /// Free a buffer's memory (from `DevBuf::drop`), per the rules in the module docs.
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

    /// Capture everything this thread enqueues on the stream while `f` runs (nothing executes)
    /// and instantiate it. The buffers `f` allocates come from `arena` while it has room (the
    /// graph then holds them as plain pointers), else become graph allocation nodes; all must be
    /// dropped before `f` returns. On any failure the stream is back to normal, nothing ran.
    pub fn capture(
        self: &Arc<Self>,
        arena: Option<Arc<Arena>>,
        f: impl FnOnce() -> Result<(), String>,
    ) -> Result<Graph, GpuError> {
        let g = &self.gate;
        if g.owner.load(SeqCst) == me() {
            return Err(GpuError::Capture("nested capture".into()));
        }
        let _one = g.one.lock().unwrap_or_else(|p| p.into_inner());
        g.owner.store(me(), SeqCst);
        g.epoch.fetch_add(1, SeqCst);
        g.live.store(0, SeqCst);
        *g.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *g.arena.lock().unwrap_or_else(|p| p.into_inner()) = arena.clone();
        g.capturing.store(true, SeqCst);
        // Let other threads finish what they are issuing; new ones wait in `enter`.
        while g.active.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        let stream = self.stream.cu_stream();
        let began = self.ctx.bind_to_thread().map_err(GpuError::driver).and_then(|()| {
            // SAFETY: this GPU's live stream; its context is bound to this thread just above.
            unsafe {
                result::stream::begin_capture(
                    stream,
                    CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
                )
            }
            .map_err(GpuError::driver)
        });
        let ran = match &began {
            Ok(()) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                .unwrap_or_else(|_| Err("the captured step panicked".into())),
            Err(e) => Err(e.to_string()),
        };
        // Raw driver calls (cudarc's would first report errors recorded by drops inside the
        // capture, and leave the stream capturing).
        let graph = match began {
            // SAFETY: ends the capture begun above on this thread (the context is still bound).
            Ok(()) => match unsafe { result::stream::end_capture(stream) } {
                Ok(raw) if raw.is_null() => Err(GpuError::Capture("the captured step was empty".into())),
                // SAFETY: `raw` is the graph just captured; `Graph` owns it from here.
                Ok(raw) => unsafe { Graph::instantiate(raw, self) },
                Err(e) => Err(GpuError::driver(e)),
            },
            Err(e) => Err(e),
        };
        // Errors recorded by drops inside a broken capture must not fail later calls.
        let recorded = self.ctx.check_err();
        let deferred = std::mem::take(&mut *g.deferred.lock().unwrap_or_else(|p| p.into_inner()));
        drop(deferred); // ordinary frees now: the stream is no longer capturing
        let live = g.live.load(SeqCst);
        let failure = g.failure.lock().unwrap_or_else(|p| p.into_inner()).take();
        *g.arena.lock().unwrap_or_else(|p| p.into_inner()) = None;
        g.capturing.store(false, SeqCst);
        g.owner.store(0, SeqCst);
        {
            let _l = g.done.lock().unwrap_or_else(|p| p.into_inner());
            g.cv.notify_all();
        }
        ran.map_err(GpuError::Capture)?;
        let graph = graph?;
        if let Some(f) = failure {
            return Err(GpuError::Capture(f));
        }
        if live != 0 {
            return Err(GpuError::Capture(format!("{live} buffer(s) allocated in the capture outlived it")));
        }
        let held = arena.as_ref().map_or(0, |a| a.in_use());
        if held != 0 {
            return Err(GpuError::Capture(format!("{held} arena bytes are still held after the capture")));
        }
        recorded.map_err(GpuError::driver)?;
        {
            let _a = self.enter();
            // SAFETY: a live executable graph of this context, uploaded to its stream.
            unsafe { result::graph::upload(graph.exec, stream) }.map_err(GpuError::driver)?;
        }
        let mut graph = graph;
        graph._arena = arena;
        Ok(graph)
    }
}

/// An instantiated CUDA graph of one GPU's stream.
pub struct Graph {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
    gpu: Arc<Gpu>,
    /// The memory the graph's buffers live in.
    _arena: Option<Arc<Arena>>,
}

// SAFETY: the graph and its executable are driver handles usable from any thread; the wrapper
// hands them out only through `&mut self`, so calls on one graph never run concurrently.
unsafe impl Send for Graph {}

impl Graph {
    /// Instantiate `graph` (destroyed on failure).
    ///
    /// # Safety
    /// `graph` is a valid graph of `gpu`'s context, owned by nobody else.
    unsafe fn instantiate(graph: sys::CUgraph, gpu: &Arc<Gpu>) -> Result<Graph, GpuError> {
        // SAFETY: `graph` is valid and unowned (the caller's contract).
        match unsafe { result::graph::instantiate(graph, CUgraphInstantiate_flags(0)) } {
            Ok(exec) => Ok(Graph { graph, exec, gpu: gpu.clone(), _arena: None }),
            Err(e) => {
                // SAFETY: as above; destroyed once, nothing refers to it any more.
                let _ = unsafe { result::graph::destroy(graph) };
                Err(GpuError::Capture(format!("instantiating the graph: {e:?}")))
            }
        }
    }

    /// Replay the graph on the stream (asynchronous).
    pub fn launch(&mut self) -> Result<(), GpuError> {
        let _a = self.gpu.enter();
        self.gpu.no_host_sync("launching a graph")?;
        self.gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        // SAFETY: a live executable graph of this context, launched on its stream.
        unsafe { result::graph::launch(self.exec, self.gpu.stream.cu_stream()) }.map_err(GpuError::driver)
    }
}

impl Drop for Graph {
    fn drop(&mut self) {
        let _ = self.gpu.ctx.bind_to_thread();
        // SAFETY: both handles are owned by this wrapper and destroyed once; an executable still
        // running is freed by the driver when it completes.
        unsafe {
            let _ = result::graph::exec_destroy(self.exec);
            let _ = result::graph::destroy(self.graph);
        }
    }
}

/// Page-locked host memory for uploads that stay asynchronous.
pub struct Pinned {
    gpu: Arc<Gpu>,
    ptr: *mut u8,
    len: usize,
    /// Recorded after the last copy out of the buffer.
    event: CudaEvent,
}

// SAFETY: `ptr` is a private host allocation used only through `&mut self`.
unsafe impl Send for Pinned {}

impl Pinned {
    pub fn new(gpu: &Arc<Gpu>, len: usize) -> Result<Self, GpuError> {
        gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        let event =
            gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING)).map_err(GpuError::driver)?;
        // SAFETY: a fresh page-locked allocation of `len` bytes (freed in Drop); the context is
        // bound to this thread.
        let ptr = unsafe { result::malloc_host(len.max(1), 0) }.map_err(GpuError::driver)? as *mut u8;
        Ok(Pinned { gpu: gpu.clone(), ptr, len, event })
    }

    /// The host bytes, once the last copy out of them has finished.
    pub fn host_mut(&mut self) -> Result<&mut [u8], GpuError> {
        self.event.synchronize().map_err(GpuError::driver)?;
        // SAFETY: `ptr` holds `len` bytes for the life of `self`; no copy reads them any more
        // (the event above), and `&mut self` makes this the only reference.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) })
    }

    /// Copy the first `len` bytes into `dst` at `dst_off`, asynchronously on the stream.
    pub fn copy_to(&mut self, dst: &DevBuf, dst_off: usize, len: usize) -> Result<(), GpuError> {
        if len > self.len || dst_off + len > dst.len() {
            return Err(GpuError::Precondition {
                kernel: "pinned copy",
                msg: format!("{len} bytes at {dst_off} into {} (staging {})", dst.len(), self.len),
            });
        }
        let _a = self.gpu.enter();
        self.gpu.no_host_sync("a host-to-device copy")?;
        self.gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
        // SAFETY: `ptr` holds at least `len` bytes, page-locked, and is not written again before
        // `event` (recorded right after the copy) completes; `dst` has room (checked above) and
        // lives on this stream.
        unsafe {
            let src = std::slice::from_raw_parts(self.ptr, len);
            result::memcpy_htod_async(dst.ptr(dst_off), src, self.gpu.stream.cu_stream())
        }
        .map_err(GpuError::driver)?;
        self.event.record(&self.gpu.stream).map_err(GpuError::driver)
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = self.event.synchronize();
        let _ = self.gpu.ctx.bind_to_thread();
        // SAFETY: allocated by `malloc_host` in `new`, freed once, after its last copy finished.
        let _ = unsafe { result::free_host(self.ptr as *mut std::ffi::c_void) };
    }
}
