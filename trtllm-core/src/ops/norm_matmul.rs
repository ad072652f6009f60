//! A decoder layer's RMSNorm fused into the projection after it: `matmul_t(rms_norm(x + delta), w)`
//! (or `matmul_gated`) with `x + delta` as the new residual stream. On the GPU at decode sizes one
//! GEMV normalizes its input while staging it (`launch::gemv_rms`), so the norm (and the pending
//! residual add) costs no kernel of its own. Elsewhere the caller runs the two ops; the result
//! agrees with them up to the f32 summation order of the norm's mean square.

use std::sync::OnceLock;

use trtllm_kernels::launch::{self, RmsIn, P};

use super::cuda;
use crate::model::Activation;
use crate::{Result, Tensor};

/// `TRTLLM_NO_NORM_FUSION=1` turns the fused path off (A/B measurements).
fn disabled() -> bool {
    static OFF: OnceLock<bool> = OnceLock::new();
    *OFF.get_or_init(|| std::env::var("TRTLLM_NO_NORM_FUSION").is_ok_and(|v| v == "1"))
}

/// `(Some(x + delta) or None when delta is None, rms_norm(x + delta) @ w^T)`, gated by `act`
/// (`w = [gate; up]`) when given. `Ok(None)`: the fused kernel does not apply here.
pub fn rms_norm_matmul(
    x: &Tensor,
    delta: Option<&Tensor>,
    norm_w: &Tensor,
    eps: f64,
    w: &Tensor,
    act: Option<Activation>,
) -> Result<Option<(Option<Tensor>, Tensor)>> {
    let Some(gpu) = cuda::gpu_of(x) else { return Ok(None) };
    let (Ok((m, k)), Ok((n, k2))) = (x.dims2("rms_norm_matmul"), w.dims2("rms_norm_matmul")) else {
        return Ok(None);
    };
    let same = |t: &Tensor| t.dtype() == x.dtype() && t.shape() == x.shape();
    if disabled()
        || k != k2
        || x.dtype() != w.dtype()
        || norm_w.shape() != [k]
        || delta.is_some_and(|d| !same(d))
        || (act.is_some() && n % 2 != 0)
    {
        return Ok(None);
    }
    cuda::same_device("rms_norm_matmul", x, w)?;
    if let Some(d) = delta {
        cuda::same_device("rms_norm_matmul", x, d)?;
    }
    let dt = cuda::dt(x, "rms_norm_matmul")?;
    let res = match delta {
        Some(d) => Some(cuda::p(d, "rms_norm_matmul")?),
        None => None,
    };
    let mut a = RmsIn {
        x: cuda::p(x, "rms_norm_matmul")?,
        res,
        norm_w: cuda::p(norm_w, "rms_norm_matmul")?,
        eps: eps as f32,
        sum: None,
    };
    let wp = cuda::p(w, "rms_norm_matmul")?;
    // (a fresh allocation is 16-byte aligned: `sum` cannot change the answer)
    if !launch::gemv_rms_ok(dt, &a, wp, m, k) {
        return Ok(None);
    }
    let sum = match delta {
        Some(_) => Some(cuda::alloc(&gpu, x.shape(), x.dtype())?),
        None => None,
    };
    a.sum = sum.as_ref().map(|s| P::new(s, 0));
    let cols = if act.is_some() { n / 2 } else { n };
    let out = cuda::alloc(&gpu, &[m, cols], x.dtype())?;
    match act {
        Some(act) => launch::gemv_gated_rms(
            &gpu,
            dt,
            &a,
            wp,
            P::new(&out, 0),
            m,
            cols,
            k,
            super::activation::kind(act),
        ),
        None => launch::gemv_rms(&gpu, dt, &a, wp, P::new(&out, 0), m, n, k),
    }
    .map_err(cuda::dev_err)?;
    let y = Tensor::from_devbuf(out, &[m, cols], x.dtype())?;
    let sum = match sum {
        Some(s) => Some(Tensor::from_devbuf(s, x.shape(), x.dtype())?),
        None => None,
    };
    Ok(Some((sum, y)))
}
