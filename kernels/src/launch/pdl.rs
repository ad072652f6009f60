//! Programmatic dependent launch (Hopper): the decode chain's kernels are launched with the
//! programmatic-stream-serialization attribute, so each is scheduled while the previous kernel
//! finishes and waits for it on the device (`pdl_start()` in `kernels/cuda/common.cuh`).

use cudarc::driver::LaunchConfig;

use super::Arg;
use crate::{Gpu, GpuError};

/// Kernels that start with `pdl_start()` (common.cuh) and may therefore be launched with
/// programmatic dependent launch: they are scheduled while the previous kernel finishes and wait
/// for it on the device instead of in the launch queue. The decode step's chain.
const PDL_KERNELS: [&str; 10] = [
    "gemv_",
    "rms_norm_",
    "add_rms_norm_",
    "layer_norm_",
    "qkv_prepare_",
    "paged_attention_",
    "attn_combine_",
    "gather_rows_",
    "argmax_",
    // sample_f32 / _bf16, sample_slots_init, sample_count_tokens (sampling_batched.cu)
    "sample_",
];

/// PDL on: Hopper or newer, and not turned off in [`crate::KernelOptions::pdl`].
pub(super) fn enabled(gpu: &Gpu, name: &str) -> bool {
    gpu.sm >= 90 && crate::options().pdl && PDL_KERNELS.iter().any(|p| name.starts_with(p))
}

/// `cuLaunchKernelEx` with the programmatic-stream-serialization attribute.
pub(super) fn launch(
    gpu: &Gpu,
    f: &cudarc::driver::CudaFunction,
    name: &str,
    cfg: LaunchConfig,
    args: &[Arg],
) -> Result<(), GpuError> {
    use cudarc::driver::sys;
    use std::ffi::c_void;
    let mut params: Vec<*mut c_void> = args
        .iter()
        .map(|a| match a {
            Arg::Ptr(v) => v as *const u64 as *mut c_void,
            Arg::I32(v) => v as *const i32 as *mut c_void,
            Arg::I64(v) => v as *const i64 as *mut c_void,
            Arg::F32(v) => v as *const f32 as *mut c_void,
        })
        .collect();
    let mut attr = sys::CUlaunchAttribute {
        id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
        pad: [0; 4],
        value: sys::CUlaunchAttributeValue { programmaticStreamSerializationAllowed: 1 },
    };
    let config = sys::CUlaunchConfig {
        gridDimX: cfg.grid_dim.0,
        gridDimY: cfg.grid_dim.1,
        gridDimZ: cfg.grid_dim.2,
        blockDimX: cfg.block_dim.0,
        blockDimY: cfg.block_dim.1,
        blockDimZ: cfg.block_dim.2,
        sharedMemBytes: cfg.shared_mem_bytes,
        hStream: gpu.stream.cu_stream(),
        attrs: &mut attr,
        numAttrs: 1,
    };
    gpu.ctx.bind_to_thread().map_err(GpuError::driver)?;
    // SAFETY: `params` holds one pointer per kernel parameter, in order, each to a value of the
    // parameter's type (checked by the launchers, as for `launch` below) that lives in `args`
    // until this call returns (the driver copies them at launch); `config` and `attr` outlive the
    // call; `f` is a function of this GPU's context, which is bound to the thread.
    let r =
        unsafe { sys::cuLaunchKernelEx(&config, f.cu_function(), params.as_mut_ptr(), std::ptr::null_mut()) };
    r.result().map_err(|e| GpuError::Launch { kernel: name.into(), msg: format!("{e:?}") })
}
