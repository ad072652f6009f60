//! FP8 GEMM for prefill through cuBLASLt: E4M3 inputs, f32 compute, bf16 (or f32) output.
//! Row-major `out[m, n] = a[m, k] . b[n, k]^T` is column-major `out^T[n, m] = op(B)[n, k] .
//! a^T[k, m]` with cuBLASLt's A = our `b` (transposed) and B = our `a`: the TN layout, the only
//! one FP8 supports on Hopper. Per-tensor scales go in as device pointers
//! (`CUBLASLT_MATMUL_DESC_{A,B}_SCALE_POINTER`); per-token x per-channel scaling runs the GEMM
//! unit-scaled into f32 and applies both vectors in `fp8_scale_rowcol` (an outer-vector scale
//! mode exists only in newer cuBLASLt than the bindings this crate is built with).

use std::ffi::c_void;

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys;
use cudarc::cublaslt::MatmulShared;
use cudarc::driver::{CudaSlice, DevicePtr};

use super::quant::fp8_scale_rowcol;
use super::DevPtr;
use crate::{Dt, Gpu, GpuError};

/// cuBLASLt's recommended workspace on Hopper.
const WORKSPACE: usize = 32 << 20;

fn err(what: &str, e: impl std::fmt::Debug) -> GpuError {
    GpuError::Launch { kernel: format!("cublasLt FP8 ({what})"), msg: format!("{e:?}") }
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

fn workspace(gpu: &Gpu) -> Result<&CudaSlice<u8>, GpuError> {
    if let Some(ws) = gpu.lt_workspace.get() {
        return Ok(ws);
    }
    if gpu.capturing_here() {
        return Err(GpuError::Capture(
            "the first FP8 GEMM (it allocates its workspace) inside a capture".into(),
        ));
    }
    // SAFETY: workspace memory needs no initialization.
    let ws = unsafe { gpu.stream.alloc::<u8>(WORKSPACE) }.map_err(GpuError::driver)?;
    Ok(gpu.lt_workspace.get_or_init(|| ws))
}

fn set_desc<T>(
    desc: sys::cublasLtMatmulDesc_t,
    attr: sys::cublasLtMatmulDescAttributes_t,
    v: &T,
) -> Result<(), GpuError> {
    // SAFETY: `desc` is live; `v` points at a value of the attribute's type and size, which
    // cuBLASLt copies before returning.
    unsafe {
        lt::set_matmul_desc_attribute(desc, attr, v as *const T as *const c_void, std::mem::size_of::<T>())
    }
    .map_err(|e| err("set attribute", e))
}

/// `out[m, n] = a_scale * b_scale * (a[m, k] . b[n, k]^T)` with E4M3 `a`, `b`, f32 compute,
/// `out_dt` output (bf16 or f32); a missing scale is 1. Needs k % 16 == 0, n % 16 == 0 and
/// 16-byte aligned pointers (cuBLASLt's FP8 requirements).
#[allow(clippy::too_many_arguments)]
fn fp8_lt(
    gpu: &Gpu,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
    out_dt: Dt,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    const K: &str = "matmul_fp8";
    let aligned = [a, b, out].iter().all(|p| p.addr().is_multiple_of(16));
    if m == 0 || !k.is_multiple_of(16) || !n.is_multiple_of(16) || !aligned {
        return Err(GpuError::Precondition {
            kernel: K,
            msg: format!(
                "m={m} n={n} k={k} (need m > 0, k % 16 == 0, n % 16 == 0, 16-byte aligned a, b, out)"
            ),
        });
    }
    a.check(K, "a", m * k)?;
    b.check(K, "b", n * k)?;
    out.check(K, "out", m * n * out_dt.size())?;
    for s in [a_scale, b_scale].into_iter().flatten() {
        s.check(K, "scale", 4)?;
    }
    let _gate = gpu.enter();
    let ws = workspace(gpu)?;
    let (ws_ptr, _sync) = ws.device_ptr(&gpu.stream);
    let d_type = match out_dt {
        Dt::BF16 => sys::cudaDataType::CUDA_R_16BF,
        Dt::F32 => sys::cudaDataType::CUDA_R_32F,
    };
    let f8 = sys::cudaDataType::CUDA_R_8F_E4M3;
    let mut d = Descs { desc: std::ptr::null_mut(), layouts: Vec::new(), pref: std::ptr::null_mut() };
    d.desc =
        lt::create_matmul_desc(sys::cublasComputeType_t::CUBLAS_COMPUTE_32F, sys::cudaDataType::CUDA_R_32F)
            .map_err(|e| err("matmul desc", e))?;
    use sys::cublasLtMatmulDescAttributes_t as Attr;
    set_desc(d.desc, Attr::CUBLASLT_MATMUL_DESC_TRANSA, &1i32)?; // CUBLAS_OP_T
    set_desc(d.desc, Attr::CUBLASLT_MATMUL_DESC_TRANSB, &0i32)?; // CUBLAS_OP_N
                                                                 // cuBLASLt's A is our b (the weights), its B our a.
    if let Some(s) = b_scale {
        set_desc(d.desc, Attr::CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &(s.addr() as *const c_void))?;
    }
    if let Some(s) = a_scale {
        set_desc(d.desc, Attr::CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &(s.addr() as *const c_void))?;
    }
    // column-major: A = b^T stored [k, n] (ld k), B = a^T stored [k, m] (ld k), C = D [n, m] (ld n)
    for (t, rows, cols, ld) in [(f8, k, n, k), (f8, k, m, k), (d_type, n, m, n)] {
        let l =
            lt::create_matrix_layout(t, rows as u64, cols as u64, ld as i64).map_err(|e| err("layout", e))?;
        d.layouts.push(l);
    }
    let (la, lb, lc) = (d.layouts[0], d.layouts[1], d.layouts[2]);
    d.pref = lt::create_matmul_pref().map_err(|e| err("preference", e))?;
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
    .map_err(|e| err("preference", e))?;
    let handle = *gpu.blaslt.handle();
    // SAFETY: every descriptor is live and describes exactly the extents checked above.
    let heur = unsafe { lt::get_matmul_algo_heuristic(handle, d.desc, la, lb, lc, lc, d.pref) }
        .map_err(|e| err("no algorithm (heuristic)", e))?;
    let (alpha, beta) = (1f32, 0f32);
    // SAFETY: the pointers are device addresses of live buffers of this GPU covering the checked
    // extents (C = D, beta = 0), the scale pointers one f32 each; the workspace is this GPU's
    // own, used only by FP8 GEMMs, all of which run on `gpu.stream`, in order.
    unsafe {
        lt::matmul(
            handle,
            d.desc,
            &alpha as *const f32 as *const c_void,
            &beta as *const f32 as *const c_void,
            b.addr() as *const c_void,
            la,
            a.addr() as *const c_void,
            lb,
            out.addr() as *const c_void,
            lc,
            out.addr() as *mut c_void,
            lc,
            &heur.algo,
            ws_ptr as *mut c_void,
            WORKSPACE,
            gpu.stream.cu_stream() as *mut _,
        )
    }
    .map_err(|e| err("cublasLtMatmul", e))
}

/// Prefill FP8 GEMM with per-tensor scales: `out[m, n] = bf16(a_scale[0] * b_scale[0] *
/// (a[m, k] . b[n, k]^T))`, `a` (activations) and `b` (weights) E4M3 row-major, the scales f32
/// device values, f32 accumulation. k % 16 == 0, n % 16 == 0, 16-byte aligned a, b, out.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8(
    gpu: &Gpu,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: DevPtr<'_>,
    b_scale: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    fp8_lt(gpu, a, b, Some(a_scale), Some(b_scale), out, Dt::BF16, m, n, k)
}

