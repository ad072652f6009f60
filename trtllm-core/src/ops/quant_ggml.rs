//! `y = x @ W^T` with W in ggml blocks kept as the GGUF file stores them (Q8_0, Q4_K: the types
//! `cuda/gemv_ggml.cu` takes). The rows' bytes live in one int32 tensor (the bytes, zero-padded
//! to whole words), described by a [`GgmlLayout`]. On the GPU (x bf16): m <= `GGML_GEMV_MAX_M`
//! runs the block GEMV (`gemv_ggml`, weights decoded in registers); above that W is dequantized
//! into a bf16 scratch (`ggml_dequant`) and the bf16 GEMM runs. On the CPU, the oracle: W
//! dequantized to f32 (`quant_ref::ggml`, the kernels' twin), then `matmul_t`.

use trtllm_kernels::launch::{self, DevPtr};
use trtllm_kernels::quant_ref::ggml::{dequant, GgmlBlock};

use super::cuda;
use crate::gguf::GgmlType;
use crate::{DType, Error, Result, Tensor};

/// The GPU block type of a GGUF tensor type (`None`: no GPU kernel; such weights load
/// dequantized).
pub fn ggml_gpu_block(ty: GgmlType) -> Option<GgmlBlock> {
    match ty {
        GgmlType::Q8_0 => Some(GgmlBlock::Q8_0),
        GgmlType::Q4K => Some(GgmlBlock::Q4K),
        _ => None,
    }
}

/// What the int32 tensor of a ggml linear holds: `n` rows of `k` values in blocks of `ty`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GgmlLayout {
    pub ty: GgmlBlock,
    pub n: usize,
    pub k: usize,
}

impl GgmlLayout {
    /// Bytes of the blocks (before padding).
    pub fn bytes(&self) -> usize {
        self.n * self.ty.row_bytes(self.k)
    }

    /// The int32 tensor (host) of `bytes`, `n` rows of `k` values of `ty`; an error naming
    /// `name` and the block type when the sizes disagree.
    pub fn pack(name: &str, ty: GgmlBlock, bytes: &[u8], n: usize, k: usize) -> Result<(Tensor, GgmlLayout)> {
        let l = GgmlLayout { ty, n, k };
        let (per, _) = ty.block();
        if k == 0 || !k.is_multiple_of(per) || bytes.len() != l.bytes() {
            return Err(Error::tensor(
                name,
                format!(
                    "{} [{n}, {k}]: {} bytes (need rows of whole {per}-value blocks, {} bytes)",
                    ty.name(),
                    bytes.len(),
                    if k.is_multiple_of(per) { l.bytes() } else { 0 }
                ),
            ));
        }
        let words = bytes
            .chunks(4)
            .map(|c| {
                let mut w = [0u8; 4];
                w[..c.len()].copy_from_slice(c);
                i32::from_le_bytes(w)
            })
            .collect::<Vec<_>>();
        let len = words.len();
        Ok((Tensor::from_i32(words, &[len])?, l))
    }

    /// The blocks' bytes (host copy of a host or device tensor).
    pub fn unpack(&self, t: &Tensor) -> Result<Vec<u8>> {
        let host = t.to_cpu()?;
        let bytes: &[u8] = bytemuck::cast_slice(host.i32s()?);
        if bytes.len() != self.bytes().div_ceil(4) * 4 {
            return Err(Error::shape(
                "ggml",
                format!("{} bytes, layout {self:?} needs {} (padded to words)", bytes.len(), self.bytes()),
            ));
        }
        Ok(bytes[..self.bytes()].to_vec())
    }
}

