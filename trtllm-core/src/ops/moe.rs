//! MoE over (token, expert) pairs with nothing read back to the host: routing, the expert GEMV of
//! every pair, per-pair expert biases, the weighted combine. `layers/moe.rs` runs these on the
//! GPU for steps of at most [`MOE_PAIRS_MAX`] pairs, so CUDA graphs capture MoE decode. Pair `p`
//! of token `r` is `p = r * top_k + j`, its `j`-th pick. The CPU functions are the oracle.

use trtllm_kernels::launch::{self, DevPtr, MoeRoute};

use super::cuda;
pub use super::moe_route::Router;
use crate::config::MoeScoring;
use crate::{DType, Error, Result, Tensor};

/// Most pairs (tokens x top-k) one step routes on the device.
pub const MOE_PAIRS_MAX: usize = launch::MOE_GEMV_MAX_PAIRS;

/// Whether the GPU's `moe_route` takes `experts` experts under `router` (its per-thread arrays).
pub fn moe_route_fits(router: &Router<'_>, experts: usize) -> bool {
    experts <= launch::MOE_MAX_EXPERTS
        && router.top_k <= launch::MOE_MAX_TOPK
        && router.opts.groups.is_none_or(|(g, _)| g <= launch::MOE_MAX_GROUPS)
}

/// Router logits `[t, experts]` (f32) -> `(ids, weights)`, `[t, top_k]` each (int32, f32), best
/// pick first; `correction` is the `[experts]` f32 choice bias (DeepSeek-V3), on the logits' device.
pub fn moe_route(
    logits: &Tensor,
    router: &Router<'_>,
    correction: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    const OP: &str = "moe_route";
    let (t, e) = logits.dims2(OP)?;
    let k = router.top_k;
    if logits.dtype() != DType::F32 {
        return Err(Error::DType { op: OP, dtype: logits.dtype() });
    }
    if let Some(c) = correction {
        if c.numel() != e || c.dtype() != DType::F32 {
            return Err(Error::shape(
                OP,
                format!("correction {:?} {} for {e} experts", c.shape(), c.dtype()),
            ));
        }
    }
    if t == 0 || k == 0 || k > e {
        return Err(Error::shape(OP, format!("{t} tokens, top-{k} of {e} experts")));
    }
    router.check(e)?;
    if let Some(gpu) = cuda::gpu_of(logits) {
        let corr = match correction {
            Some(c) => {
                cuda::same_device(OP, logits, c)?;
                Some(cuda::ptr(c, OP)?)
            }
            None => None,
        };
        let ids = cuda::alloc(&gpu, &[t, k], DType::I32)?;
        let w = cuda::alloc(&gpu, &[t, k], DType::F32)?;
        let o = router.opts;
        let spec = MoeRoute {
            scoring: match o.scoring {
                MoeScoring::Softmax => 0,
                MoeScoring::Sigmoid => 1,
                MoeScoring::TopKSoftmax => 2,
            },
            groups: o.groups.map(|(g, tg)| (g, tg, o.group_top2)),
            top_k: k,
            renormalize: router.renormalize,
            scale: o.routed_scaling.map_or(1.0, |s| s as f32),
        };
        let (ip, wp) = (DevPtr::new(&ids, 0), DevPtr::new(&w, 0));
        launch::moe_route(&gpu, cuda::ptr(logits, OP)?, corr, ip, wp, t, e, spec).map_err(cuda::dev_err)?;
        return Ok((
            Tensor::from_devbuf(ids, &[t, k], DType::I32)?,
            Tensor::from_devbuf(w, &[t, k], DType::F32)?,
        ));
    }
    let corr = correction.map(|c| c.f32s()).transpose()?;
    let (mut ids, mut w) = (Vec::with_capacity(t * k), Vec::with_capacity(t * k));
    for row in logits.f32s()?.chunks_exact(e) {
        for (j, wj) in router.route(row, corr) {
            ids.push(j as i32);
            w.push(wj);
        }
    }
    Ok((Tensor::from_i32(ids, &[t, k])?, Tensor::from_f32(w, &[t, k])?))
}

