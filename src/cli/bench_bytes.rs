//! `trtllm bench`: the weight bytes one decode step reads (the bandwidth figure's numerator).

use std::path::Path;

use trtllm::llm::Llm;
use trtllm::model::{lookup, plan_weights};
use trtllm::weights::{GgufBlocks, GgufWeights};
use trtllm::{DType, Device, Mapping};

/// The bytes one decode step of `llm` (loaded from `dir` on `device` in `dtype`) reads: a GGUF
/// on the CPU its tensors' blocks (the file's tensor bytes, unless `dequantize`); a GGUF on the
/// GPU its kept Q8_0 / Q4_K linears' blocks and everything else in `dtype`; otherwise
/// [`decode_weight_bytes`].
pub(super) fn weight_bytes(
    llm: &Llm,
    dir: &Path,
    device: Device,
    dtype: DType,
    packed: bool,
    tp: usize,
    dequantize: bool,
) -> anyhow::Result<u64> {
    let Some(f) = trtllm::gguf::gguf_of_dir(dir)? else {
        return decode_weight_bytes(llm, dtype, packed, None);
    };
    if device == Device::Cpu && !dequantize && tp == 1 {
        return Ok(trtllm::gguf::GgufFile::open(&f)?.tensors.iter().filter_map(|t| t.n_bytes).sum::<u64>());
    }
    let keep = if dequantize { Some(false) } else { None };
    match GgufBlocks::choose(device, tp, dtype, keep) {
        GgufBlocks::Packed => {
            decode_weight_bytes(llm, dtype, packed, Some(&GgufWeights::open(&f, GgufBlocks::Packed)?))
        }
        _ => decode_weight_bytes(llm, dtype, packed, None),
    }
}

/// Weight bytes one decode step reads: every engine tensor, except that the input embedding
/// table counts only when it doubles as the (tied) LM head, and position tables not at all.
/// (For MoE models this counts every expert, an upper bound.) Quantized linears the engine keeps
/// quantized (`packed`) count their stored bytes: E4M3 codes + f32 scales, INT4 nibbles + f16
/// scales and u8 zero points per group.
/// `ggml`: a GGUF loaded on the GPU with its blocks kept (`GgufBlocks::Packed`): the linears it
/// keeps count their block bytes.
pub(super) fn decode_weight_bytes(
    llm: &Llm,
    dtype: DType,
    packed: bool,
    ggml: Option<&GgufWeights>,
) -> anyhow::Result<u64> {
    let cfg = llm.model().config();
    let entry = lookup(&cfg.architecture)?;
    let specs = plan_weights(entry, cfg, Mapping::default(), dtype)?;
    let embed = format!(
        "{}{}.weight",
        if entry.layout.prefix.is_empty() { String::new() } else { format!("{}.", entry.layout.prefix) },
        entry.layout.embed_tokens
    );
    let pos = entry.layout.position_embeddings.map(|p| {
        format!(
            "{}{p}.weight",
            if entry.layout.prefix.is_empty() { String::new() } else { format!("{}.", entry.layout.prefix) }
        )
    });
    let head = format!("{}.weight", entry.layout.lm_head);
    let gpu_block = |t| trtllm::ops::ggml_gpu_block(t).is_some();
    let mut bytes = 0u64;
    for s in &specs {
        if Some(&s.name) == pos.as_ref() || (s.name == embed && !cfg.tie_word_embeddings) {
            continue;
        }
        let n = s.shape.iter().product::<usize>();
        let kept = match ggml {
            Some(g) if s.name != embed && s.name != head => g.block_type(s, gpu_block)?,
            _ => None,
        };
        if let Some((per, bb)) = kept.and_then(|t| t.block()) {
            bytes += (n / per * bb) as u64;
            continue;
        }
        bytes += match (s.quant, packed) {
            (Some(trtllm::config::WeightQuant::Fp8(_)), true) => n + 4 * s.shape[0],
            (
                Some(
                    trtllm::config::WeightQuant::Awq { group }
                    | trtllm::config::WeightQuant::Gptq { group, .. },
                ),
                true,
            ) => n / 2 + 3 * n / group.max(1),
            _ => n * s.dtype.size_in_bytes(),
        } as u64;
    }
    Ok(bytes)
}
