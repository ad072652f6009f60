//! Embeddings of decoder models: the final hidden state (after the final norm) of one prefill,
//! pooled into one vector. Not part of the decode path: the serving engine runs it between
//! steps, as its own forward (`ModelRunner::embed`).

use crate::{Error, Result};

/// How the rows of a prompt's final hidden state become one vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The last token's row (what a causal model has seen the whole input at).
    Last,
    /// The mean over every token's row.
    Mean,
}

impl Pooling {
    pub fn parse(s: &str) -> Option<Pooling> {
        match s {
            "last" => Some(Pooling::Last),
            "mean" => Some(Pooling::Mean),
            _ => None,
        }
    }
}

/// Pool `rows` (`n` rows of `dim` values, row-major) into one `[dim]` vector.
pub fn pool(rows: &[f32], dim: usize, pooling: Pooling) -> Result<Vec<f32>> {
    if dim == 0 || rows.is_empty() || !rows.len().is_multiple_of(dim) {
        return Err(Error::Msg(format!("pooling: {} values are not rows of {dim}", rows.len())));
    }
    let n = rows.len() / dim;
    Ok(match pooling {
        Pooling::Last => rows[(n - 1) * dim..].to_vec(),
        Pooling::Mean => {
            let mut acc = vec![0f64; dim];
            for r in rows.chunks_exact(dim) {
                for (a, &x) in acc.iter_mut().zip(r) {
                    *a += x as f64;
                }
            }
            acc.into_iter().map(|a| (a / n as f64) as f32).collect()
        }
    })
}

/// `v` scaled to unit L2 norm (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x = (*x as f64 / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_and_mean_pooling() {
        let rows = [1.0, 2.0, 3.0, 6.0];
        assert_eq!(pool(&rows, 2, Pooling::Last).unwrap(), vec![3.0, 6.0]);
        assert_eq!(pool(&rows, 2, Pooling::Mean).unwrap(), vec![2.0, 4.0]);
        assert!(pool(&rows, 3, Pooling::Mean).is_err());
        let mut v = vec![3.0, 4.0];
        l2_normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
    }
}
