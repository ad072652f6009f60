//! Token (or position) embedding lookup: rows of a `[vocab, d]` table -> `[t, d]` f32.

use trtllm_kernels::launch::{self, DevPtr};

use std::sync::Arc;

use super::cuda;
use crate::{Error, Result, Tensor};

/// Gather rows `ids` of `table`, times `multiplier` (Gemma's `sqrt(hidden)`).
pub fn embedding(ids: &[u32], table: &Tensor, multiplier: Option<f32>) -> Result<Tensor> {
    let (vocab, d) = table.dims2("embedding")?;
    if let Some(&bad) = ids.iter().find(|&&id| id as usize >= vocab) {
        return Err(Error::Request(format!("token id {bad} out of range for vocabulary of {vocab}")));
    }
    if let Some(gpu) = cuda::gpu_of(table) {
        let idv: Vec<i32> = ids.iter().map(|&x| x as i32).collect();
        return gather(&gpu, table, vocab, &idv, d, multiplier.unwrap_or(1.0));
    }
    // Rows copied (or widened) straight from the table: no allocation per token.
    let mut out = Vec::with_capacity(ids.len() * d);
    let rows = ids.iter().map(|&id| id as usize * d..(id as usize + 1) * d);
    if let Ok(t) = table.f32s() {
        rows.for_each(|r| out.extend_from_slice(&t[r]));
    } else if let Ok(t) = table.bf16s() {
        rows.for_each(|r| out.extend(t[r].iter().map(|v| v.to_f32())));
    } else if let Ok(t) = table.f16s() {
        rows.for_each(|r| out.extend(t[r].iter().map(|v| v.to_f32())));
    } else {
        for &id in ids {
            out.extend(table.narrow0(id as usize, 1)?.to_f32_vec()?);
        }
    }
    if let Some(m) = multiplier {
        out.iter_mut().for_each(|v| *v *= m);
    }
    Tensor::from_f32(out, &[ids.len(), d])
}

fn gather(
    gpu: &std::sync::Arc<trtllm_kernels::Gpu>,
    table: &Tensor,
    rows: usize,
    ids: &[i32],
    d: usize,
    mult: f32,
) -> Result<Tensor> {
    let idb = cuda::upload_i32(gpu, ids)?;
    gather_dev(gpu, table, rows, DevPtr::new(&idb, 0), ids.len(), d, mult)
}

/// `[n, d]` rows of `table` (`[rows, d]`) at the `n` int32 ids in device memory.
fn gather_dev(
    gpu: &std::sync::Arc<trtllm_kernels::Gpu>,
    table: &Tensor,
    rows: usize,
    ids: DevPtr<'_>,
    n: usize,
    d: usize,
    mult: f32,
) -> Result<Tensor> {
    let out = cuda::alloc(gpu, &[n, d], table.dtype())?;
    let dt = cuda::kernel_dtype(table, "gather_rows")?;
    launch::gather_rows(
        gpu,
        dt,
        cuda::ptr(table, "gather_rows")?,
        rows,
        ids,
        DevPtr::new(&out, 0),
        n,
        d,
        mult,
    )
    .map_err(cuda::dev_err)?;
    Tensor::from_devbuf(out, &[n, d], table.dtype())
}

/// [`embedding`] of the first `n` int32 ids of `ids`, already on the table's GPU (the CUDA-graph
/// decode step's persistent inputs). The caller range-checked them on the host.
pub fn embedding_device_ids(
    ids: &trtllm_kernels::DevBuf,
    n: usize,
    table: &Tensor,
    multiplier: Option<f32>,
) -> Result<Tensor> {
    let (vocab, d) = table.dims2("embedding")?;
    let gpu = cuda::gpu_of(table)
        .ok_or_else(|| Error::Device("embedding from device ids: the table is not on the GPU".into()))?;
    if !Arc::ptr_eq(&gpu, ids.gpu()) {
        return Err(Error::Device("embedding from device ids: ids and table on different GPUs".into()));
    }
    gather_dev(&gpu, table, vocab, DevPtr::new(ids, 0), n, d, multiplier.unwrap_or(1.0))
}

/// Rows `rows` of x `[m, d]` -> `[rows.len(), d]`.
pub fn select_rows(x: &Tensor, rows: &[usize]) -> Result<Tensor> {
    let (m, d) = x.dims2("select_rows")?;
    if let Some(&bad) = rows.iter().find(|&&r| r >= m) {
        return Err(Error::shape("select_rows", format!("row {bad} of {m}")));
    }
    if rows.len() == m && rows.iter().enumerate().all(|(i, &r)| i == r) {
        return Ok(x.clone());
    }
    if let Some(gpu) = cuda::gpu_of(x) {
        let idv: Vec<i32> = rows.iter().map(|&r| r as i32).collect();
        return gather(&gpu, x, m, &idv, d, 1.0);
    }
    Tensor::cat0(&rows.iter().map(|&r| x.narrow0(r, 1)).collect::<Result<Vec<_>>>()?)
}

/// `base` with `w[r] * y[r]` added to row `idx[r]` of it (each index at most once), as a new
/// tensor. base `[m, d]`, y `[r, d]`.
pub fn scatter_add_rows(base: &Tensor, y: &Tensor, idx: &[usize], w: &[f32]) -> Result<Tensor> {
    let (m, d) = base.dims2("scatter_add_rows")?;
    let (r, d2) = y.dims2("scatter_add_rows")?;
    if d != d2 || idx.len() != r || w.len() != r || idx.iter().any(|&i| i >= m) {
        return Err(Error::shape(
            "scatter_add_rows",
            format!("base {:?}, y {:?}, {} indices", base.shape(), y.shape(), idx.len()),
        ));
    }
    if let Some(gpu) = cuda::gpu_of(base) {
        cuda::same_device("scatter_add_rows", base, y)?;
        let (b, off) =
            base.devbuf().ok_or_else(|| Error::Device("scatter_add_rows: base not on GPU".into()))?;
        let out = b.copy_range(off, base.size_in_bytes()).map_err(cuda::dev_err)?;
        let iv: Vec<i32> = idx.iter().map(|&i| i as i32).collect();
        let (ib, wb) = (cuda::upload_i32(&gpu, &iv)?, cuda::upload_f32(&gpu, w)?);
        let dt = cuda::kernel_dtype(base, "scatter_add_rows")?;
        launch::scatter_add_rows(
            &gpu,
            dt,
            DevPtr::new(&out, 0),
            m,
            cuda::ptr(y, "scatter_add_rows")?,
            DevPtr::new(&ib, 0),
            DevPtr::new(&wb, 0),
            r,
            d,
        )
        .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, base.shape(), base.dtype());
    }
    let mut out = base.f32s()?.to_vec();
    let ys = y.f32s()?;
    for (k, (&i, &wk)) in idx.iter().zip(w).enumerate() {
        for (o, v) in out[i * d..(i + 1) * d].iter_mut().zip(&ys[k * d..(k + 1) * d]) {
            *o += wk * v;
        }
    }
    Tensor::from_f32(out, base.shape())
}
