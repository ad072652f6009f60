//! `Gpu`: one device's context, stream, BLAS handles and loaded kernel modules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::cublas::CudaBlas;
use cudarc::cublaslt::CudaBlasLT;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions, Ptx};

use crate::module::{cache_dir, cache_path, prebuilt, Kernel};

#[derive(Debug)]
pub enum GpuError {
    /// No CUDA driver library or no device.
    Unavailable(String),
    Driver(String),
    Compile {
        kernel: &'static str,
        log: String,
    },
    Launch {
        kernel: String,
        msg: String,
    },
    Precondition {
        kernel: &'static str,
        msg: String,
    },
    /// CUDA-graph capture failed, or something not capturable ran inside it.
    Capture(String),
}

impl GpuError {
    pub(crate) fn driver(e: impl std::fmt::Debug) -> Self {
        GpuError::Driver(format!("{e:?}"))
    }
}

impl std::fmt::Display for GpuError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuError::Unavailable(m) => write!(f, "no usable GPU: {m}"),
            GpuError::Driver(m) => write!(f, "CUDA driver error: {m}"),
            GpuError::Compile { kernel, log } => write!(f, "NVRTC failed to compile {kernel}.cu:\n{log}"),
            GpuError::Launch { kernel, msg } => write!(f, "launching {kernel}: {msg}"),
            GpuError::Precondition { kernel, msg } => write!(f, "{kernel}: {msg}"),
            GpuError::Capture(m) => write!(f, "CUDA graph: {m}"),
        }
    }
}

impl std::error::Error for GpuError {}

pub struct Gpu {
    pub ordinal: usize,
    pub ctx: Arc<CudaContext>,
    /// The one stream everything of this device runs on: our own (the legacy NULL stream cannot
    /// be captured into a CUDA graph). Enqueue on it only inside `enter` (see `capture/`).
    pub stream: Arc<CudaStream>,
    pub blas: CudaBlas,
    pub blaslt: CudaBlasLT,
    /// cuBLAS's fixed workspace (declared after `blas`, so the handle goes first): no
    /// allocation inside a captured GEMM.
    _blas_workspace: CudaSlice<u8>,
    /// The raw cuBLASLt GEMMs' workspace (`launch/lt.rs`), allocated at the first call.
    pub(crate) lt_workspace: std::sync::OnceLock<CudaSlice<u8>>,
    /// The cuBLASLt algorithm per GEMM shape (`launch/lt.rs`).
    pub lt_algos: crate::launch::AlgoCache,
    pub(crate) gate: crate::capture::Gate,
    /// Compute capability as `major * 10 + minor` (90 on H100).
    pub sm: u32,
    /// Streaming multiprocessors (132 on an H100 / H200 SXM).
    pub num_sms: u32,
    pub name: String,
    modules: Mutex<HashMap<Kernel, Arc<CudaModule>>>,
    functions: Mutex<HashMap<String, CudaFunction>>,
    /// Modules loaded so far and the time it took (PTX from the prebuilt dir, the disk cache or
    /// NVRTC, plus `cuModuleLoadData`): kernels load lazily, at their first launch.
    module_loads: std::sync::atomic::AtomicU64,
    module_ns: std::sync::atomic::AtomicU64,
}

fn driver_library_present() -> bool {
    ["libcuda.so.1", "libcuda.so"].iter().any(|n| {
        // SAFETY: loading the CUDA driver runs its initializers, which is what using CUDA
        // requires anyway; the handle is dropped immediately.
        unsafe { libloading::Library::new(n) }.is_ok()
    })
}

/// True when NVRTC can be loaded (cudarc panics instead of returning an error when it cannot).
pub fn nvrtc_available() -> bool {
    ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"].iter().any(|n| {
        // SAFETY: loading NVRTC runs only its initializers; the handle is dropped immediately.
        unsafe { libloading::Library::new(n) }.is_ok()
    })
}

/// NVRTC's (major, minor) version, part of the kernel cache key.
fn nvrtc_version() -> (i32, i32) {
    let (mut major, mut minor) = (0, 0);
    // A missing library panics in the loader, caught here.
    let ok = std::panic::catch_unwind(move || {
        // SAFETY: nvrtcVersion writes two ints through valid pointers.
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
        (major, minor)
    });
    ok.unwrap_or((0, 0))
}

/// Make the device's default memory pool keep freed memory instead of returning it to the OS at
/// every synchronization (release threshold 0 by default), so the per-op stream-ordered
/// allocations of a decode step are served from the pool.
fn keep_freed_memory(ctx: &Arc<CudaContext>) {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold: u64 = u64::MAX;
    // SAFETY: plain driver calls on a live context's device with valid out/in pointers; failure
    // (an old driver without pools) only loses the optimization.
    unsafe {
        let _ = ctx.bind_to_thread();
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
            && !pool.is_null()
        {
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            );
        }
    }
}

impl Gpu {
    /// True when a CUDA driver and at least one device are present.
    pub fn available() -> bool {
        Self::device_count() > 0
    }

    pub fn device_count() -> usize {
        if !driver_library_present() {
            return 0;
        }
        std::panic::catch_unwind(|| CudaContext::device_count().unwrap_or(0) as usize).unwrap_or(0)
    }

