//! Softmax, log-softmax and argmax over the last dim.

/// Numerically stable softmax of one row, in place.
pub fn softmax_inplace(x: &mut [f32]) {
    let max = super::cpu::simd::max(x);
    // Vectorized exp on the CPU tiers that have one.
    let sum = super::cpu::simd::exp_shift_sum(x, max);
    for v in x.iter_mut() {
        *v /= sum;
    }
}

/// `log_softmax` of one row.
pub fn log_softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = x.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32 + max;
    x.iter().map(|v| v - lse).collect()
}

/// Index of the largest value (the first one on ties, as torch.argmax).
pub fn argmax(x: &[f32]) -> usize {
    // The maximum over 16 lanes (vectorizes), then the first index holding it: the same answer
    // as a running `v > best` scan (NaNs are never picked; a NaN at index 0 wins, as there).
    if x.is_empty() || x[0].is_nan() {
        return 0;
    }
    let mut acc = [f32::NEG_INFINITY; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..16 {
            acc[l] = acc[l].max(c[l]);
        }
    }
    let m = rest.iter().chain(&acc).copied().fold(f32::NEG_INFINITY, f32::max);
    x.iter().position(|&v| v == m).unwrap_or(0)
}

/// Greedy token of every row of `logits` `[rows, vocab]` (on the GPU: an argmax kernel, and only
/// the ids cross to the host).
pub fn argmax_rows(logits: &crate::Tensor) -> crate::Result<Vec<u32>> {
    let (r, v) = logits.dims2("argmax_rows")?;
    if let Some(gpu) = super::cuda::gpu_of(logits) {
        let out = trtllm_kernels::DevBuf::alloc(&gpu, r * 4).map_err(super::cuda::dev_err)?;
        let dt = super::cuda::kernel_dtype(logits, "argmax_rows")?;
        trtllm_kernels::launch::argmax(
            &gpu,
            dt,
            super::cuda::ptr(logits, "argmax_rows")?,
            trtllm_kernels::launch::DevPtr::new(&out, 0),
            r,
            v,
        )
        .map_err(super::cuda::dev_err)?;
        let bytes = out.download(0, r * 4).map_err(super::cuda::dev_err)?;
        return Ok(bytes
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u32)
            .collect());
    }
    let l = logits.f32s()?;
    Ok(l.chunks_exact(v).map(|row| argmax(row) as u32).collect())
}
