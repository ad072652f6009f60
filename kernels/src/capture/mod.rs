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
//!
//! Files: `gate.rs` (the gate), `memory.rs` (buffers and the capture, peak tracking), this file
//! (`Gpu::capture`, [`Graph`]).

mod gate;
mod memory;

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUgraphInstantiate_flags, CUstreamCaptureMode};

use gate::current_thread_id;
pub(crate) use gate::Gate;

use crate::{Arena, Gpu, GpuError};

impl Gpu {
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
        if g.owner.load(SeqCst) == current_thread_id() {
            return Err(GpuError::Capture("nested capture".into()));
        }
        let _one = g.one.lock().unwrap_or_else(|p| p.into_inner());
        g.owner.store(current_thread_id(), SeqCst);
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
