//! cuBLASLt matmuls in the TN layout and the algorithm each shape runs with.
//!
//! Row-major `out[m, n] = a[m, k] . b[n, k]^T` is column-major `out^T[n, m] = op(B)[n, k] .
//! a^T[k, m]`: cuBLASLt's A is our `b` (the weights, transposed), its B our `a`. One descriptor
//! set per call (cheap host objects, destroyed on every exit path).
//!
//! Algorithm choice: cuBLASLt's first heuristic is tuned for large problems; for the small m of
//! batched decode (m <= [`TUNE_MAX_M`]) its pick is often not the fastest. With
//! `KernelOptions::gemm_tune` on, the first eager call of a shape times up to [`CANDIDATES`] of
//! the heuristic's candidates on the call's own buffers (CUDA events, [`REPS`] runs each after one
//! warm-up run) and keeps the fastest for every later call of that shape — the CUDA-graph
//! warm-up of each decode bucket is such a first call, so captured graphs replay the tuned
//! algorithm. Shapes are keyed by m rounded up to a bucket (powers of two to 128, then every 32
//! — the decode graph buckets), so the varied m of mixed steps time once per bucket; a call whose
//! m differs from the one timed checks the algorithm for its own m (`cublasLtMatmulAlgoCheck`)
//! and falls back to the first heuristic if it does not apply. Under capture an untuned shape
//! takes the first heuristic (nothing can be timed).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Mutex;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::cublaslt::MatmulShared;
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaSlice, DevicePtr};

use super::DevPtr;
use crate::{Gpu, GpuError};

/// cuBLASLt's recommended workspace on Hopper.
pub(crate) const WORKSPACE: usize = 32 << 20;
/// Largest m whose algorithm is chosen by timing.
pub const TUNE_MAX_M: usize = 512;
/// Heuristic candidates timed per shape.
const CANDIDATES: usize = 12;
/// Timed runs per candidate.
const REPS: usize = 5;

/// One matmul's types and extents; also the key of the algorithm cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LtShape {
    /// Data type of both inputs.
    pub ab: sys::cudaDataType,
    /// Data type of the output.
    pub d: sys::cudaDataType,
    /// Per-tensor scale pointers present (FP8): (scale of `a`, scale of `b`).
    pub scaled: (bool, bool),
    /// The scales are outer vectors (`CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F`): one f32 per
    /// row of `a` (m) and per row of `b` (n) instead of one per tensor.
    pub outer: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// The algorithm chosen per shape, and how it was chosen.
#[derive(Default)]
pub struct AlgoCache {
    map: Mutex<HashMap<LtShape, Chosen>>,
}

#[derive(Clone, Copy)]
struct Chosen {
    algo: sys::cublasLtMatmulAlgo_t,
    /// The m it was chosen (timed) at.
    m: usize,
    /// Mean time of the chosen algorithm and of the first heuristic (us); `None`: not timed.
    timed: Option<(f32, f32)>,
}

// SAFETY: `cublasLtMatmulAlgo_t` is an opaque array of u64 (plain data, no pointers into
// cuBLASLt state): it can move between threads; the map is behind a mutex.
unsafe impl Send for AlgoCache {}
// SAFETY: as above; every access goes through the mutex.
unsafe impl Sync for AlgoCache {}

impl AlgoCache {
    /// Shapes timed so far: `(m, n, k, chosen us, first-heuristic us)`, sorted.
    pub fn tuned(&self) -> Vec<(usize, usize, usize, f32, f32)> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .filter_map(|(s, c)| c.timed.map(|(best, first)| (c.m, s.n, s.k, best, first)))
            .collect();
        v.sort_by_key(|r| (r.1, r.2, r.0));
        v
    }
}

fn err(kernel: &str, what: &str, e: impl std::fmt::Debug) -> GpuError {
    GpuError::Launch { kernel: format!("cublasLt {kernel} ({what})"), msg: format!("{e:?}") }
}

/// The descriptors of one call, destroyed on every exit path.
struct Descs {
    desc: sys::cublasLtMatmulDesc_t,
    layouts: Vec<sys::cublasLtMatrixLayout_t>,
    pref: sys::cublasLtMatmulPreference_t,
}

