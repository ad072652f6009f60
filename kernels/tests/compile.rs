//! Every kernel source compiles under NVRTC for sm_90 (and sm_80). Needs only libnvrtc, not a
//! GPU; skipped with a message when NVRTC is not installed.

fn nvrtc_present() -> bool {
    ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"].iter().any(|n| {
        // SAFETY: loading NVRTC runs no code beyond its initializers; dropped immediately.
        unsafe { libloading::Library::new(n) }.is_ok()
    })
}

#[test]
fn kernels_compile_for_hopper_and_ampere() {
    if !nvrtc_present() {
        eprintln!("SKIPPED: libnvrtc not found (install the CUDA toolkit or set LD_LIBRARY_PATH)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("trtllm-kernel-test-{}", std::process::id()));
    std::env::set_var("TRTLLM_KERNEL_CACHE", &dir);
    for sm in [90, 80] {
        for k in trtllm_kernels::KERNELS {
            let ptx = trtllm_kernels::Gpu::ptx_for_sm(k, sm).unwrap_or_else(|e| panic!("sm_{sm}: {e}"));
            assert!(ptx.contains(".entry"), "{} sm_{sm}: no entry points in PTX", k.name());
            // Entry points the launchers name that a module must define (the FP8-KV builds' `_kv8`
            // twins, the MoE kernels).
            let entries = match k {
                trtllm_kernels::Kernel::AttentionKv8 => {
                    &["qkv_prepare_bf16_kv8", "paged_attention_sinks_bf16_kv8"][..]
                }
                trtllm_kernels::Kernel::AttentionDecodeKv8 => &["paged_attention_gqa_bf16_kv8_hd128_g4"][..],
                trtllm_kernels::Kernel::FlashKv8 => {
                    &["flash_prefill_bf16_kv8_hd64", "flash_prefill_bq128_bf16_kv8_hd128"][..]
                }
                trtllm_kernels::Kernel::Moe => &["moe_route", "moe_bias_bf16", "moe_combine_bf16"][..],
                trtllm_kernels::Kernel::Gemv => &["gemv_moe_bf16", "gemv_moe_f32"][..],
                _ => &[][..],
            };
            for e in entries {
                assert!(ptx.contains(&format!(".entry {e}(")), "{} sm_{sm}: no {e}", k.name());
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