    /// Open device `ordinal`.
    pub fn new(ordinal: usize) -> Result<Arc<Self>, GpuError> {
        if !driver_library_present() {
            return Err(GpuError::Unavailable(
                "the CUDA driver library (libcuda.so.1) is not installed".into(),
            ));
        }
        let n = Self::device_count();
        if ordinal >= n {
            return Err(GpuError::Unavailable(format!("asked for cuda:{ordinal}, {n} device(s) present")));
        }
        let ctx = std::panic::catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| GpuError::Unavailable("CUDA initialization panicked".into()))?
            .map_err(GpuError::driver)?;
        keep_freed_memory(&ctx);
        // SAFETY: every buffer, kernel, copy and BLAS call of this context goes to the one stream
        // below, so cudarc's per-buffer events (which it records on every use once a second
        // stream exists) order nothing; turned off before any buffer exists.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(GpuError::driver)?;
        let blas = CudaBlas::new(stream.clone()).map_err(GpuError::driver)?;
        let blaslt = CudaBlasLT::new(stream.clone()).map_err(GpuError::driver)?;
        let ws_bytes = 32 << 20; // cuBLAS's recommendation for Hopper
                                 // SAFETY: workspace memory needs no initialization.
        let ws = unsafe { stream.alloc::<u8>(ws_bytes) }.map_err(GpuError::driver)?;
        {
            let (ptr, _sync) = ws.device_ptr(&stream);
            // SAFETY: the handle is live and bound to `stream`; the workspace lives as long as
            // the handle (a later field of the same struct).
            let st = unsafe {
                cudarc::cublas::sys::cublasSetWorkspace_v2(
                    *blas.handle(),
                    ptr as *mut std::ffi::c_void,
                    ws_bytes,
                )
            };
            if st != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(GpuError::Driver(format!("cublasSetWorkspace: {st:?}")));
            }
        }
        let (major, minor) = ctx.compute_capability().map_err(GpuError::driver)?;
        let name = ctx.name().unwrap_or_else(|_| "unknown GPU".into());
        let num_sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_or(1, |n| n.max(1) as u32);
        Ok(Arc::new(Gpu {
            ordinal,
            ctx,
            stream,
            blas,
            blaslt,
            _blas_workspace: ws,
            lt_workspace: Default::default(),
            lt_algos: Default::default(),
            gate: Default::default(),
            sm: (major * 10 + minor) as u32,
            num_sms,
            name,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
            module_loads: Default::default(),
            module_ns: Default::default(),
        }))
    }

    /// PTX of `kernel` for this device: from the disk cache, or compiled by NVRTC and stored.
    pub fn ptx(&self, kernel: Kernel) -> Result<String, GpuError> {
        if let Some(ptx) = prebuilt(kernel, self.sm) {
            return Ok(ptx);
        }
        Self::ptx_for_sm(kernel, self.sm)
    }

    /// PTX of `kernel` for an SM (used by `trtllm build --target-sm` too).
    pub fn ptx_for_sm(kernel: Kernel, sm: u32) -> Result<String, GpuError> {
        if !nvrtc_available() {
            return Err(GpuError::Compile {
                kernel: kernel.name(),
                log: "NVRTC (libnvrtc.so) is not installed or not on LD_LIBRARY_PATH".into(),
            });
        }
        let version = nvrtc_version();
        let dir = cache_dir();
        let path = cache_path(&dir, kernel, sm, version);
        if let Ok(ptx) = std::fs::read_to_string(&path) {
            return Ok(ptx);
        }
        let opts = CompileOptions {
            options: vec![format!("--gpu-architecture=compute_{sm}"), "--std=c++17".into()],
            name: Some(format!("{}.cu", kernel.name())),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(kernel.source(), opts)
            .map_err(|e| GpuError::Compile { kernel: kernel.name(), log: format!("{e:?}") })?
            .to_src();
        // Best effort: a read-only cache dir only costs a recompile next time.
        if std::fs::create_dir_all(&dir).is_ok() {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            if std::fs::write(&tmp, &ptx).is_ok() {
                let _ = std::fs::rename(&tmp, &path);
            }
        }
        Ok(ptx)
    }

    /// The entry point `name` of `kernel` (module loaded on first use).
    pub fn function(&self, kernel: Kernel, name: &str) -> Result<CudaFunction, GpuError> {
        let mut fns = self.functions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fns.get(name) {
            return Ok(f.clone());
        }
        let module = {
            let mut mods = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            match mods.get(&kernel) {
                Some(m) => m.clone(),
                None => {
                    let t = std::time::Instant::now();
                    let m =
                        self.ctx.load_module(Ptx::from_src(self.ptx(kernel)?)).map_err(GpuError::driver)?;
                    mods.insert(kernel, m.clone());
                    use std::sync::atomic::Ordering::Relaxed;
                    self.module_ns.fetch_add(t.elapsed().as_nanos() as u64, Relaxed);
                    self.module_loads.fetch_add(1, Relaxed);
                    m
                }
            }
        };
        let f = module
            .load_function(name)
            .map_err(|e| GpuError::Launch { kernel: name.into(), msg: format!("{e:?}") })?;
        fns.insert(name.to_string(), f.clone());
        Ok(f)
    }

    /// Kernel modules loaded so far and the seconds spent loading them (NVRTC included).
    pub fn module_load_stats(&self) -> (u64, f64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.module_loads.load(Relaxed), self.module_ns.load(Relaxed) as f64 * 1e-9)
    }

    pub fn synchronize(&self) -> Result<(), GpuError> {
        let _a = self.enter();
        self.no_host_sync("synchronize")?;
        self.stream.synchronize().map_err(GpuError::driver)
    }

    /// Free and total device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize), GpuError> {
        cudarc::driver::result::mem_get_info().map_err(GpuError::driver)
    }
}
