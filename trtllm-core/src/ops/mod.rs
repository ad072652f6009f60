//! Functional ops: one op per file, CPU implementations that are the oracle for every other
//! backend. Activations are f32 `[tokens, features]`; weights may be f32, bf16 or f16 (converted
//! on the fly, f32 accumulation).

mod activation;
mod attention;
pub mod cpu;
pub mod cuda;
mod elementwise;
mod embedding;
mod matmul;
mod mla;
mod moe;
mod moe_route;
mod norm;
mod qkv_attention;
mod quant;
mod quant_ggml;
mod quant_int4;
mod rope;
mod softmax;

pub use activation::{activation, clamped_swiglu, gated_activation, matmul_gated};
pub use attention::{paged_attention, paged_attention_sinks, write_kv, AttnParams};
pub use elementwise::{add, add_bias, cast, mul, scale, softcap, zeros_like};
pub use embedding::{embedding, embedding_device_ids, scatter_add_rows, select_rows};
pub use matmul::{linear, matmul_t, matmul_t_f32};
pub use mla::{mla_attention, MlaParams, MlaWeights};
pub use moe::{moe_combine, moe_gemv, moe_route, moe_route_fits, Router, MOE_PAIRS_MAX};
pub use norm::{add_rms_norm, layer_norm, qk_rms_apply, qk_sum_sq, rms_norm};
pub use qkv_attention::{qkv_attention, QkvParams};
pub use quant::{matmul_gated_fp8, matmul_t_fp8};
pub use quant_ggml::{ggml_gpu_block, matmul_t_ggml, GgmlLayout};
pub use quant_int4::{matmul_t_int4, Int4Layout};
pub use rope::{apply_rope, rope_tables};
pub use softmax::{argmax, argmax_rows, log_softmax, softmax_inplace};
