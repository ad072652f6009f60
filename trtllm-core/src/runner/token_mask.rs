//! Structured outputs in the runner: a step's packed allowed-token masks (one per row, `None`:
//! unconstrained) applied to the logits before sampling or argmax. On the GPU one upload of
//! `[rows, words]` u32 and one `token_mask` launch, in place; on the host the same function
//! ([`trtllm_kernels::sample_ref::token_mask`]) on an f32 copy.

use trtllm_kernels::launch::{self, DevPtr};
use trtllm_kernels::sample_ref;

use crate::device::dev_err;
use crate::{DType, Error, Result, Tensor};

fn words_of(masks: &[Option<Vec<u32>>], vocab: usize) -> Result<usize> {
    let words = vocab.div_ceil(32);
    if let Some(m) = masks.iter().flatten().find(|m| m.len() != words) {
        return Err(Error::Msg(format!(
            "structured outputs: a mask of {} words for {vocab} logits",
            m.len()
        )));
    }
    Ok(words)
}

/// `logits [rows, vocab]` on the host as f32, masked.
pub(super) fn apply_host(logits: &Tensor, masks: &[Option<Vec<u32>>]) -> Result<Tensor> {
    let (rows, vocab) = logits.dims2("token_mask")?;
    words_of(masks, vocab)?;
    let mut h = match (logits.dtype(), logits.devbuf()) {
        (DType::F32, None) => logits.f32s()?.to_vec(),
        _ => logits.to_cpu()?.to_dtype(DType::F32)?.to_f32_vec()?,
    };
    for (r, m) in masks.iter().enumerate().take(rows) {
        if let Some(m) = m {
            sample_ref::token_mask(&mut h[r * vocab..(r + 1) * vocab], m);
        }
    }
    Tensor::from_f32(h, &[rows, vocab])
}

/// `logits [rows, vocab]` on the GPU (f32 or bf16), masked in place.
pub(super) fn apply_device(logits: &Tensor, masks: &[Option<Vec<u32>>]) -> Result<()> {
    let (rows, vocab) = logits.dims2("token_mask")?;
    let words = words_of(masks, vocab)?;
    let (buf, off) =
        logits.devbuf().ok_or_else(|| Error::Device("token_mask: logits are not on the GPU".into()))?;
    let dt = match logits.dtype() {
        DType::F32 => trtllm_kernels::Dt::F32,
        DType::BF16 => trtllm_kernels::Dt::BF16,
        d => return Err(Error::DType { op: "token_mask", dtype: d }),
    };
    let mut packed = Vec::with_capacity(rows * words * 4);
    for r in 0..rows {
        match masks.get(r).and_then(|m| m.as_ref()) {
            Some(m) => packed.extend(m.iter().flat_map(|w| w.to_le_bytes())),
            None => packed.extend(std::iter::repeat_n(0xffu8, words * 4)),
        }
    }
    let gpu = buf.gpu().clone();
    let mb = trtllm_kernels::DevBuf::upload(&gpu, &packed).map_err(dev_err)?;
    launch::token_mask(&gpu, DevPtr::new(buf, off), dt, rows, vocab, DevPtr::new(&mb, 0), words)
        .map_err(dev_err)
}
