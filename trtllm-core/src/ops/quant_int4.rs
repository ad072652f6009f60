//! `y = x @ W^T` with INT4 group-quantized weights (AWQ / GPTQ repacked at load into the engine
//! layout of `trtllm_kernels::quant_ref::int4`: `W[r, c] = (q(r, c) - z[r, c / g]) * s[r, c / g]`).
//! The three arrays live in one int32 tensor ([`Int4Layout`]: words, then scales, then zero
//! points, each 16-byte aligned). On the GPU (x bf16): m <= 8 runs the W4A16 GEMV (`gemv_int4`,
//! power-of-two groups >= 32); otherwise W is dequantized to bf16 and the bf16 GEMM runs. On the
//! CPU, the oracle: W dequantized to f32, then `matmul_t`.

use trtllm_kernels::launch::{self, DevPtr, Int4W};
use trtllm_kernels::quant_ref::int4::{Int4Weights, ScaleDt};

use super::cuda;
use crate::{DType, Error, Result, Tensor};

/// Where the parts of an INT4 `W[n, k]` sit in its int32 tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int4Layout {
    pub n: usize,
    pub k: usize,
    pub group: usize,
    pub scale_dt: ScaleDt,
}

fn align16(b: usize) -> usize {
    b.div_ceil(16) * 16
}

impl Int4Layout {
    fn groups(&self) -> usize {
        self.n * (self.k / self.group)
    }
    /// Byte offsets of the scales and the zero points; total bytes.
    fn offsets(&self) -> (usize, usize, usize) {
        let s = align16(self.n * self.k / 2);
        let z = align16(s + 2 * self.groups());
        (s, z, align16(z + self.groups()))
    }

    /// The int32 tensor of `w` (host).
    pub fn pack(w: &Int4Weights, scale_dt: ScaleDt) -> Result<(Tensor, Int4Layout)> {
        let l = Int4Layout { n: w.n, k: w.k, group: w.group, scale_dt };
        let (s, z, total) = l.offsets();
        let mut bytes = vec![0u8; total];
        for (i, q) in w.qweight.iter().enumerate() {
            bytes[4 * i..4 * i + 4].copy_from_slice(&q.to_le_bytes());
        }
        for (i, v) in w.scales.iter().enumerate() {
            bytes[s + 2 * i..s + 2 * i + 2].copy_from_slice(&v.to_le_bytes());
        }
        bytes[z..z + w.zeros.len()].copy_from_slice(&w.zeros);
        let words = bytes.chunks_exact(4).map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok((Tensor::from_i32(words, &[total / 4])?, l))
    }

    /// Back to the arrays (host copy of a host or device tensor).
    pub fn unpack(&self, t: &Tensor) -> Result<Int4Weights> {
        let host = t.to_cpu()?;
        let bytes: &[u8] = bytemuck::cast_slice(host.i32s()?);
        let (s, z, total) = self.offsets();
        if bytes.len() != total {
            return Err(Error::shape(
                "int4",
                format!("{} bytes, layout {self:?} needs {total}", bytes.len()),
            ));
        }
        let g = self.groups();
        Ok(Int4Weights {
            n: self.n,
            k: self.k,
            group: self.group,
            qweight: bytes[..self.n * self.k / 2]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            scales: bytes[s..s + 2 * g].chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect(),
            zeros: bytes[z..z + g].to_vec(),
        })
    }
}

/// `x @ W^T` for INT4 `W` packed as `l` in `w` (see the module docs).
pub fn matmul_t_int4(x: &Tensor, w: &Tensor, l: Int4Layout) -> Result<Tensor> {
    const OP: &str = "matmul_t_int4";
    let (m, k) = x.dims2(OP)?;
    if k != l.k || w.dtype() != DType::I32 || w.numel() * 4 != l.offsets().2 {
        return Err(Error::shape(
            OP,
            format!("x {:?} @ INT4 {l:?} in {:?} {}", x.shape(), w.shape(), w.dtype()),
        ));
    }
    let Some(gpu) = cuda::gpu_of(x) else {
        let wf = Tensor::from_f32(l.unpack(w)?.dequant(l.scale_dt), &[l.n, l.k])?;
        return super::matmul_t(x, &wf);
    };
    cuda::same_device(OP, x, w)?;
    if x.dtype() != DType::BF16 {
        return Err(Error::DType { op: OP, dtype: x.dtype() });
    }
    let (buf, off) = w.devbuf().ok_or_else(|| Error::Device(format!("{OP}: weights not on the GPU")))?;
    let (s, z, _) = l.offsets();
    let iw = Int4W {
        q: DevPtr::new(buf, off),
        scales: DevPtr::new(buf, off + s),
        zeros: DevPtr::new(buf, off + z),
        scale_dt: l.scale_dt,
        group: l.group,
    };
    let xp = cuda::ptr(x, OP)?;
    let gemv = m <= launch::QGEMV_MAX_M && l.group.is_power_of_two() && l.group >= 32 && (off % 16 == 0);
    if gemv && (cuda::ptr(x, OP)?.off % 16 == 0) {
        let out = cuda::alloc(&gpu, &[m, l.n], DType::BF16)?;
        launch::gemv_int4(&gpu, xp, iw, DevPtr::new(&out, 0), m, l.n, k).map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, l.n], DType::BF16);
    }
    let wb = cuda::alloc(&gpu, &[l.n, k], DType::BF16)?;
    launch::int4_dequant(&gpu, iw, DevPtr::new(&wb, 0), l.n, k).map_err(cuda::dev_err)?;
    super::matmul_t(x, &Tensor::from_devbuf(wb, &[l.n, k], DType::BF16)?)
}
