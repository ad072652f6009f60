//! DeepSeek-V3: DeepSeek-V2's block (`deepseek_v2.rs`) with sigmoid routing plus a learned
//! correction bias for the choice only (`gate.e_score_correction_bias`), groups ranked by the sum
//! of their two best experts, renormalized weights (`norm_topk_prob`) times
//! `routed_scaling_factor`, and RoPE pairs interleaved unless `rope_interleave: false`.

use trtllm_core::config::{ModelConfig, MoeScoring};
use trtllm_core::model::DecoderModelForCausalLM;
use trtllm_core::Result;
use trtllm_macros::register_model;

use crate::deepseek_v2::{deepseek, DeepseekDecoderLayer};

fn deepseek_v3(cfg: &mut ModelConfig) -> Result<()> {
    deepseek(cfg, cfg.flag("rope_interleave", true)?)?;
    let moe = &mut cfg.arch.moe;
    (moe.scoring, moe.score_correction, moe.group_top2) = (MoeScoring::Sigmoid, true, true);
    Ok(())
}

#[register_model("DeepseekV3ForCausalLM", config = deepseek_v3)]
pub struct DeepseekV3(DecoderModelForCausalLM<DeepseekDecoderLayer>);