/// `x @ W^T` for W in ggml blocks packed as `l` in `w` (see the module docs).
pub fn matmul_t_ggml(x: &Tensor, w: &Tensor, l: GgmlLayout) -> Result<Tensor> {
    const OP: &str = "matmul_t_ggml";
    let (m, k) = x.dims2(OP)?;
    if k != l.k || w.dtype() != DType::I32 || w.numel() * 4 != l.bytes().div_ceil(4) * 4 {
        return Err(Error::shape(
            OP,
            format!("x {:?} @ {} {l:?} in {:?} {}", x.shape(), l.ty.name(), w.shape(), w.dtype()),
        ));
    }
    let Some(gpu) = cuda::gpu_of(x) else {
        let wf = Tensor::from_f32(dequant(l.ty, &l.unpack(w)?, l.n, l.k), &[l.n, l.k])?;
        let wf = if x.dtype() == DType::F32 { wf } else { wf.to_dtype(x.dtype())? };
        return super::matmul_t(x, &wf);
    };
    cuda::same_device(OP, x, w)?;
    if x.dtype() != DType::BF16 {
        return Err(Error::DType { op: OP, dtype: x.dtype() });
    }
    let (buf, off) = w.devbuf().ok_or_else(|| Error::Device(format!("{OP}: weights not on the GPU")))?;
    let wp = DevPtr::new(buf, off);
    let xp = cuda::ptr(x, OP)?;
    if m <= launch::GGML_GEMV_MAX_M && launch::gemv_ggml_ok(l.ty, xp, wp, m, k) {
        let out = cuda::alloc(&gpu, &[m, l.n], DType::BF16)?;
        launch::gemv_ggml(&gpu, l.ty, xp, wp, DevPtr::new(&out, 0), m, l.n, k).map_err(cuda::dev_err)?;
        return Tensor::from_devbuf(out, &[m, l.n], DType::BF16);
    }
    let wb = cuda::alloc(&gpu, &[l.n, k], DType::BF16)?;
    launch::ggml_dequant(&gpu, l.ty, wp, DevPtr::new(&wb, 0), l.n, k).map_err(cuda::dev_err)?;
    super::matmul_t(x, &Tensor::from_devbuf(wb, &[l.n, k], DType::BF16)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use trtllm_kernels::quant_ref::ggml::random_blocks;

    /// The CPU twin against `gguf::dequantize` (the importer's own decoder) then f32 `matmul_t`,
    /// on random blocks of both types, with padding (Q8_0 rows of 34 bytes x odd counts).
    #[test]
    fn cpu_twin_matches_the_importer_dequantization() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for (ty, gty, n, k) in
            [(GgmlBlock::Q8_0, GgmlType::Q8_0, 3, 64), (GgmlBlock::Q4K, GgmlType::Q4K, 5, 512)]
        {
            let bytes = random_blocks(ty, n, k, &mut next);
            let (w, l) = GgmlLayout::pack("t.weight", ty, &bytes, n, k).expect("pack");
            assert_eq!(l.unpack(&w).expect("unpack"), bytes);
            let x: Vec<f32> = (0..2 * k).map(|i| ((i * 7919 % 97) as f32 - 48.0) / 50.0).collect();
            let x = Tensor::from_f32(x, &[2, k]).expect("x");
            let mut wf = vec![0f32; n * k];
            crate::gguf::dequantize(gty, &bytes, &mut wf).expect("dequantize");
            let want = super::super::matmul_t(&x, &Tensor::from_f32(wf, &[n, k]).expect("w")).expect("ref");
            let got = matmul_t_ggml(&x, &w, l).expect("twin");
            assert_eq!(got.shape(), &[2, n]);
            for (a, b) in got.f32s().expect("f32").iter().zip(want.f32s().expect("f32")) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{}: {a} vs {b}", ty.name());
            }
        }
    }

    #[test]
    fn sizes_that_disagree_name_the_tensor_and_block_type() {
        let e = GgmlLayout::pack("model.layers.0.mlp.down_proj.weight", GgmlBlock::Q4K, &[0; 144], 1, 128)
            .expect_err("128 is not whole Q4_K blocks")
            .to_string();
        assert!(e.contains("down_proj.weight") && e.contains("q4_k"), "{e}");
        let e = GgmlLayout::pack("w", GgmlBlock::Q8_0, &[0; 33], 1, 32).expect_err("short").to_string();
        assert!(e.contains("33 bytes") && e.contains("q8_0"), "{e}");
        assert_eq!(ggml_gpu_block(GgmlType::Q6K), None);
    }
}
