//! Activations, plain and gated (`act(gate) * up` over a fused `[m, 2i]` gate_up tensor), and
//! GPT-OSS's clamped SwiGLU over interleaved gate/up columns.

use crate::config::Activation;
use trtllm_kernels::launch::{self, DevPtr};

use super::cuda;
use crate::{Error, Result, Tensor};

#[inline]
fn apply(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Silu => x / (1.0 + (-x).exp()),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2)),
        Activation::GeluTanh => {
            let c = (2.0f32 / std::f32::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        Activation::Relu => x.max(0.0),
    }
}

/// `act(x)` elementwise.
pub(super) fn kind(act: Activation) -> i32 {
    match act {
        Activation::Silu => 0,
        Activation::Gelu => 1,
        Activation::GeluTanh => 2,
        Activation::Relu => 3,
    }
}

pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    if let Some(gpu) = cuda::gpu_of(x) {
        let out = cuda::alloc(&gpu, x.shape(), x.dtype())?;
        launch::act(
            &gpu,
            cuda::kernel_dtype(x, "activation")?,
            cuda::ptr(x, "activation")?,
            DevPtr::new(&out, 0),
            x.numel(),
            kind(act),
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, x.shape(), x.dtype());
    }
    x.map_f32(|v| apply(act, v))
}

/// `act(x[:, :i]) * x[:, i:]` for x `[m, 2i]` -> `[m, i]`.
pub fn gated_activation(gate_up: &Tensor, act: Activation) -> Result<Tensor> {
    let (m, two_i) = gate_up.dims2("gated_activation")?;
    if two_i % 2 != 0 {
        return Err(Error::shape("gated_activation", format!("odd width {two_i}")));
    }
    let i = two_i / 2;
    if let Some(gpu) = cuda::gpu_of(gate_up) {
        let out = cuda::alloc(&gpu, &[m, i], gate_up.dtype())?;
        let dt = cuda::kernel_dtype(gate_up, "gated_activation")?;
        launch::gated_act(
            &gpu,
            dt,
            cuda::ptr(gate_up, "gated_activation")?,
            DevPtr::new(&out, 0),
            m,
            i,
            kind(act),
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, i], gate_up.dtype());
    }
    let _t = super::cpu::prof::scope(|| "gated_activation".to_string());
    let g = gate_up.f32s()?;
    let mut out = vec![0f32; m * i];
    let rows = |g: &[f32], out: &mut [f32]| {
        for (row, o) in g.chunks_exact(two_i).zip(out.chunks_exact_mut(i.max(1))) {
            let (gate, up) = row.split_at(i);
            match act {
                // SiLU: vectorized exp (cpu::simd).
                Activation::Silu => super::cpu::simd::silu_mul(o, gate, up),
                _ => o.iter_mut().zip(gate.iter().zip(up)).for_each(|(o, (&a, &b))| *o = apply(act, a) * b),
            }
        }
    };
    // Prefill-sized inputs (512 x 1536: ~1 ms on one thread) are split by rows over the pool.
    let parts = if m * i >= 64 * 1024 { super::cpu::pool::num_threads().min(m) } else { 1 };
    let op = super::cpu::pool::SendPtr(out.as_mut_ptr());
    super::cpu::pool::run_parts(parts, &|part, np| {
        let r = super::cpu::pool::split(m, part, np, 1);
        // SAFETY: rows r of out (i values each) are written by this part only; out (m * i)
        // outlives `run_parts`.
        let o = unsafe { std::slice::from_raw_parts_mut(op.get().add(r.start * i), r.len() * i) };
        rows(&g[r.start * two_i..r.end * two_i], o);
    });
    Tensor::from_f32(out, &[m, i])
}

/// `gated_activation(x @ w^T, act)` for `w = [gate; up]` `[2i, k]` -> `[m, i]`: on the GPU one
/// GEMV does both halves and applies the activation in its epilogue (decode-sized m; bit-identical
/// to the two-op path, which every other case takes).
pub fn matmul_gated(x: &Tensor, w: &Tensor, act: Activation) -> Result<Tensor> {
    if let (Some(gpu), Ok((m, k)), Ok((two_i, k2))) =
        (cuda::gpu_of(x), x.dims2("matmul_gated"), w.dims2("matmul_gated"))
    {
        if k == k2 && two_i % 2 == 0 && x.dtype() == w.dtype() {
            cuda::same_device("matmul_gated", x, w)?;
            let dt = cuda::kernel_dtype(x, "matmul_gated")?;
            let (xp, wp) = (cuda::ptr(x, "matmul_gated")?, cuda::ptr(w, "matmul_gated")?);
            if launch::gemv_ok(dt, xp, wp, m, k) {
                let i = two_i / 2;
                let out = cuda::alloc(&gpu, &[m, i], x.dtype())?;
                launch::gemv_gated(&gpu, dt, xp, wp, DevPtr::new(&out, 0), m, i, k, kind(act))
                    .map_err(cuda::dev_err)?;
                return Tensor::from_devbuf(out, &[m, i], x.dtype());
            }
        }
    }
    gated_activation(&super::matmul_t(x, w)?, act)
}

/// GPT-OSS's expert activation over `x` `[m, 2i]` whose columns interleave gate and up
/// (`2j` gate, `2j + 1` up) -> `[m, i]`: with `g = min(gate, limit)`, `u = clamp(up, -limit, limit)`,
/// `(u + 1) * g * sigmoid(alpha * g)`.
pub fn clamped_swiglu(x: &Tensor, alpha: f32, limit: f32) -> Result<Tensor> {
    let (m, two_i) = x.dims2("clamped_swiglu")?;
    if two_i % 2 != 0 {
        return Err(Error::shape("clamped_swiglu", format!("odd width {two_i}")));
    }
    let i = two_i / 2;
    if let Some(gpu) = cuda::gpu_of(x) {
        let out = cuda::alloc(&gpu, &[m, i], x.dtype())?;
        let dt = cuda::kernel_dtype(x, "clamped_swiglu")?;
        launch::clamped_swiglu(
            &gpu,
            dt,
            cuda::ptr(x, "clamped_swiglu")?,
            DevPtr::new(&out, 0),
            m,
            i,
            alpha,
            limit,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, i], x.dtype());
    }
    let v = x.f32s()?;
    let out = v
        .chunks_exact(2)
        .map(|p| {
            // a NaN stays NaN (torch's clamp; f32::min would drop it)
            let g = if p[0] > limit { limit } else { p[0] };
            let u = p[1].clamp(-limit, limit);
            (u + 1.0) * (g / (1.0 + (-alpha * g).exp()))
        })
        .collect();
    Tensor::from_f32(out, &[m, i])
}

#[cfg(test)]
mod tests {
    /// GPT-OSS's clamp as torch does it: limits applied, a NaN gate or up kept NaN.
    #[test]
    fn clamped_swiglu_clamps_and_keeps_nan() {
        let x = crate::Tensor::from_f32(vec![9.0, -9.0, 0.5, 0.25, f32::NAN, 0.0, 0.0, f32::NAN], &[1, 8])
            .expect("x");
        let y = super::clamped_swiglu(&x, 1.702, 7.0).expect("op").to_f32_vec().expect("f32");
        let sig = |g: f32| g / (1.0 + (-1.702 * g).exp());
        assert_eq!(y[0], (-7.0 + 1.0) * sig(7.0));
        assert_eq!(y[1], (0.25 + 1.0) * sig(0.5));
        assert!(y[2].is_nan() && y[3].is_nan(), "{y:?}");
    }
}