impl Drop for Descs {
    fn drop(&mut self) {
        // SAFETY: each handle was created by cuBLASLt for this call, is destroyed once, here,
        // and nothing uses it afterwards (the matmul was enqueued; cuBLASLt copies what it needs).
        unsafe {
            if !self.pref.is_null() {
                let _ = lt::destroy_matmul_pref(self.pref);
            }
            for l in &self.layouts {
                let _ = lt::destroy_matrix_layout(*l);
            }
            if !self.desc.is_null() {
                let _ = lt::destroy_matmul_desc(self.desc);
            }
        }
    }
}

/// This GPU's cuBLASLt workspace, allocated at the first call (never under capture).
pub(crate) fn workspace(gpu: &Gpu) -> Result<&CudaSlice<u8>, GpuError> {
    if let Some(ws) = gpu.lt_workspace.get() {
        return Ok(ws);
    }
    if gpu.capturing_here() {
        return Err(GpuError::Capture(
            "the first cuBLASLt GEMM (it allocates its workspace) inside a capture".into(),
        ));
    }
    // SAFETY: workspace memory needs no initialization.
    let ws = unsafe { gpu.stream.alloc::<u8>(WORKSPACE) }.map_err(GpuError::driver)?;
    Ok(gpu.lt_workspace.get_or_init(|| ws))
}

