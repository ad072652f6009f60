//! `y = x @ w^T (+ b)`: x `[m, k]` f32, w `[n, k]` (f32, bf16 or f16), y `[m, n]` f32.
//! Small m (decode) runs a row-parallel GEMV that reads each weight once; larger m (prefill)
//! runs `matrixmultiply`'s packed SGEMM on column blocks of w, in parallel.

use half::{bf16, f16};
use rayon::prelude::*;

use super::cuda;
use crate::{DType, Error, Result, Tensor};

/// Rows of w handled per parallel task.
const ROW_BLOCK: usize = 64;
/// Up to this many x rows go through the GEMV path.
const GEMV_MAX_M: usize = 4;

#[inline]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// One weight row, as f32, into `buf`.
trait Row: Copy + Send + Sync {
    fn widen(row: &[Self], buf: &mut [f32]);
}
impl Row for f32 {
    fn widen(row: &[f32], buf: &mut [f32]) {
        buf.copy_from_slice(row);
    }
}
impl Row for bf16 {
    fn widen(row: &[bf16], buf: &mut [f32]) {
        for (o, x) in buf.iter_mut().zip(row) {
            *o = x.to_f32();
        }
    }
}
impl Row for f16 {
    fn widen(row: &[f16], buf: &mut [f32]) {
        for (o, x) in buf.iter_mut().zip(row) {
            *o = x.to_f32();
        }
    }
}

fn gemv<W: Row>(x: &[f32], m: usize, k: usize, w: &[W], n: usize) -> Vec<f32> {
    // out laid out [n_blocks][m][block] then transposed to [m, n].
    let blocks: Vec<Vec<f32>> = w
        .par_chunks(ROW_BLOCK * k)
        .map(|wb| {
            let rows = wb.len() / k;
            let mut buf = vec![0f32; k];
            let mut out = vec![0f32; m * rows];
            for r in 0..rows {
                W::widen(&wb[r * k..(r + 1) * k], &mut buf);
                for i in 0..m {
                    out[i * rows + r] = dot_f32(&x[i * k..(i + 1) * k], &buf);
                }
            }
            out
        })
        .collect();
    let mut y = vec![0f32; m * n];
    for (bi, b) in blocks.iter().enumerate() {
        let rows = b.len() / m;
        for i in 0..m {
            y[i * n + bi * ROW_BLOCK..i * n + bi * ROW_BLOCK + rows].copy_from_slice(&b[i * rows..(i + 1) * rows]);
        }
    }
    y
}

fn gemm<W: Row>(x: &[f32], m: usize, k: usize, w: &[W], n: usize) -> Vec<f32> {
    const COL_BLOCK: usize = 256;
    let blocks: Vec<Vec<f32>> = w
        .par_chunks(COL_BLOCK * k)
        .map(|wb| {
            let cols = wb.len() / k;
            let mut wf = vec![0f32; cols * k];
            for r in 0..cols {
                W::widen(&wb[r * k..(r + 1) * k], &mut wf[r * k..(r + 1) * k]);
            }
            let mut out = vec![0f32; m * cols];
            // SAFETY: matrixmultiply reads m*k elements of x with strides (k, 1), cols*k of wf with
            // strides (1, k) (w^T) and writes m*cols of out with strides (cols, 1); all three
            // buffers hold exactly those extents.
            unsafe {
                matrixmultiply::sgemm(
                    m, k, cols, 1.0, x.as_ptr(), k as isize, 1, wf.as_ptr(), 1, k as isize, 0.0,
                    out.as_mut_ptr(), cols as isize, 1,
                );
            }
            out
        })
        .collect();
    let mut y = vec![0f32; m * n];
    for (bi, b) in blocks.iter().enumerate() {
        let cols = b.len() / m;
        for i in 0..m {
            y[i * n + bi * COL_BLOCK..i * n + bi * COL_BLOCK + cols].copy_from_slice(&b[i * cols..(i + 1) * cols]);
        }
    }
    y
}

/// `x @ w^T`.
pub fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (m, k) = x.dims2("matmul_t")?;
    let (n, k2) = w.dims2("matmul_t")?;
    if k != k2 {
        return Err(Error::shape("matmul_t", format!("x {:?} @ w^T {:?}", x.shape(), w.shape())));
    }
    if let Some(gpu) = cuda::gpu_of(x) {
        cuda::same_device("matmul_t", x, w)?;
        if x.dtype() != w.dtype() {
            return Err(Error::shape("matmul_t", format!("x is {}, w is {} (the GPU path needs one dtype)", x.dtype(), w.dtype())));
        }
        let dt = cuda::dt(x, "matmul_t")?;
        let mut out = cuda::alloc(&gpu, &[m, n], x.dtype())?;
        trtllm_kernels::launch::gemm(&gpu, dt, cuda::p(x, "matmul_t")?, cuda::p(w, "matmul_t")?, &mut out, 0, m, n, k)
            .map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, n], x.dtype());
    }
    let xs = x.f32s()?;
    let y = match (w.dtype(), m <= GEMV_MAX_M) {
        (DType::F32 | DType::BF16 | DType::F16, _) if m == 0 || k == 0 => vec![0f32; m * n], // empty: nothing to chunk
        (DType::F32, true) => gemv(xs, m, k, w.f32s()?, n),
        (DType::F32, false) => gemm(xs, m, k, w.f32s()?, n),
        (DType::BF16, true) => gemv(xs, m, k, w.bf16s()?, n),
        (DType::BF16, false) => gemm(xs, m, k, w.bf16s()?, n),
        (DType::F16, true) => gemv(xs, m, k, w.f16s()?, n),
        (DType::F16, false) => gemm(xs, m, k, w.f16s()?, n),
        (d, _) => return Err(Error::DType { op: "matmul_t", dtype: d }),
    };
    Tensor::from_f32(y, &[m, n])
}

/// `x @ w^T + b`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let y = matmul_t(x, w)?;
    match b {
        Some(b) => super::add_bias(&y, b),
        None => Ok(y),
    }
}
