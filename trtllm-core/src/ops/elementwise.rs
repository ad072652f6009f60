//! Elementwise ops: residual add, bias add, scaling, soft-capping.

use crate::{Error, Result, Tensor};

/// `a + b` (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::shape("add", format!("{:?} vs {:?}", a.shape(), b.shape())));
    }
    let v = a.f32s()?.iter().zip(b.f32s()?).map(|(x, y)| x + y).collect();
    Tensor::from_f32(v, a.shape())
}

/// `x + bias` broadcast over rows: x `[m, n]`, bias `[n]` (any float dtype).
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (_, n) = x.dims2("add_bias")?;
    if bias.shape() != [n] {
        return Err(Error::shape("add_bias", format!("x {:?}, bias {:?}", x.shape(), bias.shape())));
    }
    let b = bias.to_f32_vec()?;
    let mut v = x.f32s()?.to_vec();
    for row in v.chunks_exact_mut(n) {
        for (o, bb) in row.iter_mut().zip(&b) {
            *o += bb;
        }
    }
    Tensor::from_f32(v, x.shape())
}

/// `x * s`.
pub fn scale(x: &Tensor, s: f32) -> Result<Tensor> {
    x.map_f32(|v| v * s)
}

/// `tanh(x / cap) * cap` (Gemma 2 final-logit soft-capping).
pub fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    x.map_f32(|v| (v / cap).tanh() * cap)
}