fn set_desc<T>(
    kernel: &str,
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> Result<(), GpuError> {
    // SAFETY: `desc` is live; `v` points at a value of the attribute's type and size, which
    // cuBLASLt copies before returning.
    unsafe {
        lt::set_matmul_desc_attribute(desc, attr, v as *const T as *const c_void, std::mem::size_of::<T>())
    }
    .map_err(|e| err(kernel, "set attribute", e))
}

fn descs(
    kernel: &str,
    s: &LtShape,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
) -> Result<Descs, GpuError> {
    let mut d = Descs { desc: std::ptr::null_mut(), layouts: Vec::new(), pref: std::ptr::null_mut() };
    d.desc =
        lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F)
            .map_err(|e| err(kernel, "matmul desc", e))?;
    use sys::cublasLtMatmulDescAttributes_t as Attr;
    set_desc(kernel, d.desc, Attr::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?; // CUBLAS_OP_T
    set_desc(kernel, d.desc, Attr::CUBLASLT_MATMUL_DESC_TRANSB, &0i32)?; // CUBLAS_OP_N
    if let Some(p) = b_scale {
        set_desc(kernel, d.desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &(p.addr() as *const c_void))?;
    }
    if let Some(p) = a_scale {
        set_desc(kernel, d.desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &(p.addr() as *const c_void))?;
    }
    if s.outer {
        // CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F (3; cuBLASLt 12.9+, absent from the 12.8
        // enum this crate is built against): A's scales along its n rows, B's along its m columns.
        const OUTER_VEC_32F: u32 = 3;
        set_desc(kernel, d.desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &OUTER_VEC_32F)?;
        set_desc(kernel, d.desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &OUTER_VEC_32F)?;
    }
    // column-major: A = b^T stored [k, n] (ld k), B = a^T stored [k, m] (ld k), C = D [n, m] (ld n)
    for (t, rows, cols, ld) in [(s.ab, s.k, s.n, s.k), (s.ab, s.k, s.m, s.k), (s.d, s.n, s.m, s.n)] {
        let l = lt::create_matrix_layout(t, rows as u64, cols as u64, ld as i64)
            .map_err(|e| err(kernel, "layout", e))?;
        d.layouts.push(l);
    }
    d.pref = lt::create_matmul_pref().map_err(|e| err(kernel, "preference", e))?;
    let ws_bytes = WORKSPACE as u64;
    // SAFETY: `pref` is live; the value is the u64 the attribute takes.
    unsafe {
        lt::set_matmul_pref_attribute(
            d.pref,
            sys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
            &ws_bytes as *const u64 as *const c_void,
            8,
        )
    }
    .map_err(|e| err(kernel, "preference", e))?;
    Ok(d)
}

/// Up to `want` algorithms for the described problem, best guess first.
fn heuristics(
    gpu: &Gpu,
    kernel: &str,
    d: &Descs,
    want: usize,
) -> Result<Vec<sys::cublasLtMatmulAlgo_t>, GpuError> {
    let (la, lb, lc) = (d.layouts[0], d.layouts[1], d.layouts[2]);
    let mut res: Vec<sys::cublasLtMatmulHeuristicResult_t> = Vec::with_capacity(want);
    let mut got: std::ffi::c_int = 0;
    // SAFETY: every descriptor is live; `res` has room for `want` results and cuBLASLt writes
    // `got <= want` of them, which is the length set below.
    let st = unsafe {
        sys::cublasLtMatmulAlgoGetHeuristic(
            *gpu.blaslt.handle(),
            d.desc,
            la,
            lb,
            lc,
            lc,
            d.pref,
            want as std::ffi::c_int,
            res.as_mut_ptr(),
            &mut got,
        )
    };
    if st != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS || got <= 0 {
        return Err(err(kernel, "no algorithm (heuristic)", st));
    }
    // SAFETY: cuBLASLt initialized the first `got` entries (checked to be <= want above by the API).
    unsafe { res.set_len((got as usize).min(want)) };
    Ok(res
        .into_iter()
        .filter(|r| r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS)
        .map(|r| r.algo)
        .collect())
}

/// Enqueue `out = a_scale * b_scale * (a . b^T)` with `algo` on the GPU's stream.
fn launch(
    gpu: &Gpu,
    d: &Descs,
    algo: &sys::cublasLtMatmulAlgo_t,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    out: DevPtr<'_>,
) -> sys::cublasStatus_t {
    let (la, lb, lc) = (d.layouts[0], d.layouts[1], d.layouts[2]);
    // `matmul` allocates the workspace before choosing or launching an algorithm.
    let Some(ws) = gpu.lt_workspace.get() else {
        return sys::cublasStatus_t::CUBLAS_STATUS_NOT_INITIALIZED;
    };
    let (ws_ptr, _sync) = ws.device_ptr(&gpu.stream);
    let (alpha, beta) = (1f32, 0f32);
    // SAFETY: the pointers are device addresses of live buffers of this GPU covering the extents
    // the caller checked (C = D, beta = 0), scale pointers one f32 each; the workspace is this
    // GPU's own, used only by cuBLASLt calls, all of which run on `gpu.stream`, in order.
    unsafe {
        sys::cublasLtMatmul(
            *gpu.blaslt.handle(),
            d.desc,
            &alpha as *const f32 as *const c_void,
            b.addr() as *const c_void,
            la,
            a.addr() as *const c_void,
            lb,
            &beta as *const f32 as *const c_void,
            out.addr() as *const c_void,
            lc,
            out.addr() as *mut c_void,
            lc,
            algo,
            ws_ptr as *mut c_void,
            WORKSPACE,
            gpu.stream.cu_stream() as *mut _,
        )
    }
}

/// Mean time of `algo` over [`REPS`] runs after one warm-up run (us); `None` if it fails.
fn time(
    gpu: &Gpu,
    d: &Descs,
    algo: &sys::cublasLtMatmulAlgo_t,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    out: DevPtr<'_>,
) -> Option<f32> {
    let ok = sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS;
    if launch(gpu, d, algo, a, b, out) != ok {
        return None;
    }
    let e0 = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ok()?;
    let e1 = gpu.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)).ok()?;
    e0.record(&gpu.stream).ok()?;
    for _ in 0..REPS {
        if launch(gpu, d, algo, a, b, out) != ok {
            return None;
        }
    }
    e1.record(&gpu.stream).ok()?;
    e1.synchronize().ok()?;
    Some(e0.elapsed_ms(&e1).ok()? * 1000.0 / REPS as f32)
}

/// The cache key of m: itself above [`TUNE_MAX_M`], else the next power of two up to 128, else
/// the next multiple of 32.
fn bucket(m: usize) -> usize {
    match m {
        0..=128 => m.next_power_of_two(),
        129..=TUNE_MAX_M => m.div_ceil(32) * 32,
        _ => m,
    }
}