/// As `matmul_fp8` with an f32 `out[m, n]`; a `None` scale is 1.
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8_f32out(
    gpu: &Gpu,
    a: DevPtr<'_>,
    b: DevPtr<'_>,
    a_scale: Option<DevPtr<'_>>,
    b_scale: Option<DevPtr<'_>>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    fp8_lt(gpu, a, b, a_scale, b_scale, out, Dt::F32, m, n, k)
}

/// Whether bf16 `x[m, k]` quantized per token (`fp8_quantize_rows`) and `w[n, k]` E4M3 meet the
/// FP8 GEMM's requirements: k % 16 == 0, n % 16 == 0, both 16-byte aligned.
pub fn fp8_rowwise_ok(x: DevPtr<'_>, w: DevPtr<'_>, n: usize, k: usize) -> bool {
    k.is_multiple_of(16) && n.is_multiple_of(16) && x.addr().is_multiple_of(16) && w.addr().is_multiple_of(16)
}

/// Per-token x per-channel FP8 GEMM: `out[m, n] = bf16((acc[r, c] * a_rows[r]) * b_cols[c])`
/// with `acc = a[m, k] . b[n, k]^T` (unit-scaled cuBLASLt GEMM into the f32 scratch `acc`, then
/// `fp8_scale_rowcol`); `a_rows` f32 `[m]` (e.g. from `fp8_quantize_rows`), `b_cols` f32 `[n]`
/// (per output channel weight scales).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fp8_rowwise(
    gpu: &Gpu,
    a: DevPtr<'_>,
    a_rows: DevPtr<'_>,
    b: DevPtr<'_>,
    b_cols: DevPtr<'_>,
    acc: DevPtr<'_>,
    out: DevPtr<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<(), GpuError> {
    fp8_lt(gpu, a, b, None, None, acc, Dt::F32, m, n, k)?;
    fp8_scale_rowcol(gpu, acc, a_rows, b_cols, out, m, n)
}
