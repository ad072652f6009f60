//! CPU kernels behind the ops: a persistent thread pool (`pool`), SIMD helpers with runtime
//! feature detection (`simd`), the matmul kernels (`gemm`) and attention over the paged KV cache
//! (`attn`). The op files keep their public signatures and their CUDA sections; their CPU
//! sections call into here.
//!
//! ISA tiers, picked once per process from CPUID (`is_x86_feature_detected!`):
//! - `Avx512`: avx512f + avx512bw + avx512vl (+ fma, f16c). 16-lane kernels, masked tails.
//! - `Avx2`: avx2 + fma + f16c. 8-lane kernels.
//! - `Scalar`: portable Rust (any architecture).
//!
//! AMX is never used (CPUID advertises it on the project's VMs, but the instructions fault).
//! `TRTLLM_CPU_ISA=scalar|avx2|avx512` lowers the tier (for tests and comparisons; asking for
//! more than the CPU has is ignored).

pub mod attn;
pub mod gemm;
pub mod pool;
pub mod prof;
pub mod qgemm;
pub mod simd;

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512",
        }
    }
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Isa::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
        {
            return Isa::Avx2;
        }
    }
    Isa::Scalar
}

/// The kernel tier this process uses.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let hw = detect();
        let asked = match crate::env::knobs().cpu_isa.as_deref() {
            Some("scalar") => Isa::Scalar,
            Some("avx2") => Isa::Avx2,
            Some("avx512") => Isa::Avx512,
            _ => hw,
        };
        asked.min(hw)
    })
}
