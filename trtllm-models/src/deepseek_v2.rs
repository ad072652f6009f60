//! DeepSeek-V2 (V3: `deepseek_v3.rs`, the same block): multi-head latent attention (`MlaAttention`: a compressed latent cache of
//! `kv_lora_rank + qk_rope_head_dim` per token, absorbed projections, YaRN with `mscale_all_dim`
//! in the softmax scale, interleaved RoPE reordered at load) and a MoE with shared experts after
//! `first_k_dense_replace` dense layers (`n_routed_experts` is an alias of `num_local_experts`).
//! V2 routes by softmax, group-limited by the best expert of each group (`topk_method`), and
//! scales by `routed_scaling_factor`.

use trtllm_core::config::{MlaDims, ModelConfig};
use trtllm_core::layers::{MlaAttention, MoeNames, MoeOrDense, RmsNorm};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::{decoder_layer, register_model};

#[decoder_layer]
pub struct DeepseekDecoderLayer {
    #[layer(role = input_norm)]
    input_layernorm: RmsNorm,
    #[layer(role = attention)]
    self_attn: MlaAttention,
    #[layer(role = pre_mlp_norm)]
    post_attention_layernorm: RmsNorm,
    #[layer(role = mlp, names = MoeNames { shared: Some("shared_experts"), ..MoeNames::LLAMA })]
    mlp: MoeOrDense,
}

/// What V2 and V3 share: MLA dims, expert counts, the dense first layers, grouping, scaling.
pub fn deepseek(cfg: &mut ModelConfig, interleaved: bool) -> Result<()> {
    cfg.arch.mla = Some(MlaDims::from_config(cfg, interleaved)?);
    let shared = cfg.extra::<usize>("n_shared_experts")?.unwrap_or(0);
    cfg.arch.moe.shared_intermediate = cfg.moe_intermediate_size.filter(|_| shared > 0).map(|i| i * shared);
    cfg.arch.moe.dense_layers = (0..cfg.extra("first_k_dense_replace")?.unwrap_or(0)).collect();
    if cfg.extra::<usize>("moe_layer_freq")?.is_some_and(|f| f != 1) {
        return Err(cfg.config_error("moe_layer_freq", "only 1 is supported"));
    }
    cfg.arch.moe.groups = cfg.extra("n_group")?.zip(cfg.extra("topk_group")?);
    cfg.arch.moe.routed_scaling = cfg.extra("routed_scaling_factor")?;
    Ok(())
}

fn deepseek_v2(cfg: &mut ModelConfig) -> Result<()> {
    deepseek(cfg, true)?;
    cfg.refuse("norm_topk_prob", false, true, "renormalized top-k weights: HF's DeepSeek-V2 does not")?;
    match cfg.extra::<String>("topk_method")?.as_deref().unwrap_or("greedy") {
        "greedy" => cfg.arch.moe.groups = None,
        "group_limited_greedy" => {}
        other => return Err(cfg.config_error("topk_method", format!("{other:?} is not supported"))),
    }
    Ok(())
}

#[register_model("DeepseekV2ForCausalLM", config = deepseek_v2)]
pub struct DeepseekV2(DecoderModelForCausalLM<DeepseekDecoderLayer>);
