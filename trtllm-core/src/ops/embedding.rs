//! Token (or position) embedding lookup: rows of a `[vocab, d]` table -> `[t, d]` f32.

use crate::{Error, Result, Tensor};

/// Gather rows `ids` of `table`, times `multiplier` (Gemma's `sqrt(hidden)`).
pub fn embedding(ids: &[u32], table: &Tensor, multiplier: Option<f32>) -> Result<Tensor> {
    let (vocab, d) = table.dims2("embedding")?;
    let mut out = Vec::with_capacity(ids.len() * d);
    for &id in ids {
        let id = id as usize;
        if id >= vocab {
            return Err(Error::Request(format!("token id {id} out of range for vocabulary of {vocab}")));
        }
        out.extend(table.narrow0(id, 1)?.to_f32_vec()?);
    }
    if let Some(m) = multiplier {
        out.iter_mut().for_each(|v| *v *= m);
    }
    Tensor::from_f32(out, &[ids.len(), d])
}