/// `y[p] = x[p / xdiv] @ w[ids[p]]^T (+ bias[ids[p]])` for every pair: x `[pairs / xdiv, k]`, w
/// `[experts, n, k]`, bias `[experts, n]`, ids `[pairs]` int32 (each < experts: the GPU trusts
/// `moe_route`'s output, the CPU checks) -> `[pairs, n]`. `xdiv` is top-k for the experts' first
/// GEMV (every pick of a token reads its row) and 1 for the second (one row per pair).
pub fn moe_gemv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, ids: &Tensor, xdiv: usize) -> Result<Tensor> {
    const OP: &str = "moe_gemv";
    let (rows, k) = x.dims2(OP)?;
    let pairs = ids.numel();
    let &[e, n, k2] = w.shape() else {
        return Err(Error::shape(OP, format!("expert weights {:?} are not [experts, n, k]", w.shape())));
    };
    let bias_ok = bias.is_none_or(|b| b.shape() == [e, n]);
    if k2 != k || xdiv == 0 || rows * xdiv != pairs || ids.dtype() != DType::I32 || !bias_ok || pairs == 0 {
        return Err(Error::shape(
            OP,
            format!(
                "x {:?} (each row {xdiv} pairs), w {:?}, {pairs} ids {}",
                x.shape(),
                w.shape(),
                ids.dtype()
            ),
        ));
    }
    if let Some(gpu) = cuda::gpu_of(x) {
        for t in [w, ids].into_iter().chain(bias) {
            cuda::same_device(OP, x, t)?;
        }
        if w.dtype() != x.dtype() || bias.is_some_and(|b| b.dtype() != x.dtype()) {
            return Err(Error::DType { op: OP, dtype: w.dtype() });
        }
        let dt = cuda::kernel_dtype(x, OP)?;
        let y = cuda::alloc(&gpu, &[pairs, n], x.dtype())?;
        let (yp, ip) = (DevPtr::new(&y, 0), cuda::ptr(ids, OP)?);
        launch::gemv_moe(&gpu, dt, cuda::ptr(x, OP)?, cuda::ptr(w, OP)?, ip, yp, e, pairs, n, k, xdiv)
            .map_err(cuda::dev_err)?;
        if let Some(b) = bias {
            launch::moe_bias(&gpu, dt, yp, cuda::ptr(b, OP)?, ip, e, pairs, n).map_err(cuda::dev_err)?;
        }
        return Tensor::from_devbuf(y, &[pairs, n], x.dtype());
    }
    let idv = ids.i32s()?;
    let mut out = Vec::with_capacity(pairs);
    for (p, &j) in idv.iter().enumerate() {
        let j = usize::try_from(j)
            .ok()
            .filter(|&j| j < e)
            .ok_or_else(|| Error::shape(OP, format!("expert id {j} of {e}")))?;
        let mut y = super::matmul_t(&x.narrow0(p / xdiv, 1)?, &w.narrow0(j, 1)?.reshape(&[n, k])?)?;
        if let Some(b) = bias {
            y = super::add_bias(&y, &b.narrow0(j, 1)?.reshape(&[n])?)?;
        }
        out.push(y);
    }
    Tensor::cat0(&out)
}

/// `out[r] = sum_j w[r, j] * y[r * top_k + j] (+ g[r] * shared[r])` with `g[r] = sigmoid(gate[r])`,
/// or 1 without a gate: y `[t * top_k, d]`, w `[t, top_k]` f32, shared `[t, d]`, gate `[t, 1]`
/// f32 -> `[t, d]`, summed in f32 and rounded once.
pub fn moe_combine(y: &Tensor, w: &Tensor, shared: Option<&Tensor>, gate: Option<&Tensor>) -> Result<Tensor> {
    const OP: &str = "moe_combine";
    let (pairs, d) = y.dims2(OP)?;
    let (t, k) = w.dims2(OP)?;
    let shared_ok = shared.is_none_or(|s| s.shape() == [t, d] && s.dtype() == y.dtype());
    let gate_ok = gate.is_none_or(|g| g.numel() == t && g.dtype() == DType::F32)
        && (gate.is_none() || shared.is_some());
    if pairs != t * k || w.dtype() != DType::F32 || !shared_ok || !gate_ok || t == 0 {
        return Err(Error::shape(
            OP,
            format!("y {:?}, weights {:?}, shared / gate do not match", y.shape(), w.shape()),
        ));
    }
    if let Some(gpu) = cuda::gpu_of(y) {
        for t in [w].into_iter().chain(shared).chain(gate) {
            cuda::same_device(OP, y, t)?;
        }
        let dt = cuda::kernel_dtype(y, OP)?;
        let out = cuda::alloc(&gpu, &[t, d], y.dtype())?;
        let sp = shared.map(|s| cuda::ptr(s, OP)).transpose()?;
        let gp = gate.map(|g| cuda::ptr(g, OP)).transpose()?;
        launch::moe_combine(
            &gpu,
            dt,
            cuda::ptr(y, OP)?,
            cuda::ptr(w, OP)?,
            sp,
            gp,
            DevPtr::new(&out, 0),
            t,
            k,
            d,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[t, d], y.dtype());
    }
    let (ys, ws) = (y.to_f32_vec()?, w.f32s()?);
    let sh = shared.map(|s| s.to_f32_vec()).transpose()?;
    let g = gate.map(|g| g.f32s()).transpose()?;
    let mut out = vec![0f32; t * d];
    for (r, o) in out.chunks_exact_mut(d).enumerate() {
        for j in 0..k {
            let wj = ws[r * k + j];
            for (o, v) in o.iter_mut().zip(&ys[(r * k + j) * d..(r * k + j + 1) * d]) {
                *o += wj * v;
            }
        }
        if let Some(sh) = &sh {
            let gr = g.map_or(1.0, |g| 1.0 / (1.0 + (-g[r]).exp()));
            for (o, v) in o.iter_mut().zip(&sh[r * d..(r + 1) * d]) {
                *o += gr * v;
            }
        }
    }
    Tensor::from_f32(out, &[t, d])
}
