//! trtllm-kernels: the CUDA backend's device side. CUDA C sources (`cuda/*.cu`, one op family per
//! file with a kernels and a launchers section) compiled by NVRTC for the device's SM and cached
//! on disk; device buffers; and a Rust launcher per kernel that checks its preconditions.
//!
//! Everything loads the CUDA libraries dynamically: the crate builds, and the CPU engine runs,
//! on machines without CUDA. [`Gpu::available`] says whether a GPU can be used.

mod arena;
mod buffer;
mod capture;
pub mod flash;
mod gpu;
pub mod launch;
mod module;
pub mod nccl;
mod options;
mod pinned;
pub mod quant_ref;
pub mod sample_ref;
mod staging;

pub use arena::Arena;
pub use buffer::DevBuf;
pub use capture::Graph;
pub use gpu::{nvrtc_available, Gpu, GpuError};
pub use module::{prebuilt_name, set_prebuilt_dir, Kernel, KERNELS};
pub use options::{options, set_options, KernelOptions};
pub use pinned::Pinned;
pub use staging::{UploadStats, Uploader};

/// Element types the kernels are instantiated for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt {
    F32,
    BF16,
}

impl Dt {
    pub fn size(self) -> usize {
        match self {
            Dt::F32 => 4,
            Dt::BF16 => 2,
        }
    }
    pub fn suffix(self) -> &'static str {
        match self {
            Dt::F32 => "f32",
            Dt::BF16 => "bf16",
        }
    }
}