/// Whether `algo` runs the described problem (its own m) within the workspace: an algorithm
/// timed at one m of a bucket may need more workspace at a larger m (split-K).
fn applies(gpu: &Gpu, d: &Descs, algo: &sys::cublasLtMatmulAlgo_t) -> bool {
    let (la, lb, lc) = (d.layouts[0], d.layouts[1], d.layouts[2]);
    let mut r = std::mem::MaybeUninit::<sys::cublasLtMatmulHeuristicResult_t>::uninit();
    // SAFETY: descriptors live; `r` is written by cuBLASLt before it is read below.
    let st = unsafe {
        sys::cublasLtMatmulAlgoCheck(*gpu.blaslt.handle(), d.desc, la, lb, lc, lc, algo, r.as_mut_ptr())
    };
    if st != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        return false;
    }
    // SAFETY: a successful check wrote the result.
    let r = unsafe { r.assume_init() };
    r.state == sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS && r.workspaceSize <= WORKSPACE
}

/// The algorithm for `s`: cached, else timed (eager calls with m <= TUNE_MAX_M and tuning on),
/// else cuBLASLt's first heuristic (cached too unless capturing, so the query runs once).
#[allow(clippy::too_many_arguments)]
fn choose(
    gpu: &Gpu,
    kernel: &str,
    s: &LtShape,
    d: &Descs,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    out: DevPtr<'_>,
) -> Result<sys::cublasLtMatmulAlgo_t, GpuError> {
    let key = LtShape { m: bucket(s.m), ..*s };
    let cached = gpu.lt_algos.map.lock().unwrap_or_else(|p| p.into_inner()).get(&key).map(|c| (c.algo, c.m));
    if let Some((algo, m)) = cached {
        if m == s.m || applies(gpu, d, &algo) {
            return Ok(algo);
        }
        return heuristics(gpu, kernel, d, 1)?
            .first()
            .copied()
            .ok_or_else(|| err(kernel, "no algorithm (heuristic)", "every candidate failed"));
    }
    let capturing = gpu.capturing_here();
    let tune = !capturing && crate::options::options().gemm_tune && s.m <= TUNE_MAX_M;
    let cands = heuristics(gpu, kernel, d, if tune { CANDIDATES } else { 1 })?;
    let Some(first) = cands.first().copied() else {
        return Err(err(kernel, "no algorithm (heuristic)", "every candidate failed"));
    };
    // Only the bucket's own m is kept untimed: another m of the bucket may time it later.
    let keep = tune || s.m == key.m;
    let mut chosen = Chosen { algo: first, m: s.m, timed: None };
    if tune {
        let times: Vec<(f32, sys::cublasLtMatmulAlgo_t)> =
            cands.iter().filter_map(|al| time(gpu, d, al, a, b, out).map(|t| (t, *al))).collect();
        let first_t = times.first().map(|t| t.0);
        if let (Some(best), Some(first_t)) = (times.iter().min_by(|x, y| x.0.total_cmp(&y.0)), first_t) {
            chosen = Chosen { algo: best.1, m: s.m, timed: Some((best.0, first_t)) };
        }
    }
    if !capturing && keep {
        gpu.lt_algos.map.lock().unwrap_or_else(|p| p.into_inner()).insert(key, chosen);
    }
    Ok(chosen.algo)
}

/// `out[m, n] = a_scale * b_scale * (a[m, k] . b[n, k]^T)`, f32 compute, in the GPU's stream
/// order; a missing scale is 1. The caller checked extents and alignment.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    gpu: &Gpu,
    kernel: &'static str,
    s: LtShape,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
) -> Result<(), GpuError> {
    let _gate = gpu.enter();
    workspace(gpu)?;
    let d = descs(kernel, &s, a_scale, b_scale)?;
    let algo = choose(gpu, kernel, &s, &d, a, b, out)?;
    match launch(gpu, &d, &algo, a, b, out) {
        sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS => Ok(()),
        st => Err(err(kernel, "cublasLtMatmul", st)),
    }
}
